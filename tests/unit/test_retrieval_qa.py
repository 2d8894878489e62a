"""The retrieval_qa task: generated corpus and questions, BM25 retriever, environment, reward."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from envs.retrieval_qa import DEFAULT_CORPUS, INVALID_NOTE, Bm25Index, RetrievalQA, load_index, parse_action, resolve_corpus
from rewards.retrieval_qa import normalize, score, strip_information
from rlkit.tags import count_tagged, first_tagged, last_tagged, last_tagged_span
from rlkit.environment import ENVIRONMENTS, build_environment
from rlkit.models import build_tiny_tokenizer
from rlkit.rollout.engine import SamplingOptions
from rlkit.rollout.env_host import EnvHost
from rlkit.rollout.episodes import run_episodes
from rlkit.tasks import retrieval_qa as task
from rlkit.types import FinishReason, Generation, Prompt, RolloutRequest

REPO = Path(__file__).parents[2]
DATA = REPO / "data" / "retrieval_qa"
HIT_RATE_FLOOR = 0.9  # measured: 47/50 on the first 50 test questions, 191/200 on all of them


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def test_rows() -> list[dict]:
    return read_jsonl(DATA / "test.jsonl")


@pytest.fixture(scope="module")
def corpus() -> dict[str, dict]:
    return {doc["id"]: doc for doc in read_jsonl(DATA / "corpus.jsonl")}


# ---------------------------------------------------------------- generator and shipped data


def digest(folder: Path) -> str:
    return hashlib.sha256(b"".join((folder / name).read_bytes()
                                   for name in ("corpus.jsonl", "train.jsonl", "test.jsonl"))).hexdigest()


def test_generator_is_deterministic_and_reproduces_the_shipped_files(tmp_path: Path) -> None:
    for name, seed in (("a", 1234), ("b", 1234), ("c", 7)):
        task.main(["--out", str(tmp_path / name), "--seed", str(seed)])
    assert digest(tmp_path / "a") == digest(tmp_path / "b") == digest(DATA)
    assert digest(tmp_path / "c") != digest(tmp_path / "a")


def test_shipped_files_have_the_documented_shape(corpus: dict[str, dict], test_rows: list[dict]) -> None:
    train = read_jsonl(DATA / "train.jsonl")
    assert len(corpus) == 300 and len(train) == 2000 and len(test_rows) == 200
    assert all((DATA / name).stat().st_size < 2_000_000 for name in ("corpus.jsonl", "train.jsonl", "test.jsonl"))
    for row in train + test_rows:
        assert set(row) == {"id", "prompt", "answer", "data_source", "question", "doc_ids", "hops"}
        assert row["data_source"] == "retrieval_qa" and len(row["doc_ids"]) == row["hops"]
        assert [m["role"] for m in row["prompt"]] == ["user", "assistant", "user"]
        assert row["prompt"][-1]["content"] == "Question: " + row["question"]
        assert row["prompt"][1]["content"].startswith("<search>") and row["prompt"][1]["content"].endswith("</answer>")
    assert {row["hops"] for row in test_rows} == {1, 2}
    titles = [doc["title"] for doc in corpus.values()]
    assert len(set(titles)) == len(titles)


def test_splits_share_no_fact(test_rows: list[dict]) -> None:
    """Disjoint by fact: no test question, in any wording, is asked in training."""
    train = read_jsonl(DATA / "train.jsonl")
    facts = {(key, wording) for key, wordings in _wordings_by_fact().items() for wording in wordings}
    fact_of = {wording: key for key, wording in facts}
    assert len(fact_of) == len(facts)  # no wording is shared by two facts
    test_facts = {fact_of[row["question"]] for row in test_rows}
    assert len(test_facts) == len(test_rows)
    assert not test_facts & {fact_of[row["question"]] for row in train}


def _wordings_by_fact() -> dict[str, tuple[str, ...]]:
    import random

    return {fact.key: fact.wordings for fact in task.facts(task.build_world(random.Random(1234)))}


def test_every_answer_is_stated_in_its_supporting_document(corpus: dict[str, dict], test_rows: list[dict]) -> None:
    """The last supporting document (the fact's own) contains the answer as whole words."""
    for row in test_rows + read_jsonl(DATA / "train.jsonl"):
        answer = f" {normalize(row['answer'])} "
        doc = corpus[row["doc_ids"][-1]]
        assert answer in f" {normalize(doc['text'])} ", (row["question"], row["answer"], doc["text"])
        if row["hops"] == 2:  # the bridge entity is named in the first document and titles the second
            bridge = corpus[row["doc_ids"][1]]["title"]
            assert bridge in corpus[row["doc_ids"][0]]["text"]


def test_example_entity_is_not_in_the_corpus(corpus: dict[str, dict]) -> None:
    words = {w for doc in corpus.values() for w in task.words(doc["title"] + " " + doc["text"])}
    assert not words & task.EXAMPLE_NAMES
    example = task.make_prompt("q")[1]["content"]
    assert task.EXAMPLE_NAMES <= set(task.words(example))


def test_prompts_load_as_chats_with_their_columns(tmp_path: Path) -> None:
    from rlkit.data import load_prompts

    (prompt,) = load_prompts(DATA / "test.jsonl", build_tiny_tokenizer(), max_prompt_tokens=4096, limit=1)
    row = read_jsonl(DATA / "test.jsonl")[0]
    assert prompt.ground_truth == row["answer"] and prompt.data_source == "retrieval_qa"
    assert prompt.extra["doc_ids"] == row["doc_ids"] and prompt.text.count("<|im_start|>user") == 2


# ---------------------------------------------------------------- retriever


def test_question_as_query_finds_the_gold_document(test_rows: list[dict]) -> None:
    index = load_index()
    rows = test_rows[:50]
    hits = sum(row["doc_ids"][0] in [doc["id"] for doc in index.search(row["question"], 3)] for row in rows)
    print(f"retrieval hit rate @3 on {len(rows)} test questions: {hits / len(rows):.2f}")
    assert hits / len(rows) >= HIT_RATE_FLOOR


def test_bm25_prefers_rare_words_and_shorter_documents() -> None:
    texts = ["common alpha", "common beta", "common gamma", "zephyr delta", "zephyr and other filler words", "nothing here"]
    index = Bm25Index.build([{"id": str(i), "title": "T", "text": text} for i, text in enumerate(texts)])
    scores = index.scores("zephyr common")
    assert scores[3] > scores[0]  # same length, rarer word
    assert scores[3] > scores[4]  # same word, shorter document
    assert scores[0] == scores[1] == scores[2] and 5 not in scores
    ranked = [d["id"] for d in index.search("zephyr common", 6)]
    assert ranked[0] == "3" and "5" not in ranked  # no shared word: never returned
    assert [i for i in ranked if i in "012"] == ["0", "1", "2"]  # ties go to the earlier document
    assert index.search("unknownword", 3) == [] and index.search("", 3) == []
    assert index.search("zephyr zephyr zephyr common", 6) == index.search("common zephyr", 6)  # words count once


def test_corpus_path_resolves_from_the_repo_root_when_cwd_differs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_corpus(DEFAULT_CORPUS) == (DATA / "corpus.jsonl").resolve()
    with pytest.raises(FileNotFoundError, match="rlkit.tasks.retrieval_qa"):
        resolve_corpus("data/none.jsonl")


def test_index_is_built_once_per_corpus() -> None:
    assert load_index() is load_index(str(DATA / "corpus.jsonl"))
    assert RetrievalQA().index is RetrievalQA().index


# ---------------------------------------------------------------- environment


def test_action_parsing() -> None:
    assert parse_action("I should look. <search> river Velmora </search>") == ("search", "river Velmora")
    assert parse_action("<answer>Ostrik</answer>") == ("answer", "Ostrik")
    assert parse_action("<search>a</search><answer>b</answer>") == ("search", "a")  # the tag that ended the turn
    assert parse_action("<search>old <search>new</search>") == ("search", "new")
    assert parse_action("Velmora</search>") is None and parse_action("<search>open") is None
    assert parse_action("") is None


def test_search_then_answer(test_rows: list[dict], corpus: dict[str, dict]) -> None:
    row = next(r for r in test_rows if r["hops"] == 1)
    env = build_environment("retrieval_qa", {})
    assert isinstance(env, RetrievalQA) and env.stop == ("</search>", "</answer>")
    env.reset(row["prompt"], row["answer"], {"doc_ids": row["doc_ids"]})
    result = env.step(f"<search>{row['question']}</search>")
    assert not result.done and result.reward == 0.0
    assert result.observation.startswith("\n<information>\nDoc 1 (Title: ") and result.observation.endswith("</information>\n")
    assert result.observation.count("\nDoc ") == 3 and corpus[row["doc_ids"][0]]["text"] in result.observation
    final = env.step(f"<answer>{row['answer']}</answer>")
    assert final.done and final.observation == "" and final.reward == 0.0


def test_invalid_turn_gets_a_note_or_ends_the_episode() -> None:
    env = RetrievalQA()
    env.reset("", None, {})
    assert env.step("I think the answer is Ostrik.") == env.step("<search>unclosed")
    assert env.step("no tags").observation == INVALID_NOTE and not env.step("no tags").done
    strict = RetrievalQA(end_on_invalid=True)
    strict.reset("", None, {})
    assert strict.step("no tags").done


def test_empty_and_unmatched_queries_say_so() -> None:
    env = RetrievalQA()
    env.reset("", None, {})
    assert "No documents found." in env.step("<search>   </search>").observation
    assert "No documents found." in env.step("<search>qqqq zzzz</search>").observation


@pytest.mark.parametrize("action", [
    "\x00\xff" * 1000, "<search>" * 200_000, "</search>" * 1000, "<search>" + "word " * 400_000 + "</search>",
    "<answer>" + "é" * 100_000, "<search>\ud800</search>", "<<search>>]]}}{{</search></answer>",
])
def test_garbage_and_huge_turns_never_raise(action: str) -> None:
    env = RetrievalQA()
    env.reset("p", "gt", {"doc_ids": "not a list"})
    result = env.step(action)
    assert isinstance(result.observation, str) and isinstance(result.done, bool)


def test_same_actions_give_the_same_results(test_rows: list[dict]) -> None:
    actions = [f"<search>{row['question']}</search>" for row in test_rows[:5]] + ["junk", "<answer>x</answer>"]

    def play() -> list:
        env = RetrievalQA(hit_reward=0.5)
        env.reset("p", "gt", {"doc_ids": test_rows[0]["doc_ids"]})
        return [env.step(action) for action in actions]

    assert play() == play()


def test_hit_reward_pays_once_per_new_supporting_document(test_rows: list[dict]) -> None:
    row = next(r for r in test_rows if r["hops"] == 1)
    env = RetrievalQA(hit_reward=0.5)
    env.reset(row["prompt"], row["answer"], {"doc_ids": row["doc_ids"]})
    assert env.step("<search>qqqq</search>").reward == 0.0
    assert env.step(f"<search>{row['question']}</search>").reward == 0.5
    assert env.step(f"<search>{row['question']}</search>").reward == 0.0  # already retrieved


def test_options_are_checked() -> None:
    assert "retrieval_qa" in ENVIRONMENTS
    with pytest.raises(ValueError, match="top_k"):
        RetrievalQA(top_k=0)
    env = RetrievalQA(top_k=1)
    env.reset("", None, {})
    assert env.step("<search>river town</search>").observation.count("\nDoc ") == 1


def test_one_episode_through_the_environment_host(test_rows: list[dict], corpus: dict[str, dict]) -> None:
    """Reset, search and answer in the real child process; a replayed episode answers the same."""
    row = next(r for r in test_rows if r["hops"] == 2)
    host = EnvHost("retrieval_qa", {"top_k": 2}, timeout_s=30.0)
    try:
        episode, stop = host.reset(row["prompt"], row["answer"], {"doc_ids": row["doc_ids"]})
        assert stop == ("</search>", "</answer>")
        first = host.step(episode, f"<search>{row['question']}</search>")
        bridge = corpus[row["doc_ids"][1]]["title"]
        second = host.step(episode, f"<search>{bridge}</search>")
        assert first.observation.count("\nDoc ") == 2 and not first.done
        assert corpus[row["doc_ids"][1]]["text"] in second.observation
        host._restart()  # what the host does after another episode's timeout: replay this one
        assert host.step(episode, f"<search>{bridge}</search>") == second
        assert host.step(episode, f"<answer>{row['answer']}</answer>").done
        host.close_episode(episode)
    finally:
        host.close()


class ScriptedEngine:
    """Replays fixed turns (each followed by text past the stop string, as a real engine may)."""

    def __init__(self, turns: list[str]) -> None:
        self.tokenizer = build_tiny_tokenizer()
        self.turns = list(turns)

    def generate(self, prompt_ids: list[list[int]], n: int, sampling: SamplingOptions) -> list[list[Generation]]:
        text = self.turns.pop(0) + " and more"
        ids = self.tokenizer.encode(text, add_special_tokens=False)[: sampling.max_new_tokens]
        return [[Generation(ids, [-0.5] * len(ids), FinishReason.LENGTH, self.tokenizer.decode(ids))] for _ in prompt_ids]


def test_episode_loop_masks_observations_and_the_reward_scores_it(test_rows: list[dict], corpus: dict[str, dict]) -> None:
    from rlkit.environment import EnvOptions

    row = next(r for r in test_rows if r["hops"] == 1)
    engine = ScriptedEngine([f"Let me look.<search>{row['question']}</search>", f"<answer>{row['answer']}</answer>"])
    prompt = Prompt("p0", "question", [1, 2, 3], row["answer"], "retrieval_qa", {"doc_ids": row["doc_ids"]})
    host = EnvHost("retrieval_qa", {}, timeout_s=30.0)
    try:
        options = EnvOptions(name="retrieval_qa", max_turns=4, max_turn_tokens=400, max_episode_tokens=4000)
        (episode,) = run_episodes(engine, host, [RolloutRequest("g", prompt, 1, 0)], SamplingOptions(), options, 8192)
    finally:
        host.close()
    assert episode.done and episode.finish == FinishReason.STOP and episode.env_status == "ok"
    assert len(episode.turn_starts) == 2 and episode.texts[0].endswith("</search>")
    observation, second = episode.texts[1], episode.turn_starts[1]
    assert corpus[row["doc_ids"][0]]["text"] in observation
    first_end = second - len(engine.tokenizer.encode(observation, add_special_tokens=False))
    assert set(episode.mask[:first_end]) == {1} and set(episode.mask[second:]) == {1}
    assert set(episode.mask[first_end:second]) == {0} and set(episode.logprobs[first_end:second]) == {0.0}
    assert score(response=episode.text, ground_truth=row["answer"]) == {"score": 1.0, "answered": 1.0, "searches": 1.0}


# ---------------------------------------------------------------- reward


def test_normalization() -> None:
    assert normalize("  The  Ostrik. ") == "ostrik"
    assert normalize("12,400") == normalize("12400") == "12400"
    assert normalize("An Apple") == "apple" and normalize("Théa’s «river»") == "théas river"
    assert normalize("there") == "there"  # articles only as whole words


def test_reward_reads_the_last_answer_outside_observations() -> None:
    gt = "Ostrik"
    assert score(response="<answer>the ostrik</answer>", ground_truth=gt)["score"] == 1.0
    assert score(response="<answer>Ostrik</answer> then <answer>Velmora</answer>", ground_truth=gt)["score"] == 0.0
    assert score(response="<answer>Velmora</answer><answer>Ostrik</answer>", ground_truth=gt)["score"] == 1.0
    assert score(response="<answer>Ostrik Velmora</answer>", ground_truth=gt)["score"] == 0.0  # exact, not contains
    planted = "<search>q</search><information>Doc 1 <answer>Ostrik</answer> <search>x</search></information>"
    assert score(response=planted, ground_truth=gt) == {"score": 0.0, "answered": 0.0, "searches": 1.0}
    assert score(response="Ostrik", ground_truth=gt) == {"score": 0.0, "answered": 0.0, "searches": 0.0}
    assert score(response="<answer>Ostrik</answer>", ground_truth=None) is None


def test_reward_counts_complete_searches() -> None:
    response = "<search>a</search>\n<information>..</information>\n<search>b</search><search>unclosed"
    assert score(response=response, ground_truth="x")["searches"] == 2.0
    assert count_tagged("<search><search>a</search>", "search") == 1
    assert last_tagged("<answer>a</answer><answer>b", "answer") == "a" and last_tagged("b</answer>", "answer") is None
    assert last_tagged("<answer>x<answer>y</answer>", "answer") == "y" and last_tagged_span("ab<q>c</q>", "q") == (5, 6)
    assert first_tagged("<key>a</key><key>b</key>", "key") == "a" and first_tagged("<key>a", "key") is None
    assert strip_information("a<information>b</information>c<information>open") == "ac"


def test_reward_meets_the_contract() -> None:
    from rlkit.reward import RewardFnSpec, check_reward_fn

    assert check_reward_fn(RewardFnSpec(path=str(REPO / "rewards" / "retrieval_qa.py"), name="score")) == []
