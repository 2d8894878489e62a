"""Short synthetic protocols (lab, kitchen, assembly) to train Thoth's SCORE reward on.

`python -m rlkit.tasks.protocols --out data/protocols` writes train.jsonl and test.jsonl with the
arithmetic task's columns: `id`, `prompt`, `answer` (the ground truth) and `data_source`
("protocols"). The answer is the reference protocol as a JSON list of steps, each
`{"action": verb, "objects": [...], "parameters": [...]}`, the format rewards/thoth_score.py reads.

Each prompt names a goal, the materials and the amounts/settings in order of use, and asks for
the Sketch-and-Fill answer (`<think> <key> <orc> <note>`) with a worked example. The action
sequence is fixed by the procedure family and its optional steps, so a small model can learn it
from the goal; objects and parameters are read off the prompt. Protocols have 2–6 steps. The
splits are disjoint by prompt text and generation is deterministic for a seed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

from rlkit.tasks.files import task_arguments, write_splits

DATA_SOURCE = "protocols"


@dataclass(frozen=True)
class Step:
    """One reference step; `optional` steps are kept with probability 1/2."""

    action: str
    objects: tuple[str, ...]
    parameters: tuple[str, ...] = ()
    optional: bool = False


@dataclass(frozen=True)
class Family:
    """A kind of procedure: a goal sentence and steps, both with `{slot}` fields."""

    goal: str
    steps: tuple[Step, ...]
    slots: Callable[[random.Random], dict[str, str]]


def _pick(rng: random.Random, **choices: tuple[object, ...]) -> dict[str, str]:
    return {name: str(rng.choice(values)) for name, values in choices.items()}


def _gel(rng: random.Random) -> dict[str, str]:
    s = _pick(rng, pct=(1, 1.5, 2), vol=(50, 100, 150), buffer=("TAE buffer", "TBE buffer"),
              stain=("SYBR Safe", "GelRed"), stain_vol=(2, 5, 10), heat=(1, 2, 3), cool=(15, 20, 30))
    s["grams"] = f"{float(s['pct']) * int(s['vol']) / 100:g}"
    return s


def _dilution(rng: random.Random) -> dict[str, str]:
    s = _pick(rng, fold=(2, 5, 10, 100), stock=("antibody stock", "protein stock", "dye stock"), amount=(10, 20, 50),
              times=(5, 10))
    s["diluent"] = f"{int(s['amount']) * (int(s['fold']) - 1)}"
    return s


FAMILIES: tuple[Family, ...] = (
    Family(
        "Cast a {pct}% agarose gel in {buffer}.",
        (
            Step("weigh", ("agarose",), ("{grams} g",)),
            Step("add", ("{buffer}",), ("{vol} ml",)),
            Step("heat", ("solution",), ("{heat} min",)),
            Step("add", ("{stain}",), ("{stain_vol} µl",), optional=True),
            Step("pour", ("solution", "gel tray")),
            Step("cool", ("gel",), ("{cool} min",), optional=True),
        ),
        _gel,
    ),
    Family(
        "Grow an overnight E. coli culture in {medium}.",
        (
            Step("pipette", ("{medium}", "culture tube"), ("{vol} ml",)),
            Step("add", ("{antibiotic}",), ("{conc} µg/ml",), optional=True),
            Step("inoculate", ("{medium}", "single colony")),
            Step("incubate", ("culture",), ("{temp} °C", "{hours} h", "{rpm} rpm")),
        ),
        lambda rng: _pick(rng, medium=("LB medium", "TB medium", "2xYT medium"), vol=(3, 5, 10),
                          antibiotic=("ampicillin", "kanamycin", "chloramphenicol"), conc=(34, 50, 100),
                          temp=(30, 37), hours=(12, 16), rpm=(200, 220, 250)),
    ),
    Family(
        "Harvest bacterial cells from a {vol} ml culture.",
        (
            Step("transfer", ("culture", "centrifuge tube"), ("{vol} ml",)),
            Step("centrifuge", ("tube",), ("{force} x g", "{minutes} min")),
            Step("discard", ("supernatant",)),
            Step("wash", ("pellet", "PBS"), ("{wash} ml",), optional=True),
            Step("resuspend", ("pellet", "{buffer}"), ("{rvol} ml",), optional=True),
        ),
        lambda rng: _pick(rng, vol=(10, 50, 100), force=(4000, 5000, 6000), minutes=(10, 15, 20),
                          wash=(1, 5, 10), buffer=("lysis buffer", "PBS", "storage buffer"), rvol=(0.5, 1, 2)),
    ),
    Family(
        "Prepare {vol} ml of a {salt} stock solution.",
        (
            Step("weigh", ("{salt}",), ("{grams} g",)),
            Step("dissolve", ("{salt}", "water"), ("{vol} ml",)),
            Step("adjust", ("pH",), ("pH {ph}",), optional=True),
            Step("filter", ("solution",), ("0.22 µm",), optional=True),
            Step("store", ("solution",), ("4 °C",)),
        ),
        lambda rng: _pick(rng, salt=("NaCl", "KCl", "Tris base", "MgCl2"), grams=(2, 5, 10, 29.2),
                          vol=(100, 250, 500), ph=(7.4, 8.0, 8.5)),
    ),
    Family(
        "Precipitate DNA from a {vol} µl sample.",
        (
            Step("add", ("sodium acetate", "DNA sample"), ("{acetate} µl",)),
            Step("add", ("ethanol",), ("{ethanol} µl",)),
            Step("incubate", ("sample",), ("-20 °C", "{chill} min")),
            Step("centrifuge", ("sample",), ("{force} x g", "{minutes} min")),
            Step("wash", ("pellet", "70% ethanol"), ("500 µl",), optional=True),
            Step("dry", ("pellet",), ("{dry} min",), optional=True),
        ),
        lambda rng: _pick(rng, vol=(50, 100, 200), acetate=(5, 10, 20), ethanol=(250, 500),
                          chill=(20, 30, 60), force=(12000, 16000), minutes=(15, 30), dry=(5, 10)),
    ),
    Family(
        "Make a {fold}-fold dilution of the {stock}.",
        (
            Step("pipette", ("diluent", "tube"), ("{diluent} µl",)),
            Step("add", ("{stock}",), ("{amount} µl",)),
            Step("mix", ("tube",), ("{times} times",), optional=True),
        ),
        _dilution,
    ),
    Family(
        "Brew a cup of {tea}.",
        (
            Step("boil", ("water",), ("{ml} ml",)),
            Step("steep", ("{tea}", "water"), ("{minutes} min",)),
            Step("remove", ("{tea}",), (), optional=True),
            Step("add", ("{sweetener}",), ("{tsp} tsp",), optional=True),
        ),
        lambda rng: _pick(rng, tea=("green tea", "black tea", "mint tea"), ml=(200, 250, 300),
                          minutes=(2, 3, 5), sweetener=("honey", "sugar"), tsp=(1, 2)),
    ),
    Family(
        "Cook {grams} g of {rice}.",
        (
            Step("rinse", ("{rice}",), ("{times} times",), optional=True),
            Step("add", ("{rice}", "water"), ("{water} ml",)),
            Step("boil", ("water",)),
            Step("simmer", ("{rice}",), ("{minutes} min",)),
            Step("rest", ("{rice}",), ("{rest} min",), optional=True),
        ),
        lambda rng: _pick(rng, rice=("white rice", "brown rice", "basmati rice"), grams=(150, 200, 300),
                          times=(2, 3), water=(300, 400, 600), minutes=(12, 18, 35), rest=(5, 10)),
    ),
    Family(
        "Make pancake batter and fry {count} pancakes.",
        (
            Step("whisk", ("eggs", "milk"), ("{milk} ml",)),
            Step("add", ("flour",), ("{flour} g",)),
            Step("stir", ("batter",), (), optional=True),
            Step("rest", ("batter",), ("{rest} min",), optional=True),
            Step("fry", ("batter", "pan"), ("{fry} min per side",)),
        ),
        lambda rng: _pick(rng, count=(4, 6, 8), milk=(200, 250, 300), flour=(100, 125, 150),
                          rest=(10, 15, 30), fry=(1, 2)),
    ),
    Family(
        "Bake a loaf of bread from {flour} g of flour.",
        (
            Step("mix", ("flour", "yeast", "water"), ("{flour} g", "{yeast} g", "{water} ml")),
            Step("knead", ("dough",), ("{knead} min",)),
            Step("proof", ("dough",), ("{proof} min",)),
            Step("shape", ("dough", "loaf"), (), optional=True),
            Step("bake", ("loaf",), ("{temp} °C", "{bake} min")),
        ),
        lambda rng: _pick(rng, flour=(400, 500, 600), yeast=(5, 7, 10), water=(300, 350, 400),
                          knead=(8, 10, 12), proof=(45, 60, 90), temp=(200, 220, 230), bake=(30, 35, 40)),
    ),
    Family(
        "Assemble a bookshelf with {shelves} shelves.",
        (
            Step("attach", ("side panels", "base"), ("{screws} screws",)),
            Step("insert", ("shelves",), ("{shelves} shelves",)),
            Step("tighten", ("screws",), (), optional=True),
            Step("mount", ("bookshelf", "wall"), ("{anchors} anchors",), optional=True),
        ),
        lambda rng: _pick(rng, shelves=(2, 3, 4, 5, 6), screws=(6, 8, 10, 12, 16, 20), anchors=(2, 3, 4)),
    ),
    Family(
        "Replace the inner tube of a {kind} bike tire.",
        (
            Step("remove", ("wheel",)),
            Step("remove", ("inner tube",)),
            Step("insert", ("new inner tube",)),
            Step("inflate", ("tire",), ("{psi} psi",)),
            Step("mount", ("wheel",), (), optional=True),
        ),
        lambda rng: _pick(rng, kind=("road", "mountain", "city", "gravel", "folding", "touring"),
                          psi=(35, 40, 45, 50, 60, 80, 90, 100, 110)),
    ),
    Family(
        "Install a {gb} GB memory module in a {machine}.",
        (
            Step("unplug", ("computer",), (), optional=True),
            Step("open", ("case",), ("{screws} screws",)),
            Step("insert", ("memory module", "slot"), ("{gb} GB",)),
            Step("close", ("case",), (), optional=True),
        ),
        lambda rng: _pick(rng, gb=(4, 8, 16, 32, 64), screws=(2, 3, 4),
                          machine=("desktop computer", "workstation", "office PC", "gaming PC")),
    ),
)


INSTRUCTION = (
    "Answer in four blocks: <think>plan</think>, <key> one line per step, "
    'Step k: {"action": verb, "objects": [...], "parameters": [...]} </key>, '
    "<orc> the same steps as sentences </orc>, <note> a safety note </note>. Example:"
)
EXAMPLE = (
    "<think>Heat water, add coffee.</think>\n"
    "<key>\n"
    'Step 1: {"action": "boil", "objects": ["water"], "parameters": ["200 ml"]}\n'
    'Step 2: {"action": "stir", "objects": ["coffee", "water"], "parameters": ["2 g"]}\n'
    "</key>\n"
    "<orc>\n"
    "Step 1: Boil 200 ml of water.\n"
    "Step 2: Stir 2 g of coffee into it.\n"
    "</orc>\n"
    "<note>Hot water scalds.</note>"
)


def make_protocol(rng: random.Random) -> tuple[str, list[dict[str, Any]]]:
    """A goal and its reference steps (2–6, optional steps dropped at random)."""
    family = FAMILIES[rng.randrange(len(FAMILIES))]
    slots = family.slots(rng)
    kept = [step for step in family.steps if not step.optional or rng.random() < 0.5]
    steps = [
        {
            "action": step.action,
            "objects": [text.format(**slots) for text in step.objects],
            "parameters": [text.format(**slots) for text in step.parameters],
        }
        for step in kept
    ]
    return family.goal.format(**slots), steps


def render_prompt(goal: str, steps: list[dict[str, Any]]) -> str:
    """The user message: goal, materials and settings in order of use, format and example."""
    materials = list(dict.fromkeys(obj for step in steps for obj in step["objects"]))
    settings = [param for step in steps for param in step["parameters"]]
    lines = [
        f"Write a protocol. Goal: {goal}",
        f"Materials: {', '.join(materials)}.",
        f"Settings in order of use: {', '.join(settings) if settings else 'none'}.",
        INSTRUCTION,
        EXAMPLE,
    ]
    return "\n".join(lines)


def make_row(rng: random.Random, index: int, split: str) -> dict[str, str]:
    """One dataset row in the arithmetic task's columns; `answer` is the JSON step list."""
    goal, steps = make_protocol(rng)
    return {
        "id": f"{split}-{index}",
        "prompt": render_prompt(goal, steps),
        "answer": json.dumps(steps, ensure_ascii=False, separators=(",", ":")),
        "data_source": DATA_SOURCE,
    }


def generate(num_train: int, num_test: int, seed: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Disjoint train/test splits: test rows are drawn first and their prompts excluded from train."""
    rng = random.Random(seed)
    seen: set[str] = set()
    splits: dict[str, list[dict[str, str]]] = {"test": [], "train": []}
    for split, size in (("test", num_test), ("train", num_train)):
        rows, attempts = splits[split], 0
        while len(rows) < size:
            attempts += 1
            if attempts > 100 * max(size, 1):
                raise ValueError(f"only {len(rows)} distinct {split} prompts found; ask for fewer rows")
            row = make_row(rng, len(rows), split)
            if row["prompt"] not in seen:
                seen.add(row["prompt"])
                rows.append(row)
    return splits["train"], splits["test"]


def main(argv: list[str] | None = None) -> None:
    parser = task_arguments(__doc__, "data/protocols", 1600, 200,
                            "training protocols (1600 keeps the file under 2 MB)", "held-out protocols")
    args = parser.parse_args(argv)
    train, test = generate(args.train, args.test, args.seed)
    write_splits(args.out, {"train": train, "test": test}, ascii_only=False)


if __name__ == "__main__":
    main()
