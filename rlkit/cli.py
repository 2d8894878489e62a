"""`rlkit train|check|show-config RECIPE [key=value ...]`."""

from __future__ import annotations

import argparse
import sys

USAGE_EPILOG = "Overrides are key=value pairs, e.g. learner.lr=3e-6 rollout.n=8 logging.wandb=false."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlkit", description="RL post-training for LLMs.", epilog=USAGE_EPILOG)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("train", "run training"),
        ("check", "validate a recipe and overrides; exit 1 listing every problem"),
        ("show-config", "print the resolved configuration"),
    ):
        command = commands.add_parser(name, help=text, description=text, epilog=USAGE_EPILOG)
        command.add_argument("recipe", nargs="?", help="a YAML recipe from recipes/ (omit for the defaults)")
        command.add_argument("overrides", nargs="*", help="key=value overrides")
        if name == "show-config":
            command.add_argument("--docs", action="store_true", help="list every key with its default and meaning")
    return parser


def _split(recipe: str | None, overrides: list[str]) -> tuple[str | None, list[str]]:
    """`rlkit check a=b` has no recipe: an argument with '=' is an override."""
    if recipe is not None and "=" in recipe:
        return None, [recipe, *overrides]
    return recipe, overrides


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from rlkit.config import ConfigError, load_config, to_yaml

    if args.command == "show-config" and args.docs:
        from rlkit.config.fielddocs import walk_fields
        from rlkit.config.schema import TrainConfig

        for key, _kind, doc, default in walk_fields(TrainConfig):
            print(f"{key} = {default!r}\n    {doc}")
        return 0
    recipe, overrides = _split(args.recipe, args.overrides)
    try:
        config = load_config(recipe, overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.command == "check":
        print(f"{recipe or 'defaults'}: configuration is valid")
        return 0
    if args.command == "show-config":
        print(to_yaml(config), end="")
        return 0
    from rlkit.controller import train

    summary = train(config)
    before = summary.get("eval_before", {}).get("eval/accuracy")
    after = summary.get("eval_after", {}).get("eval/accuracy")
    if before is not None or after is not None:
        print(f"held-out accuracy: before {before if before is None else f'{before:.3f}'} → after {after if after is None else f'{after:.3f}'}")
    print(f"run folder: {summary['run_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
