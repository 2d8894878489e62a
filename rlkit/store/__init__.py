"""The streaming data store: per-field readiness, per-task consumption, whole-group sampling."""
