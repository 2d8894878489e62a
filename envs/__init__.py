"""Multi-turn environments shipped with rlkit (tool use, search-style QA, gated multi-step tasks).

Each module registers its environment when loaded; rlkit loads them by name
(rlkit.environment.SHIPPED_ENVIRONMENTS), never by importing this package.
"""
