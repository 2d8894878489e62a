"""Find the reward function a recipe names (`path` + `name`, or `module`); check the contract.

Run at config-validation time, before Ray starts, so a missing file, a typo in the function name
or a bad signature fails in seconds with every problem listed, instead of inside a worker.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any
from collections.abc import Callable

from rlkit.registry import did_you_mean
from rlkit.reward.contract import describe_exception, signature_problems


@dataclass
class RewardFnSpec:
    """Where a reward function lives. Set `path` or `module`, not both."""

    path: str | None = None
    """A .py file, relative to the current working directory (the job's working dir under
    `ray job submit --working-dir`), or absolute."""
    name: str = "score"
    """Name of the function in that file (or in `module` when it has no ':attr' part)."""
    module: str | None = None
    """Alternative to `path`: an importable "package.module:attr" (or "package.module" + `name`)."""

    def describe(self) -> str:
        """'file.py:name' or 'pkg.mod:attr', for messages."""
        if self.module is not None:
            return self.module if ":" in self.module else f"{self.module}:{self.name}"
        return f"{self.path}:{self.name}"

    def resolved(self) -> RewardFnSpec:
        """A copy whose `path` is absolute, so it means the same file in any process."""
        if self.path is None:
            return replace(self)
        return replace(self, path=str(Path(self.path).expanduser().absolute()))


@dataclass
class WeightedRewardFn(RewardFnSpec):
    """One of several reward functions whose weighted sum is the score (`reward.fns`)."""

    label: str = ""
    """Short name: its score is logged as the component `label` (reward/<label>/mean)."""
    weight: float = 1.0
    """Its weight in the sum."""

    def spec(self) -> RewardFnSpec:
        return RewardFnSpec(path=self.path, name=self.name, module=self.module)


# (label, weight, spec); label None = the single function of `reward.fn`, reported unprefixed.
LabeledFn = tuple[str | None, float, RewardFnSpec]


def labeled_functions(single: RewardFnSpec, several: list[WeightedRewardFn] | None) -> list[LabeledFn]:
    """The functions a reward section names: `reward.fns` when given, else `reward.fn` alone."""
    if several:
        return [(item.label, float(item.weight), item.spec()) for item in several]
    return [(None, 1.0, single)]


def check_reward_fn(spec: RewardFnSpec) -> list[str]:
    """Every problem with `spec` (empty list: it loads and fits the contract). Imports the file."""
    return _load(spec)[1]


def load_reward_fn(spec: RewardFnSpec) -> Callable[..., Any]:
    """The reward function `spec` names; ValueError listing every problem if it cannot be used."""
    fn, problems = _load(spec)
    if problems or fn is None:
        raise ValueError(
            f"reward function {spec.describe()} cannot be used:\n  - " + "\n  - ".join(problems)
        )
    return fn


def _load(spec: RewardFnSpec) -> tuple[Callable[..., Any] | None, list[str]]:
    if (spec.path is None) == (spec.module is None):
        return None, [
            "set exactly one of `path` (a .py file, e.g. path: my_rewards.py, name: score) "
            'or `module` (an importable name, e.g. module: "rewards.math_answer:score")'
        ]
    if spec.path is not None:
        module, where, attr, problems = _module_from_path(spec.path, spec.name)
    else:
        module, where, attr, problems = _module_from_name(spec.module or "", spec.name)
    if module is None:
        return None, problems
    fn, problems = _attribute(module, attr, where)
    if fn is None:
        return None, problems
    return fn, [f"{where}:{attr} {p}" for p in signature_problems(fn)]


_Found = tuple[ModuleType | None, str, str, list[str]]  # module, where, attribute, problems


def _module_from_path(path: str, name: str) -> _Found:
    file = Path(path).expanduser().absolute()
    if file.suffix != ".py":
        return None, path, name, [f"reward file {path!r} is not a .py file; point `path` at one"]
    if not file.is_file():
        return None, path, name, [
            f"reward file {path!r} not found (looked for {file}; a relative path is resolved "
            f"against the working directory {os.getcwd()}, which is the job's --working-dir on a "
            "cluster); fix the path or submit the job from the folder that holds the file"
        ]
    # A name unique to the file, so two files both called rewards.py do not replace each other.
    digest = hashlib.sha1(str(file).encode()).hexdigest()[:10]
    module_name = f"rlkit_reward_file_{file.stem}_{digest}"
    try:
        source = file.read_text(encoding="utf-8")
        compile(source, str(file), "exec")
    except SyntaxError as exc:
        problem = f"reward file {path!r} has a syntax error at line {exc.lineno}: {exc.msg}"
        return None, path, name, [problem]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problem = f"reward file {path!r} cannot be read: {describe_exception(exc)}"
        return None, path, name, [problem]
    module_spec = importlib.util.spec_from_file_location(module_name, file)
    assert module_spec is not None and module_spec.loader is not None  # a .py file always has one
    module = importlib.util.module_from_spec(module_spec)
    # Registered while it runs (dataclasses and pickling look modules up by name); the file's own
    # folder is on sys.path only during import, so sibling helper modules it imports are found.
    sys.modules[module_name] = module
    sys.path.insert(0, str(file.parent))
    try:
        module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(module_name, None)
        problem = f"importing reward file {path!r} raised {describe_exception(exc)}"
        return None, path, name, [problem]
    finally:
        _remove_first(sys.path, str(file.parent))
    return module, path, name, []


def _module_from_name(target: str, name: str) -> _Found:
    module_name, _, attr = target.partition(":")
    attr = attr or name
    if not module_name:
        problem = f'module {target!r} names no module; write "package.module:function"'
        return None, target, attr, [problem]
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:
        return None, module_name, attr, [
            f"importing reward module {module_name!r} raised {describe_exception(exc)}; "
            "it must be importable from the working directory or an installed package"
        ]
    return module, module_name, attr, []


def _attribute(
    module: ModuleType, attr: str, where: str
) -> tuple[Callable[..., Any] | None, list[str]]:
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            available = _callables(module)
            return None, [
                f"{where} has no function {attr!r}{did_you_mean(attr, available)}; "
                f"callables there: {', '.join(available) or '(none)'}"
            ]
        obj = getattr(obj, part)
    if not callable(obj):
        return None, [f"{where}:{attr} is a {type(obj).__name__}, not a function"]
    return obj, []


def _callables(module: ModuleType) -> list[str]:
    """Public callables of `module`, those defined in it first (imported helpers last)."""
    own, imported = [], []
    for key, value in vars(module).items():
        if key.startswith("_") or inspect.ismodule(value) or not callable(value):
            continue
        (own if getattr(value, "__module__", None) == module.__name__ else imported).append(key)
    return sorted(own) + sorted(imported)


def _remove_first(items: list[str], value: str) -> None:
    try:
        items.remove(value)
    except ValueError:
        pass
