"""The engine registry: name → adapter class, and `build_engine`.

The adapters import the interface (rlkit.rollout.engine); this module imports the adapters, so
the imports run one way. Importing an adapter module is cheap: vLLM and transformers are
imported when an engine starts.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable

from rlkit.registry import Registry
from rlkit.rollout.engine import EngineOptions, GenerationEngine, raise_problems
from rlkit.rollout.hf_engine import HFEngine
from rlkit.rollout.vllm_engine import VllmEngine

EngineFactory = Callable[[Path, EngineOptions], GenerationEngine]
ENGINES: Registry[EngineFactory] = Registry("rollout engine")
ENGINES.register("hf")(HFEngine)
ENGINES.register("vllm")(VllmEngine)


def build_engine(name: str, model_path: str | Path, options: EngineOptions | None = None) -> GenerationEngine:
    """Start engine `name` on the model folder (or built-in model name) `model_path`."""
    from rlkit.models import resolve_model

    factory = ENGINES.get(name)  # fails with the valid names before anything loads
    options = options or EngineOptions()
    raise_problems("engine options", options.problems())
    return factory(resolve_model(str(model_path)), options)
