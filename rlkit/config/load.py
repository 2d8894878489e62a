"""Load a recipe + `key=value` overrides into a validated TrainConfig.

Every problem is collected and reported at once, before any Ray actor starts: unknown keys
(with a did-you-mean), wrong types, unknown registry names (with the valid list) and
cross-field rules.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from rlkit.config.schema import TrainConfig


class ConfigError(ValueError):
    """The configuration has problems; `problems` lists each one."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{source}: {count} in the configuration:\n{lines}")


def parse_overrides(overrides: list[str]) -> tuple[dict[str, Any], list[str]]:
    """`a.b=value` strings → nested dict (values parsed as YAML) and a list of malformed ones."""
    tree: dict[str, Any] = {}
    problems = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
            problems.append(f"override {item!r} is not of the form key=value (e.g. learner.lr=1e-5)")
            continue
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return tree, problems


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_recipe(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A recipe's YAML as a dict (`yaml.safe_load`: no object construction).

    A recipe may start from another: `base: other.yaml` (a path relative to the recipe's own
    folder) loads that one first and merges this one over it, mapping by mapping, so a method
    recipe states only what differs from the recipe it compares against.
    """
    recipe = Path(path)
    if not recipe.is_file():
        raise ConfigError(str(path), [f"recipe file not found: {recipe.resolve()} "
                                      "(recipes live in recipes/, e.g. recipes/tiny_cpu.yaml)"])
    try:
        content = yaml.safe_load(recipe.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(str(path), [f"not valid YAML: {error}"]) from None
    if not isinstance(content, dict):
        raise ConfigError(str(path), [f"a recipe must be a mapping of sections, got {type(content).__name__}"])
    base = content.pop("base", None)
    if base is None:
        return content
    if not isinstance(base, str):
        raise ConfigError(str(path), [f"base: give the path of the recipe this one starts from, got {base!r}"])
    base_path = (recipe.parent / base).resolve()
    chain = (*_chain, recipe.resolve())
    if base_path in chain:
        cycle = " -> ".join(str(item) for item in (*chain, base_path))
        raise ConfigError(str(path), [f"base: recipes include each other in a cycle ({cycle})"])
    _one_reward_source(content)  # this recipe's reward `path` replaces the base's `module`, and vice versa
    return deep_merge(read_recipe(base_path, chain), content)


def all_keys(cls: type = TrainConfig, prefix: str = "") -> list[str]:
    """Every dotted key of the schema, sections included."""
    keys = []
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        key = prefix + spec.name
        keys.append(key)
        if dataclasses.is_dataclass(hints[spec.name]):
            keys.extend(all_keys(hints[spec.name], key + "."))
    return keys


def _suggest(key: str, local: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(key, local, n=1, cutoff=0.6)
    if close:
        return f' (did you mean "{prefix}{close[0]}"?)'
    anywhere = [k for k in all_keys() if k.rsplit(".", 1)[-1] == key]
    if anywhere:
        return f' (did you mean "{anywhere[0]}"?)'
    close = difflib.get_close_matches(prefix + key, all_keys(), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


def _coerce(value: Any, kind: Any) -> tuple[bool, Any]:
    """(ok, converted value) for a leaf value against a field type."""
    if isinstance(value, str) and "${" in value:
        return True, value  # OmegaConf interpolation, resolved later
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return True, None
        for option in (a for a in args if a is not type(None)):
            ok, converted = _coerce(value, option)
            if ok:
                return True, converted
        return False, value
    if kind is Any:
        return True, value
    if kind is bool:
        return isinstance(value, bool), value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-5 as a string
            try:
                return True, float(value)
            except ValueError:
                return False, value
        return False, value
    if kind is str:
        if isinstance(value, str):
            return True, value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, str(value)
        return False, value
    if origin is list:
        if not isinstance(value, list):
            return False, value
        converted = []
        for item in value:
            ok, item = _coerce(item, args[0] if args else Any)
            if not ok:
                return False, value
            converted.append(item)
        return True, converted
    if origin is dict or kind is dict:
        return isinstance(value, dict), value
    return True, value


def check_shape(cls: type, raw: dict[str, Any], prefix: str, problems: list[str]) -> dict[str, Any]:
    """Unknown keys and wrong types against the dataclass schema; returns type-converted values."""
    hints = typing.get_type_hints(cls)
    names = [spec.name for spec in dataclasses.fields(cls)]
    converted: dict[str, Any] = {}
    for key, value in raw.items():
        key = str(key)
        if key not in names:
            hint = _suggest(key, names, prefix)
            if not hint and isinstance(value, dict):  # a misplaced section: look its keys up elsewhere
                leaves = [k for k in all_keys() if k.rsplit(".", 1)[-1] in {str(v) for v in value}]
                hint = f' (did you mean "{leaves[0]}"?)' if leaves else ""
            problems.append(
                f'unknown key "{prefix}{key}"{hint}; '
                f"keys of {prefix.rstrip('.') or 'the top level'}: {', '.join(names)}"
            )
            continue
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, dict):
                problems.append(f'"{prefix}{key}" is a section ({", ".join(f.name for f in dataclasses.fields(kind))}); '
                                f"got {value!r}")
                continue
            converted[key] = check_shape(kind, value, f"{prefix}{key}.", problems)
            continue
        ok, new_value = _coerce(value, kind)
        if not ok:
            problems.append(f'"{prefix}{key}" must be {_type_name(kind)}, got {value!r} ({type(value).__name__})')
            continue
        converted[key] = new_value
    return converted


def _one_reward_source(raw: dict[str, Any]) -> None:
    """Naming a reward `path` replaces the default `module` (and vice versa) instead of clashing."""
    spec = raw.get("reward", {}).get("fn") if isinstance(raw.get("reward"), dict) else None
    if isinstance(spec, dict):
        if "path" in spec and "module" not in spec:
            spec["module"] = None
        elif "module" in spec and "path" not in spec:
            spec["path"] = None


def load_config(recipe: str | Path | None, overrides: list[str] | None = None, *, semantic: bool = True) -> TrainConfig:
    """Recipe file + overrides → validated TrainConfig, or ConfigError listing every problem."""
    source = str(recipe) if recipe else "defaults"
    raw = read_recipe(recipe) if recipe else {}
    override_tree, problems = parse_overrides(list(overrides or []))
    raw = deep_merge(raw, override_tree)
    _one_reward_source(raw)
    converted = check_shape(TrainConfig, raw, "", problems)
    try:  # built from the valid parts, so meaning-level problems are reported in the same pass
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), converted)
        config = OmegaConf.to_object(merged)
    except Exception as error:  # interpolation errors and the like
        raise ConfigError(source, [*problems, f"could not build the configuration: {error}"]) from None
    if semantic:
        from rlkit.config.checks import check_config

        problems.extend(check_config(config))
    if problems:
        raise ConfigError(source, problems)
    return config


def to_yaml(config: TrainConfig) -> str:
    """The resolved configuration as YAML (what a run saves as config.yaml)."""
    return OmegaConf.to_yaml(OmegaConf.structured(config), resolve=True)


def from_resolved_yaml(path: str | Path) -> TrainConfig:
    """Read back a config.yaml written by a run (for resume and inspection)."""
    return load_config(path, semantic=False)
