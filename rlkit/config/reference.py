"""docs/config.md, generated from the schema: `python -m rlkit.config.reference > docs/config.md`.

A test fails when the committed file differs, so the reference cannot drift from the code.
"""

from __future__ import annotations

import dataclasses

from rlkit.algorithms import ADVANTAGES, POLICY_LOSSES, REGULARIZERS
from rlkit.config.fielddocs import field_docs, walk_fields
from rlkit.config.schema import TrainConfig


def _default(value: object) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text.replace("|", "\\|")


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _option_default(spec: dataclasses.Field) -> str:
    if spec.default is not dataclasses.MISSING:
        return f"`{_default(spec.default)}`"
    if spec.default_factory is not dataclasses.MISSING:
        return f"`{_default(spec.default_factory())}`"
    return "**required**"


def _options_table(kind: str, registry) -> list[str]:
    lines = [f"### {kind} options", "", "| name | option | default | meaning |", "|---|---|---|---|"]
    for name in registry.names():
        options = registry.get(name).options
        docs = field_docs(options)
        for spec in dataclasses.fields(options):
            lines.append(f"| `{name}` | `{spec.name}` | {_option_default(spec)} | {_cell(docs.get(spec.name, ''))} |")
    return lines + [""]


def markdown() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from the code by `python -m rlkit.config.reference > docs/config.md`; do not edit by hand.",
        "Recipes in `recipes/` override these defaults; `key=value` arguments override the recipe.",
        "",
    ]
    section = None
    for key, _kind, doc, default in walk_fields(TrainConfig):
        top = key.split(".", 1)[0]
        if top != section:
            section = top
            lines += ["", f"## `{top}`", "", "| key | default | meaning |", "|---|---|---|"]
        lines.append(f"| `{key}` | `{_default(default)}` | {_cell(doc)} |")
    lines += ["", "## Component options", "",
              "Each estimator, loss and regulariser declares its own hyperparameters, set under "
              "`algorithm.advantage_options`, `algorithm.loss_options` and `algorithm.regularizers.<name>`; "
              "docs/algorithms.md explains each method.", ""]
    lines += _options_table("Advantage estimator", ADVANTAGES)
    lines += _options_table("Policy loss", POLICY_LOSSES)
    lines += _options_table("Regularizer", REGULARIZERS)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
