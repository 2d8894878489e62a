"""Search-style question answering over a small synthetic encyclopedia (the Search-R1 setting).

`python -m rlkit.tasks.retrieval_qa --out data/retrieval_qa` writes corpus.jsonl, train.jsonl
and test.jsonl. Every entity (provinces, towns, rivers, mountains, people, companies) has an
invented name, so a model can only answer by searching the corpus, not from pretraining. Each
fact is stated in exactly one document, the one about its subject; two-hop questions chain two
such facts ("the province of the town the river X flows through"). The splits are disjoint by
fact: a test question asks something no training question asks, in any wording. Generation is
deterministic for a seed.

The observation format (`format_information`) and the tokenizer (`words`) live here, so the
prompt's worked example and the `retrieval_qa` environment (envs/retrieval_qa.py) cannot drift
apart. Prompts are chats (a list of {role, content}), which rlkit.data reads as they are.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any
from collections.abc import Sequence

from rlkit.tasks.files import task_arguments, write_splits

DATA_SOURCE = "retrieval_qa"

# Entity counts: 12 + 90 + 40 + 40 + 70 + 48 = 300 documents.
COUNTS = {"province": 12, "town": 90, "river": 40, "mountain": 40, "person": 70, "company": 48}

# Names are glued from these syllables. The worked example's names are kept out of the corpus.
_HEADS = ["Vel", "Ost", "Kar", "Bren", "Dra", "Hal", "Mor", "Zan", "Ilv", "Yor", "Pel", "Gar", "Thes",
          "Ulm", "Nor", "Cas", "Fen", "Wyr", "Ald", "Rhe", "Sav", "Lom", "Ket", "Bal", "Ors", "Vin",
          "Dov", "Eth", "Quil", "Jos", "Nev", "Tor", "Sel", "Mab", "Kro", "Hest", "Lun", "Gav"]
_MIDDLES = ["", "a", "e", "i", "o", "u", "ar", "en", "or", "il", "an"]
_TAILS = ["ra", "rik", "zel", "nov", "mark", "lo", "sin", "dor", "wick", "via", "ten", "gard", "mos",
          "lin", "ros", "vik", "thal", "mere", "brek", "dun", "sk", "ny", "rith", "vale", "quist"]
_FIRST_NAMES = ["Ilsa", "Tomas", "Maren", "Oskar", "Liesl", "Anselm", "Brigid", "Corvin", "Edda",
                "Fabian", "Greta", "Henrik", "Ida", "Jorun", "Kasimir", "Linnea", "Matthis", "Nora",
                "Otto", "Petra", "Ragna", "Sten", "Tilde", "Ulrich"]
EXAMPLE_NAMES = frozenset({"tamberlo", "quessin"})

PROFESSIONS = ["painter", "cartographer", "astronomer", "composer", "poet", "bridge builder",
               "glassblower", "physician", "botanist", "clockmaker", "shipwright", "weaver",
               "sculptor", "historian", "architect", "chemist", "violinist", "bookbinder"]
PRODUCTS = ["glass lanterns", "copper kettles", "wool blankets", "pocket watches", "sailcloth",
            "paper maps", "ceramic tiles", "rope", "candles", "bicycles", "pianos", "telescopes",
            "barometers", "ink", "leather boots", "fishing nets", "lenses", "clay pipes"]
EXPORTS = ["amber", "salt", "wool", "copper", "timber", "honey", "tin", "flax", "barley", "slate",
           "marble", "cheese", "apples", "iron", "peat", "silver"]

INSTRUCTION = (
    "Answer the question with the help of a search engine over a small encyclopedia. To search, "
    "write a query between <search> and </search>; the top documents come back between "
    "<information> and </information>. Search as often as you need. When you know the answer, "
    "write only the answer, copied from a document, between <answer> and </answer>."
)
EXAMPLE_QUESTION = "How many kilometres long is the river Tamberlo?"
EXAMPLE_DOCUMENT = {"id": "example", "title": "River Tamberlo",
                    "text": "The river Tamberlo flows through the town of Quessin. It is 87 km long."}

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lower-cased alphanumeric word tokens: what the retriever indexes and matches on."""
    return _WORD.findall(text.lower())


def format_information(documents: Sequence[dict[str, Any]]) -> str:
    """The observation for one search: the ranked documents inside <information> tags."""
    if not documents:
        return "\n<information>\nNo documents found.\n</information>\n"
    lines = [f"Doc {rank} (Title: {doc['title']}) {doc['text']}" for rank, doc in enumerate(documents, 1)]
    return "\n<information>\n" + "\n".join(lines) + "\n</information>\n"


def make_prompt(question: str) -> list[dict[str, str]]:
    """The chat: instructions and an example question, a worked episode as the assistant's turn,
    then the question.

    The worked episode sits in the assistant's turn because SmolLM2-135M-Instruct imitates it
    there far more often than an example quoted inside the user message (measured in
    docs/environments_retrieval.md); with no correct episodes GRPO has nothing to learn from.
    """
    episode = f"<search>river Tamberlo</search>{format_information([EXAMPLE_DOCUMENT])}<answer>87</answer>"
    return [
        {"role": "user", "content": f"{INSTRUCTION}\n\nQuestion: {EXAMPLE_QUESTION}"},
        {"role": "assistant", "content": episode},
        {"role": "user", "content": f"Question: {question}"},
    ]


@dataclass
class Entity:
    kind: str
    name: str
    facts: dict[str, Any]
    doc_id: str = ""


@dataclass(frozen=True)
class Fact:
    """One answerable question: its wordings, answer and supporting documents (hop order)."""

    key: str  # unique per fact: the split is made over these
    wordings: tuple[str, ...]
    answer: str
    doc_ids: tuple[str, ...]


def _names(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    names: list[str] = []
    while len(names) < count:
        name = rng.choice(_HEADS) + rng.choice(_MIDDLES) + rng.choice(_TAILS)
        if 5 <= len(name) <= 10 and name.lower() not in taken:
            taken.add(name.lower())
            names.append(name)
    return names


def build_world(rng: random.Random) -> dict[str, list[Entity]]:
    """Entities with mutually consistent facts (a mountain's climber was alive when they climbed it)."""
    taken = set(EXAMPLE_NAMES)
    provinces = [Entity("province", n, {"area": f"{rng.randint(900, 9800):,}", "export": rng.choice(EXPORTS)})
                 for n in _names(rng, COUNTS["province"], taken)]
    towns = []
    for index, name in enumerate(_names(rng, COUNTS["town"], taken)):
        province = provinces[index % len(provinces)]  # every province gets towns
        towns.append(Entity("town", name, {"province": province, "founded": str(rng.randint(1100, 1690)),
                                           "population": f"{rng.randint(800, 96000):,}"}))
    for province in provinces:
        province.facts["capital"] = rng.choice([t for t in towns if t.facts["province"] is province])
    rivers = [Entity("river", n, {"town": rng.choice(towns), "length": str(rng.randint(12, 680))})
              for n in _names(rng, COUNTS["river"], taken)]
    people = []
    for last in _names(rng, COUNTS["person"], taken):
        born = rng.randint(1700, 1860)
        people.append(Entity("person", f"{rng.choice(_FIRST_NAMES)} {last}", {
            "profession": rng.choice(PROFESSIONS), "birthplace": rng.choice(towns),
            "born": str(born), "died": str(born + rng.randint(45, 88))}))
    mountains = []
    for name in _names(rng, COUNTS["mountain"], taken):
        climber = rng.choice(people)
        mountains.append(Entity("mountain", name, {
            "height": str(rng.randint(1200, 4800)), "province": rng.choice(provinces), "climber": climber,
            "climbed": str(int(climber.facts["born"]) + rng.randint(18, 40))}))
    companies = []
    for name in _names(rng, COUNTS["company"], taken):
        founder = rng.choice(people)
        companies.append(Entity("company", name, {
            "product": rng.choice(PRODUCTS), "seat": rng.choice(towns), "founder": founder,
            "founded": str(int(founder.facts["born"]) + rng.randint(22, 44))}))
    return {"province": provinces, "town": towns, "river": rivers, "mountain": mountains,
            "person": people, "company": companies}


def title(entity: Entity) -> str:
    """The document title: the name as questions and other documents write it."""
    return {"river": f"River {entity.name}", "mountain": f"Mount {entity.name}",
            "company": f"{entity.name} Company"}.get(entity.kind, entity.name)


def document_text(entity: Entity) -> str:
    """One to three sentences stating every fact about the entity, and no fact about another."""
    f, name = entity.facts, entity.name
    if entity.kind == "province":
        return (f"{name} is a province whose capital is {f['capital'].name}. It covers {f['area']} square "
                f"kilometres, and its chief export is {f['export']}.")
    if entity.kind == "town":
        return (f"{name} is a town in the province of {f['province'].name}. It was founded in {f['founded']} "
                f"and has about {f['population']} inhabitants.")
    if entity.kind == "river":
        return f"The river {name} flows through the town of {f['town'].name}. It is {f['length']} km long."
    if entity.kind == "mountain":
        return (f"Mount {name} is a mountain in the province of {f['province'].name}, {f['height']} metres "
                f"high. It was first climbed by {f['climber'].name} in {f['climbed']}.")
    if entity.kind == "person":
        last = name.split()[-1]
        return (f"{name} was a {f['profession']} born in the town of {f['birthplace'].name} in {f['born']}. "
                f"{last} died in {f['died']}.")
    return (f"The {name} Company makes {f['product']} and has its seat in {f['seat'].name}. It was founded "
            f"in {f['founded']} by {f['founder'].name}.")


# (kind, relation) -> (wordings, how to read the answer). Two wordings per fact.
SINGLE_HOP: dict[tuple[str, str], tuple[str, str]] = {
    ("province", "capital"): ("What is the capital of the province of {n}?", "Which town is the capital of {n}?"),
    ("province", "export"): ("What is the chief export of {n}?", "What does the province of {n} mainly export?"),
    ("province", "area"): ("How many square kilometres does the province of {n} cover?",
                           "What is the area of {n} in square kilometres?"),
    ("town", "province"): ("In which province is the town of {n}?", "Which province does {n} belong to?"),
    ("town", "founded"): ("In which year was the town of {n} founded?", "When was {n} founded?"),
    ("town", "population"): ("About how many inhabitants does {n} have?", "What is the population of the town of {n}?"),
    ("river", "town"): ("Which town does the river {n} flow through?", "Through which town does the {n} river flow?"),
    ("river", "length"): ("How many kilometres long is the river {n}?", "What is the length of the river {n} in km?"),
    ("mountain", "height"): ("How many metres high is Mount {n}?", "What is the height of Mount {n} in metres?"),
    ("mountain", "province"): ("In which province does Mount {n} lie?", "Which province is Mount {n} in?"),
    ("mountain", "climber"): ("Who first climbed Mount {n}?", "Who made the first ascent of Mount {n}?"),
    ("mountain", "climbed"): ("In which year was Mount {n} first climbed?", "When was the first ascent of Mount {n}?"),
    ("person", "profession"): ("What was the profession of {n}?", "What did {n} work as?"),
    ("person", "birthplace"): ("In which town was {n} born?", "Where was {n} born?"),
    ("person", "born"): ("In which year was {n} born?", "When was {n} born?"),
    ("person", "died"): ("In which year did {n} die?", "When did {n} die?"),
    ("company", "product"): ("What does the {n} Company make?", "Which goods does the {n} Company produce?"),
    ("company", "seat"): ("In which town does the {n} Company have its seat?", "Where is the {n} Company based?"),
    ("company", "founder"): ("Who founded the {n} Company?", "Who was the founder of the {n} Company?"),
    ("company", "founded"): ("In which year was the {n} Company founded?", "When was the {n} Company founded?"),
}
# (kind, bridge relation, final relation) -> wordings; the bridge relation names another entity.
TWO_HOP: dict[tuple[str, str, str], tuple[str, str]] = {
    ("river", "town", "province"): ("In which province is the town that the river {n} flows through?",
                                    "The river {n} flows through a town. Which province is that town in?"),
    ("river", "town", "founded"): ("In which year was the town that the river {n} flows through founded?",
                                   "When was the town on the river {n} founded?"),
    ("company", "founder", "born"): ("In which year was the founder of the {n} Company born?",
                                     "When was the person who founded the {n} Company born?"),
    ("company", "seat", "province"): ("In which province is the town where the {n} Company has its seat?",
                                      "The {n} Company is based in a town. Which province is that town in?"),
    ("mountain", "climber", "birthplace"): ("In which town was the first climber of Mount {n} born?",
                                            "Where was the person who first climbed Mount {n} born?"),
    ("mountain", "province", "capital"): ("What is the capital of the province in which Mount {n} lies?",
                                          "Mount {n} lies in a province. Which town is its capital?"),
    ("town", "province", "export"): ("What is the chief export of the province that {n} belongs to?",
                                     "{n} lies in a province. What is that province's chief export?"),
    ("person", "birthplace", "province"): ("In which province was {n} born?",
                                           "{n} was born in a town. Which province is that town in?"),
}


def _value(entity: Entity, relation: str) -> str:
    value = entity.facts[relation]
    return value.name if isinstance(value, Entity) else str(value)


def facts(world: dict[str, list[Entity]]) -> list[Fact]:
    """Every single-hop and two-hop fact of the world, in a fixed order."""
    found = []
    for (kind, relation), wordings in SINGLE_HOP.items():
        for entity in world[kind]:
            found.append(Fact(f"{kind}/{entity.name}/{relation}", tuple(w.format(n=entity.name) for w in wordings),
                              _value(entity, relation), (entity.doc_id,)))
    for (kind, bridge, relation), wordings in TWO_HOP.items():
        for entity in world[kind]:
            middle = entity.facts[bridge]
            found.append(Fact(f"{kind}/{entity.name}/{bridge}/{relation}", tuple(w.format(n=entity.name) for w in wordings),
                              _value(middle, relation), (entity.doc_id, middle.doc_id)))
    return found


def build_corpus(world: dict[str, list[Entity]], rng: random.Random) -> list[dict[str, Any]]:
    """Documents in a shuffled order (ids do not reveal the kind); sets each entity's doc_id."""
    entities = [entity for kind in COUNTS for entity in world[kind]]
    rng.shuffle(entities)
    corpus = []
    for index, entity in enumerate(entities):
        entity.doc_id = f"doc-{index:04d}"
        corpus.append({"id": entity.doc_id, "title": title(entity), "text": document_text(entity)})
    return corpus


def _row(fact: Fact, wording: str, row_id: str) -> dict[str, Any]:
    return {"id": row_id, "prompt": make_prompt(wording), "answer": fact.answer, "data_source": DATA_SOURCE,
            "question": wording, "doc_ids": list(fact.doc_ids), "hops": len(fact.doc_ids)}


def generate(num_train: int, num_test: int, seed: int) -> tuple[list[dict], list[dict], list[dict]]:
    """(corpus, train, test). Test facts are drawn first; train uses every wording of the rest."""
    rng = random.Random(seed)
    world = build_world(rng)
    corpus = build_corpus(world, rng)
    pool = facts(world)
    rng.shuffle(pool)
    if num_test > len(pool):
        raise ValueError(f"--test {num_test} is more than the {len(pool)} facts the corpus states")
    test_facts, train_facts = pool[:num_test], pool[num_test:]
    test = [_row(fact, rng.choice(fact.wordings), f"test-{i}") for i, fact in enumerate(test_facts)]
    candidates = [(fact, wording) for fact in train_facts for wording in fact.wordings]
    rng.shuffle(candidates)
    train = [_row(fact, wording, f"train-{i}") for i, (fact, wording) in enumerate(candidates[:num_train])]
    return corpus, train, test


def main(argv: list[str] | None = None) -> None:
    parser = task_arguments(__doc__, "data/retrieval_qa", 2000, 200,
                            "training questions (at most all wordings of the training facts)",
                            "held-out questions, one per fact")
    args = parser.parse_args(argv)
    corpus, train, test = generate(args.train, args.test, args.seed)
    write_splits(args.out, {"corpus": corpus, "train": train, "test": test})


if __name__ == "__main__":
    main()
