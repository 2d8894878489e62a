"""Search over a local corpus, in the Search-R1 format.

The model writes `<search>query</search>` (its turn ends there) and gets the top-k documents by
BM25 back inside `<information>…</information>`; `<answer>…</answer>` ends the episode. A turn
with neither (e.g. cut off by the turn budget, or a tag left open) gets a short note on the format
and the episode goes on, as in Search-R1; `end_on_invalid=True` ends it instead. The immediate
step reward is 0 unless `hit_reward` is set: the outcome is the reward function's job
(rewards/retrieval_qa.py).

Everything here is a pure function of the corpus file, the reset arguments and the actions, so the
environment host can rebuild an episode by replaying it. Model text is only searched for tags and
split into words; queries are capped at `MAX_QUERY_CHARS`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlkit.environment import ENVIRONMENTS, StepResult
from rlkit.tasks.retrieval_qa import format_information, words

DEFAULT_CORPUS = "data/retrieval_qa/corpus.jsonl"
REPO_ROOT = Path(__file__).resolve().parent.parent
MAX_QUERY_CHARS = 500
INVALID_NOTE = (
    "\n<information>\nNo search or answer found. Search with <search>query</search>, "
    "or answer with <answer>answer</answer>.\n</information>\n"
)


@dataclass
class Bm25Index:
    """Okapi BM25 over lower-cased word tokens of each document's title and text."""

    documents: list[dict[str, Any]]
    postings: dict[str, list[tuple[int, int]]]  # word -> [(document index, term frequency)]
    lengths: list[int]  # words per document
    k1: float = 1.2
    b: float = 0.75

    @classmethod
    def build(cls, documents: list[dict[str, Any]], k1: float = 1.2, b: float = 0.75) -> Bm25Index:
        postings: dict[str, list[tuple[int, int]]] = {}
        lengths = []
        for index, doc in enumerate(documents):
            counts = Counter(words(f"{doc['title']} {doc['text']}"))
            lengths.append(sum(counts.values()))
            for word, count in counts.items():
                postings.setdefault(word, []).append((index, count))
        return cls(documents, postings, lengths, k1, b)

    def idf(self, word: str) -> float:
        """Lucene's idf, always positive: a word in every document still counts a little."""
        n, df = len(self.documents), len(self.postings.get(word, ()))
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def scores(self, query: str) -> dict[int, float]:
        """BM25 score of every document sharing a word with the query (each query word counted once)."""
        average = sum(self.lengths) / max(len(self.lengths), 1)
        totals: dict[int, float] = {}
        for word in sorted(set(words(query))):
            idf = self.idf(word)
            for index, tf in self.postings.get(word, ()):
                norm = tf + self.k1 * (1 - self.b + self.b * self.lengths[index] / average)
                totals[index] = totals.get(index, 0.0) + idf * tf * (self.k1 + 1) / norm
        return totals

    def search(self, query: str, top_k: int) -> list[dict[str, Any]]:
        """The `top_k` best documents sharing a word with the query; ties go to the earlier document."""
        ranked = sorted(self.scores(query).items(), key=lambda item: (-item[1], item[0]))
        return [self.documents[index] for index, _ in ranked[:top_k]]


_INDEXES: dict[str, Bm25Index] = {}  # resolved corpus path -> index, built once per process


def resolve_corpus(path: str) -> Path:
    """The corpus file: absolute, or relative to the working directory, else to the repo root.

    Under `ray job submit --working-dir .` both are the unpacked repository; the fallback keeps
    the default working when a script runs from elsewhere.
    """
    given = Path(path).expanduser()
    candidates = [given] if given.is_absolute() else list(dict.fromkeys([Path.cwd() / given, REPO_ROOT / given]))
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"retrieval_qa corpus {path!r} not found (looked at {tried}); write the shipped one with "
        "`python -m rlkit.tasks.retrieval_qa --out data/retrieval_qa` or set rollout.env.options.corpus"
    )


def load_index(path: str = DEFAULT_CORPUS) -> Bm25Index:
    """The BM25 index of a corpus jsonl ({id, title, text} per line), cached per process."""
    resolved = str(resolve_corpus(path))
    if resolved not in _INDEXES:
        documents = []
        with open(resolved, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                doc = json.loads(line)
                if not isinstance(doc, dict) or not {"id", "title", "text"} <= set(doc):
                    raise ValueError(f"{resolved} line {number}: expected an object with id, title and text")
                documents.append({"id": str(doc["id"]), "title": str(doc["title"]), "text": str(doc["text"])})
        if not documents:
            raise ValueError(f"{resolved}: the corpus has no documents")
        _INDEXES[resolved] = Bm25Index.build(documents)
    return _INDEXES[resolved]


def parse_action(turn: str) -> tuple[str, str] | None:
    """("search", query) or ("answer", text) for the tag that ended the turn, else None.

    The turn ends at the first closing tag (that is where the rollout cuts it); its opening tag
    is the last one before it. Plain `str.find`s keep this linear in the turn's length.
    """
    closes = [(turn.find(f"</{tag}>"), tag) for tag in ("search", "answer")]
    found = [(position, tag) for position, tag in closes if position >= 0]
    if not found:
        return None
    end, tag = min(found)
    start = turn.rfind(f"<{tag}>", 0, end)
    if start < 0:
        return None
    return tag, turn[start + len(tag) + 2 : end].strip()


@ENVIRONMENTS.register("retrieval_qa")
class RetrievalQA:
    """One episode: answer each search with the top-k documents until the model answers."""

    stop = ("</search>", "</answer>")

    def __init__(
        self,
        corpus: str = DEFAULT_CORPUS,
        top_k: int = 3,
        end_on_invalid: bool = False,
        hit_reward: float = 0.0,
    ) -> None:
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"retrieval_qa: top_k={top_k!r} must be an integer ≥ 1")
        self.index = load_index(corpus)
        self.top_k = top_k
        self.end_on_invalid = bool(end_on_invalid)
        self.hit_reward = float(hit_reward)
        self.gold: set[str] = set()
        self.seen: set[str] = set()

    def reset(self, prompt: str, ground_truth: str | None, extra: dict[str, Any]) -> None:
        """Remember the row's supporting documents (`doc_ids`), used only by `hit_reward`."""
        doc_ids = (extra or {}).get("doc_ids")
        self.gold = {str(d) for d in doc_ids} if isinstance(doc_ids, (list, tuple)) else set()
        self.seen = set()

    def step(self, action: str) -> StepResult:
        """Search results, the end of the episode (answer), or the format note (neither)."""
        parsed = parse_action(str(action))
        if parsed is None:
            return StepResult(INVALID_NOTE, 0.0, self.end_on_invalid)
        kind, text = parsed
        if kind == "answer":
            return StepResult("", 0.0, True)
        found = self.index.search(text[:MAX_QUERY_CHARS], self.top_k)
        return StepResult(format_information(found), self._reward(found), False)

    def _reward(self, found: list[dict[str, Any]]) -> float:
        """`hit_reward` when the results bring a supporting document not retrieved before."""
        new = ({doc["id"] for doc in found} & self.gold) - self.seen
        self.seen |= new
        return self.hit_reward if new else 0.0
