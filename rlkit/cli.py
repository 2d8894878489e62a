"""`rlkit train|check|show-config RECIPE [key=value ...]`, `rlkit sweep RECIPE --methods ...`,
`rlkit compare RUN_DIR ...`."""

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
    text = "run the recipe once per method (and seed), grouped for comparison"
    command = commands.add_parser("sweep", help=text, description=text, epilog=USAGE_EPILOG)
    command.add_argument("recipe")
    command.add_argument("overrides", nargs="*", help="key=value overrides for every run")
    command.add_argument("--methods", required=True, help="comma-separated, e.g. grpo,clip_cov,kl_cov,steer")
    command.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per method (default 1)")
    command.add_argument("--name", help="sweep name: W&B group and run-name prefix (default <recipe>-<time>)")
    command.add_argument("--out", help="folder for the runs and sweep.json (default runs/sweeps/<name>)")
    command.add_argument("--submit", metavar="ADDRESS",
                         help="submit each run as a Ray job to this address (e.g. http://127.0.0.1:8265) "
                              "instead of running locally")
    command.add_argument("--working-dir", default=".", help="working directory shipped with each Ray job (default .)")
    command.add_argument("--parallel", type=int, default=1, help="Ray jobs running at once with --submit (default 1)")
    text = "runs side by side: compare.png (curves vs step and wall time) and compare.md (table)"
    command = commands.add_parser("compare", help=text, description=text)
    command.add_argument("runs", nargs="+", help="run folders, or sweep folders (holding sweep.json)")
    command.add_argument("--out", default="runs/compare", help="where compare.png and compare.md go")
    command.add_argument("--title", help="figure and page title (default: the labels)")
    command.add_argument("--smooth", type=int, default=1, metavar="N",
                         help="plot training curves as a trailing mean of N steps (default 1: as logged)")
    return parser


def _split(recipe: str | None, overrides: list[str]) -> tuple[str | None, list[str]]:
    """`rlkit check a=b` has no recipe: an argument with '=' is an override."""
    if recipe is not None and "=" in recipe:
        return None, [recipe, *overrides]
    return recipe, overrides


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    # Overrides may also follow options (`rlkit sweep R --methods a,b key=value`).
    args, extra = parser.parse_known_args(argv)
    stray = [item for item in extra if item.startswith("-") or "=" not in item or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    from rlkit.config import ConfigError, load_config, to_yaml

    if args.command == "sweep":
        from rlkit.sweep import sweep

        methods = [method.strip() for method in args.methods.split(",") if method.strip()]
        try:
            return sweep(args.recipe, methods, args.seeds, args.name, args.out, args.overrides, args.submit,
                         args.working_dir, args.parallel)
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    if args.command == "compare":
        from rlkit.compare import compare

        try:
            figure, table = compare(args.runs, args.out, args.title, args.smooth)
        except (FileNotFoundError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"wrote {figure}\nwrote {table}")
        return 0

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

    from rlkit.evaluation import format_accuracy

    from rlkit.resume import RunRefused

    try:
        summary = train(config)
    except RunRefused as error:  # nothing was started or written: say why and how to go on
        print(f"error: {error}", file=sys.stderr)
        return 1
    before, after = summary.get("eval_before", {}), summary.get("eval_after", {})
    if before or after:
        print(f"held-out accuracy: before {format_accuracy(before)} → after {format_accuracy(after)}")
    print(f"run folder: {summary['run_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
