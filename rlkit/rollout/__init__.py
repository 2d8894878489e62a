"""Rollout: generation engines behind one interface (see `rlkit.rollout.engine`)."""
