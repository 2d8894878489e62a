"""Structured configuration: schema, loading with overrides, validation."""

from rlkit.config.load import ConfigError, load_config, to_yaml
from rlkit.config.schema import TrainConfig

__all__ = ["ConfigError", "TrainConfig", "load_config", "to_yaml"]
