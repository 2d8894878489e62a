"""Thoth's structured component-based reward (SCORE) for Sketch-and-Fill protocol answers.

Sun et al., "Unleashing Scientific Reasoning for Bio-experimental Protocol Generation via
Structured Component-based Reward Mechanism", arXiv 2510.15600; ALGORITHMS.md §10, docs/thoth.md.
The paper's training reward file is unpublished, so this is the spec's reconstruction: the gates,
the cosine step scale and the SCORE product are from the paper's README, the order and per-step
content matching follow its evaluation code (quirks included), and the rest is marked as a choice.

The module has three layers, so each can be tested on its own:

(a) parsing: `parse_response` (the model's text) and `parse_ground_truth` (the dataset's answer);
(b) `score_components`: every component from already-parsed steps (what the worked vectors pin);
(c) `score` / `score_lcs`: reward functions under rlkit's contract (rlkit/reward/contract.py).

Ground truth is a JSON list of steps, each `{"action": str, "objects": [str], "parameters": [str]}`
(rlkit.tasks.protocols writes it). The four switches keep the names of the official run.sh
environment variables, lower-cased, and are read per sample from `extra` (dataset columns
`grpo_order_mode`, `grpo_combine_mode`, `grpo_content_denom`, `grpo_final_combine`); a missing
column falls back to the official default in `DEFAULT_OPTIONS`. So is rlkit's own `strict_format`
(the format gate's reading, see `parse_response`). Pure Python, no heavy imports.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, fields, replace
from typing import Any
from collections.abc import Mapping, Sequence

from rlkit.tags import first_tagged

# ---------------------------------------------------------------- records and switches


@dataclass(frozen=True)
class KeyStep:
    """One `<key>` step: a verb, what it acts on and how."""

    action: str
    objects: tuple[str, ...] = ()
    parameters: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParsedResponse:
    """What the text checks found in a response."""

    format_ok: bool  # the four blocks in order (strict: each once, nothing outside) and every <key> line well formed
    key_steps: tuple[KeyStep, ...]  # the <key> lines that did parse (all of them when format_ok)
    n_orc_steps: int  # natural-language steps in <orc>; 0 when the block is missing
    problem: str | None = None  # why format_ok is False, for debugging


ORDER_MODES = ("strict_subseq", "lcs")
COMBINE_MODES = ("sum", "product")
CONTENT_DENOMS = ("matched", "max_len")
FINAL_COMBINES = ("product", "sum")


@dataclass(frozen=True)
class ScoreOptions:
    """The four SCORE switches; defaults are the official run.sh values."""

    grpo_order_mode: str = "strict_subseq"  # strict_subseq: 1[a == b]; lcs: 2·LCS/(|a|+|b|)
    grpo_combine_mode: str = "sum"  # per pair: m·(obj + 0.5·para) | m·obj·para
    grpo_content_denom: str = "matched"  # Σ step / #pairs | / max(#pred, #gt)
    grpo_final_combine: str = "product"  # gates·scale·semantics | gates·(scale + semantics)
    strict_format: bool = False  # the format gate: blocks present in order (spec) | each once, nothing outside

    def __post_init__(self) -> None:
        if not isinstance(self.strict_format, bool):
            raise ValueError(f"strict_format={self.strict_format!r} must be true or false")
        allowed = {
            "grpo_order_mode": ORDER_MODES,
            "grpo_combine_mode": COMBINE_MODES,
            "grpo_content_denom": CONTENT_DENOMS,
            "grpo_final_combine": FINAL_COMBINES,
        }
        for name, values in allowed.items():
            if getattr(self, name) not in values:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {', '.join(values)}")

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any] | None, base: ScoreOptions | None = None) -> ScoreOptions:
        """`base` (default: DEFAULT_OPTIONS) with any switch that `extra` names overridden."""
        base = base or DEFAULT_OPTIONS
        given: dict[str, Any] = {}
        for f in fields(cls):
            value = extra.get(f.name) if extra else None
            if value is not None:
                given[f.name] = _flag(f.name, value) if isinstance(getattr(base, f.name), bool) else str(value)
        return replace(base, **given)


def _flag(name: str, value: Any) -> bool:
    """A yes/no setting from a dataset column or recipe value: a bool, 0/1 or true/false."""
    if isinstance(value, bool):
        return value
    words = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
    if str(value).strip().lower() in words:
        return words[str(value).strip().lower()]
    raise ValueError(f"{name}={value!r} must be true or false")


DEFAULT_OPTIONS = ScoreOptions()
LCS_OPTIONS = ScoreOptions(grpo_order_mode="lcs")


# ---------------------------------------------------------------- (a) parsing

_BLOCKS = ("think", "key", "orc", "note")
_LAYOUT = re.compile(
    r"\s*<think>(?P<think>.*?)</think>\s*<key>(?P<key>.*?)</key>\s*"
    r"<orc>(?P<orc>.*?)</orc>\s*<note>(?P<note>.*?)</note>\s*",
    re.DOTALL,
)
_KEY_LINE = re.compile(r"Step\s*(\d+)\s*:\s*(\{.*\})\s*")
_ORC_MARKER = re.compile(r"\s*(?:Step\s*\d+\s*[:.)]|\d+\s*[.)])", re.IGNORECASE)


class FormatError(ValueError):
    """A `<key>` line or a ground-truth step that is not a well-formed step."""


def parse_response(text: str, strict: bool = False) -> ParsedResponse:
    """The four Sketch-and-Fill blocks of `text` and the steps in `<key>` and `<orc>`.

    The spec's format gate (§10.2) asks for the four blocks present, in order: the first
    `<think>…</think>`, then the first `<key>…</key>` after it, and so on; text before, between
    and after them is allowed (a short preamble, a closing remark). `strict` is rlkit's earlier,
    stricter reading: each block exactly once and nothing but whitespace outside them."""
    if not strict:
        blocks, problem = blocks_in_order(text)
        if blocks is None:
            key_steps, _ = parse_key_block(first_tagged(text, "key") or "")
            return ParsedResponse(False, key_steps, 0, problem)
        key_steps, problem = parse_key_block(blocks["key"])
        return ParsedResponse(problem is None, key_steps, count_orc_steps(blocks["orc"]), problem)
    for tag in _BLOCKS:
        if text.count(f"<{tag}>") != 1 or text.count(f"</{tag}>") != 1:
            key_steps, _ = parse_key_block(first_tagged(text, "key") or "")
            return ParsedResponse(False, key_steps, 0, f"<{tag}>…</{tag}> must appear exactly once")
    layout = _LAYOUT.fullmatch(text)
    if layout is None:
        key_steps, _ = parse_key_block(first_tagged(text, "key") or "")
        return ParsedResponse(False, key_steps, 0, "blocks out of order, or text outside them")
    key_steps, problem = parse_key_block(layout["key"])
    return ParsedResponse(problem is None, key_steps, count_orc_steps(layout["orc"]), problem)


def blocks_in_order(text: str) -> tuple[dict[str, str] | None, str | None]:
    """The contents of the four blocks, each the first one that opens after the previous one
    closed, or (None, the first block that is missing there). Taking the earliest block each
    time finds an in-order layout whenever there is one, in one pass over the text."""
    blocks, position = {}, 0
    for tag in _BLOCKS:
        opening, closing = f"<{tag}>", f"</{tag}>"
        start = text.find(opening, position)
        end = text.find(closing, start + len(opening)) if start >= 0 else -1
        if end < 0:
            after = f" after </{_BLOCKS[_BLOCKS.index(tag) - 1]}>" if blocks else ""
            return None, f"no {opening}…{closing}{after}: the blocks must be present in the order {', '.join(_BLOCKS)}"
        blocks[tag] = text[start + len(opening) : end]
        position = end + len(closing)
    return blocks, None


def opens_think(prompt: str) -> bool:
    """Whether the prompt's chat template already opened the `<think>` block (reasoning
    templates end the generation prompt with it), so the response starts inside it."""
    return prompt.rstrip().endswith("<think>")


def parse_key_block(block: str) -> tuple[tuple[KeyStep, ...], str | None]:
    """Every `Step k: {json}` line of a `<key>` block, and the first problem (None: all parse).

    Lines that fail are skipped in the returned steps, so components can still be logged for a
    malformed answer; its SCORE is 0 through the format gate anyway.
    """
    steps, problem = [], None
    for number, line in enumerate((line for line in block.splitlines() if line.strip()), start=1):
        try:
            steps.append(parse_key_line(line.strip()))
        except FormatError as error:
            problem = problem or f"<key> line {number}: {error}"
    return tuple(steps), problem


def parse_key_line(line: str) -> KeyStep:
    """One `Step k: {"action": …, "objects": […], "parameters": […]}` line."""
    match = _KEY_LINE.fullmatch(line)
    if match is None:
        raise FormatError("expected 'Step k: {json}'")
    try:
        payload = json.loads(match[2])
    except json.JSONDecodeError as error:
        raise FormatError(f"invalid JSON ({error.msg})") from None
    except RecursionError:  # e.g. `Step 1: [[[[…` thousands deep
        raise FormatError("JSON nested too deeply") from None
    return step_from_json(payload)


def step_from_json(payload: Any) -> KeyStep:
    """A step from its JSON object; the three fields must be there with the right types."""
    if not isinstance(payload, dict) or not {"action", "objects", "parameters"} <= set(payload):
        raise FormatError("a step needs the fields action, objects and parameters")
    action = payload["action"]
    if not isinstance(action, str) or not action.strip():
        raise FormatError("action must be a non-empty string")
    return KeyStep(action, _string_list(payload["objects"], "objects"), _string_list(payload["parameters"], "parameters"))


def _string_list(value: Any, name: str) -> tuple[str, ...]:
    """A JSON list of scalars as strings (a model writing 5 instead of "5" is still well formed)."""
    if not isinstance(value, list) or not all(isinstance(item, (str, int, float)) and not isinstance(item, bool)
                                              for item in value):
        raise FormatError(f"{name} must be a list of strings")
    return tuple(str(item) for item in value)


def count_orc_steps(block: str) -> int:
    """Steps in an `<orc>` block: lines opening with a step marker ('Step 2:', '2.', '2)').

    Without any marker, every non-empty line counts as one step.
    """
    lines = [line for line in block.splitlines() if line.strip()]
    marked = sum(1 for line in lines if _ORC_MARKER.match(line))
    return marked if marked else len(lines)


def parse_ground_truth(text: str) -> tuple[KeyStep, ...]:
    """The reference protocol: a JSON list of step objects (may be empty)."""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"ground truth is not JSON ({error.msg}); expected a list of steps") from None
    if not isinstance(payload, list):
        raise ValueError(f"ground truth must be a JSON list of steps, got {type(payload).__name__}")
    try:
        return tuple(step_from_json(item) for item in payload)
    except FormatError as error:
        raise ValueError(f"ground truth step: {error}") from None


def format_key_steps(steps: Sequence[KeyStep]) -> str:
    """Steps as `<key>` lines, the inverse of parse_key_block (prompts and tests use it)."""
    return "\n".join(
        f"Step {k}: " + json.dumps({"action": s.action, "objects": list(s.objects), "parameters": list(s.parameters)},
                                   ensure_ascii=False)
        for k, s in enumerate(steps, start=1)
    )


# ---------------------------------------------------------------- (b) components

_KEYWORD_SPLIT = re.compile(r"[^a-z0-9%µμ\-\._]+")


def keywords(text: str) -> set[str]:
    """Lower-cased keyword set: units (µl, %) and decimals (0.5) stay whole tokens."""
    return {token for token in _KEYWORD_SPLIT.split(text.lower()) if token}


def keyword_iou(a: Sequence[str], b: Sequence[str]) -> float:
    """IoU of the keywords of the joined strings; 1 when both are empty, 0 when one is."""
    ka, kb = keywords(" ".join(a)), keywords(" ".join(b))
    if not ka and not kb:
        return 1.0
    if not ka or not kb:
        return 0.0
    return len(ka & kb) / len(ka | kb)


def object_score(pred: Sequence[str], gt: Sequence[str]) -> float:
    """Set-IoU of lower-cased objects, or keyword IoU when no object matches exactly."""
    sa, sb = {o.strip().lower() for o in pred}, {o.strip().lower() for o in gt}
    exact = len(sa & sb) / len(sa | sb) if sa | sb else 0.0
    return exact if exact > 0 else keyword_iou(pred, gt)


def parameter_score(pred: Sequence[str], gt: Sequence[str], obj: float) -> float:
    """Keyword IoU of parameters, counted only when the objects mostly agree (obj ≥ 0.5)."""
    return keyword_iou(pred, gt) if obj >= 0.5 else 0.0


def position_decay(i: int, j: int, n_gt: int) -> float:
    """1 − (|i−j|/D)^1.5 with D = max(1, #gt), 0 from |i−j| ≥ D: far-off pairs count less."""
    span, gap = max(1, n_gt), abs(i - j)
    return 0.0 if gap >= span else 1.0 - (gap / span) ** 1.5


def step_scale(n_pred: int, n_gt: int) -> tuple[int, int, float]:
    """(d, M, cos(π·min(d, M)/2M)) with M = max(1, #gt): symmetric granularity penalty."""
    d, m = abs(n_pred - n_gt), max(1, n_gt)
    return d, m, 0.0 if d >= m else math.cos(math.pi * d / (2 * m))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for k, y in enumerate(b, start=1):
            current.append(previous[k - 1] + 1 if x == y else max(previous[k], current[k - 1]))
        previous = current
    return previous[-1]


def order_score(pred: Sequence[str], gt: Sequence[str], mode: str) -> float:
    """r_order: strict_subseq is full-sequence equality (as the eval code does); lcs is dense."""
    if mode == "strict_subseq":
        return 1.0 if list(pred) == list(gt) else 0.0
    if not pred and not gt:
        return 1.0
    return 2.0 * lcs_length(pred, gt) / (len(pred) + len(gt))


def greedy_pairs(pred: Sequence[str], gt: Sequence[str]) -> list[tuple[int, int]]:
    """In-order action matching of the eval code: an unmatched pred action ends all matching."""
    pairs, pointer = [], 0
    for i, action in enumerate(pred):
        j = next((k for k in range(pointer, len(gt)) if gt[k] == action), None)
        if j is None:
            pointer = len(gt)  # the quirk: later pred steps can no longer match
            continue
        pairs.append((i, j))
        pointer = j + 1
    return pairs


@dataclass(frozen=True)
class PairScore:
    """Content of one matched (pred, gt) step pair."""

    step: float  # m_x·content, content = obj + 0.5·para (sum) or obj·para (product)
    obj: float
    para: float
    decay: float  # m_x


def pair_score(p: KeyStep, g: KeyStep, i: int, j: int, n_gt: int, combine: str) -> PairScore:
    """Object, parameter and position terms of one pair, combined as the switch says."""
    obj = object_score(p.objects, g.objects)
    para = parameter_score(p.parameters, g.parameters, obj)
    decay = position_decay(i, j, n_gt)
    content = obj + 0.5 * para if combine == "sum" else obj * para
    return PairScore(decay * content, obj, para, decay)


@dataclass(frozen=True)
class ScoreComponents:
    """Every SCORE term for one answer; `score` is the reward."""

    pred_actions: list[str]
    gt_actions: list[str]
    format: float  # I_format
    consistency: float  # I_consistency
    step_diff: int  # d
    scale_span: int  # M
    scale: float  # r_scale
    order: float  # r_order
    pairs: list[tuple[int, int]]
    per_pair: list[PairScore]
    semantic: float  # r_semantic
    semantics: float  # r_order · r_semantic
    score: float


def score_components(
    pred: Sequence[KeyStep],
    gt: Sequence[KeyStep],
    n_orc_steps: int,
    format_ok: bool,
    options: ScoreOptions = DEFAULT_OPTIONS,
) -> ScoreComponents:
    """SCORE from parsed `<key>` steps; every term is computed even when a gate is 0 (for logging)."""
    pred_actions = [s.action.strip().lower() for s in pred]
    gt_actions = [s.action.strip().lower() for s in gt]
    gate_format = 1.0 if format_ok else 0.0
    gate_consistency = 1.0 if n_orc_steps == len(pred) else 0.0
    d, m, scale = step_scale(len(pred), len(gt))
    order = order_score(pred_actions, gt_actions, options.grpo_order_mode)
    pairs = greedy_pairs(pred_actions, gt_actions)
    per_pair = [pair_score(pred[i], gt[j], i, j, len(gt), options.grpo_combine_mode) for i, j in pairs]
    semantic = semantic_score(per_pair, len(pred), len(gt), options.grpo_content_denom)
    semantics = order * semantic
    gates = gate_format * gate_consistency
    final = gates * (scale * semantics if options.grpo_final_combine == "product" else scale + semantics)
    return ScoreComponents(
        pred_actions, gt_actions, gate_format, gate_consistency, d, m, scale, order, pairs, per_pair, semantic, semantics, final
    )


def semantic_score(per_pair: Sequence[PairScore], n_pred: int, n_gt: int, denom: str) -> float:
    """r_semantic: summed pair content over #pairs (matched) or max(#pred, #gt); 0 with no pair."""
    if not per_pair:
        return 0.0
    total = sum(p.step for p in per_pair)
    return total / max(1, len(per_pair)) if denom == "matched" else total / max(n_pred, n_gt)


# ---------------------------------------------------------------- (c) reward functions


def score(
    *, response: str, ground_truth: str | None, extra: Mapping[str, Any] | None = None, prompt: str = "", **_: Any
) -> dict[str, float] | None:
    """SCORE with the switches from `extra` (else the official defaults); None without ground truth."""
    return _reward(prompt, response, ground_truth, ScoreOptions.from_extra(extra, DEFAULT_OPTIONS))


def score_lcs(
    *, response: str, ground_truth: str | None, extra: Mapping[str, Any] | None = None, prompt: str = "", **_: Any
) -> dict[str, float] | None:
    """SCORE with LCS action order: the dense variant (§10.4); `extra` may still override switches."""
    return _reward(prompt, response, ground_truth, ScoreOptions.from_extra(extra, LCS_OPTIONS))


def _reward(prompt: str, response: str, ground_truth: str | None, options: ScoreOptions) -> dict[str, float] | None:
    if ground_truth is None:
        return None
    gt = parse_ground_truth(ground_truth)
    text = "<think>" + response if opens_think(prompt) else response  # the block the template opened
    parsed = parse_response(text, strict=options.strict_format)
    c = score_components(parsed.key_steps, gt, parsed.n_orc_steps, parsed.format_ok, options)
    return {
        "score": c.score,
        "format": c.format,
        "consistency": c.consistency,
        "scale": c.scale,
        "order": c.order,
        "semantic": c.semantic,
        "semantics": c.semantics,
        "step_diff": float(c.step_diff),
        "pred_steps": float(len(parsed.key_steps)),
        "gt_steps": float(len(gt)),
        "matched_pairs": float(len(c.pairs)),
    }


# ---------------------------------------------------------------- worked vectors

# Named configurations of tests/vectors/thoth_score.json: switches, plus overrides of the text checks.
VECTOR_VARIANTS: dict[str, tuple[ScoreOptions, dict[str, Any]]] = {
    "defaults": (DEFAULT_OPTIONS, {}),
    "lcs_order": (LCS_OPTIONS, {}),
    "product_content_maxlen_denom": (ScoreOptions(grpo_combine_mode="product", grpo_content_denom="max_len"), {}),
    "lcs_order_final_sum": (ScoreOptions(grpo_order_mode="lcs", grpo_final_combine="sum"), {}),
    "lcs_order_consistency_fail": (LCS_OPTIONS, {"orc_step_offset": 1}),
    "format_fail": (LCS_OPTIONS, {"format_ok": False}),
}
# The file shows content switches for an identical action sequence, and order, final-sum and
# gate variants for a differing one; `inputs["variants"]` may name others.
SAME_SEQUENCE_VARIANTS = ("defaults", "lcs_order", "product_content_maxlen_denom")
DIFFERENT_SEQUENCE_VARIANTS = ("defaults", "lcs_order", "lcs_order_final_sum", "lcs_order_consistency_fail", "format_fail")


def evaluate_thoth_vector(inputs: dict[str, Any]) -> dict[str, Any]:
    """One thoth_score.json vector's outputs, keyed and nested as in the file."""
    pred = tuple(step_from_json(step) for step in inputs["pred_key_steps"])
    gt = tuple(step_from_json(step) for step in inputs["gt_key_steps"])
    names = inputs.get("variants")
    if names is None:
        same = [s.action.lower() for s in pred] == [s.action.lower() for s in gt]
        names = SAME_SEQUENCE_VARIANTS if same else DIFFERENT_SEQUENCE_VARIANTS
    return {name: _vector_variant(pred, gt, inputs, name) for name in names}


def _vector_variant(pred: tuple[KeyStep, ...], gt: tuple[KeyStep, ...], inputs: dict[str, Any], name: str) -> dict[str, Any]:
    options, overrides = VECTOR_VARIANTS[name]
    n_orc = int(inputs["n_orc_steps_pred"]) + overrides.get("orc_step_offset", 0)
    format_ok = bool(inputs["format_ok"]) and overrides.get("format_ok", True)
    c = score_components(pred, gt, n_orc, format_ok, options)
    return {
        "pred_actions": c.pred_actions,
        "gt_actions": c.gt_actions,
        "I_format": c.format,
        "I_consistency": c.consistency,
        "step_count_diff_d": c.step_diff,
        "M": c.scale_span,
        "r_scale": c.scale,
        "r_order": c.order,
        "pairs(pred_idx,gt_idx)": [[i, j] for i, j in c.pairs],
        "per_pair[step_score,obj,para,m_x]": [[p.step, p.obj, p.para, p.decay] for p in c.per_pair],
        "r_semantic": c.semantic,
        "r_semantics=r_order*r_semantic": c.semantics,
        "SCORE": c.score,
    }
