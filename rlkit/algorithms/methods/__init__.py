"""One module per method; importing a module registers it. Adding a method: write its module
here and add one line below (see docs/algorithms.md, "Adding a method")."""

from rlkit.algorithms.methods import bnpo, clip_cov, empg, grpo, grpo_lambda, kl_cov, llds, steer  # noqa: F401
