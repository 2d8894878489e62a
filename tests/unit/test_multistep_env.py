"""The `multistep` environment (envs/multistep.py) and its task generator (rlkit.tasks.multistep):
scripted episodes with exact observations and step rewards, garbage of every kind, determinism,
the child-process host, and a whole episode loop scored by G-RA and D-RA."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from envs.multistep import MALFORMED, VALID, WRONG, MultiStep, Step, judge_step, parse_step
from rewards.gra import score_dra, score_gra
from rlkit.environment import ENVIRONMENTS, EnvOptions, StepResult, build_environment
from rlkit.models import build_tiny_tokenizer
from rlkit.rollout.engine import SamplingOptions
from rlkit.rollout.env_host import EnvHost, EnvironmentFailure
from rlkit.rollout.episodes import run_episodes
from rlkit.tasks import multistep as task
from rlkit.types import FinishReason, Generation, Prompt, RolloutRequest

REPO = Path(__file__).parents[2]
ROW = {"start": 5, "ops": ["+ 3", "* 2", "- 4"], "data_source": "multistep"}  # 5 → 8 → 16 → 12
NEXT_MUL, NEXT_SUB, DONE = "\nNext: * 2\n", "\nNext: - 4\n", "\nAll steps done. Now the final answer.\n"


def fresh(**options: object) -> MultiStep:
    env = MultiStep(**options)  # type: ignore[arg-type]
    env.reset("prompt text", "12", dict(ROW))
    return env


def play(env: MultiStep, actions: list[str]) -> list[StepResult]:
    return [env.step(action) for action in actions]


# ---------------------------------------------------------------- scripted episodes


def test_registered_with_both_stop_strings() -> None:
    assert "multistep" in ENVIRONMENTS
    env = build_environment("multistep", {"valid_reward": 0.2})
    assert isinstance(env, MultiStep) and env.stop == ("</step>", "</answer>")


def test_correct_episode() -> None:
    results = play(fresh(), ["<step>5 + 3 = 8</step>", "<step>8 * 2 = 16</step>", "<step>16 - 4 = 12</step>",
                             "<answer>12</answer>"])
    assert results == [
        StepResult(NEXT_MUL, 0.1, False),
        StepResult(NEXT_SUB, 0.1, False),
        StepResult(DONE, 0.1, False),
        StepResult("", 0.0, True),
    ]


def test_wrong_arithmetic_moves_on_from_the_models_own_result() -> None:
    env = fresh()
    assert env.step("<step>5 + 3 = 9</step>") == StepResult(NEXT_MUL, 0.0, False)
    assert env.step("<step>9 * 2 = 18</step>") == StepResult(NEXT_SUB, 0.1, False)  # consistent with its own 9


def test_malformed_turns_repeat_the_instruction() -> None:
    env = fresh()
    for garbage in ["", "hello", "<step>5 plus 3 is 8</step>", "<step>5 + 3 = 8", "5 + 3 = 8</step>", "<step></step>",
                    "<step>5 + 3 = 8 = 8</step>"]:
        assert env.step(garbage) == StepResult("\nFormat error.\nNext: + 3\n", -0.1, False), garbage
    assert env.step("<step>5 + 3 = 8</step>") == StepResult(NEXT_MUL, 0.1, False)  # the chain did not move


def test_huge_and_hostile_input_is_just_malformed() -> None:
    env = fresh()
    hostile = [
        "x" * 2_000_000,
        "<step>" * 100_000 + "</step>",
        "<step>" + "9" * 10_000 + " + 1 = 1</step>",  # no 10k-digit int conversion
        "<step>__import__('os').system('true') = 0</step>",
        "<step>5 + 3 = 8\x00</step>",
        "\ud800<step>\u202e</step>",
        "<answer" * 1000,
    ]
    for action in hostile:
        assert env.step(action) == StepResult("\nFormat error.\nNext: + 3\n", -0.1, False)


def test_step_after_the_last_operation_is_malformed() -> None:
    env = fresh()
    play(env, ["<step>5 + 3 = 8</step>", "<step>8 * 2 = 16</step>", "<step>16 - 4 = 12</step>"])
    assert env.step("<step>1 + 1 = 2</step>") == StepResult(DONE, -0.1, False)
    assert env.step("junk") == StepResult(DONE, -0.1, False)
    assert env.step("<answer>12</answer>") == StepResult("", 0.0, True)


def test_answers_end_the_episode() -> None:
    assert fresh().step("I think <answer> 12 </answer>") == StepResult("", 0.0, True)  # early: the outcome judges it
    assert fresh().step("<answer>twelve</answer>") == StepResult("", -0.1, True)
    assert fresh().step("</answer>") == StepResult("", -0.1, True)
    env = fresh()
    env.step("<answer>12</answer>")
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step("<step>5 + 3 = 8</step>")


def test_local_critic_pays_irrelevant_true_steps_and_strict_does_not() -> None:
    assert fresh().step("<step>1 + 1 = 2</step>").reward == 0.1  # the misalignment G-RA gates
    strict = fresh(strict_steps=True)
    assert strict.step("<step>1 + 1 = 2</step>") == StepResult(NEXT_MUL, 0.0, False)
    assert strict.step("<step>2 * 2 = 4</step>").reward == 0.1  # continues from its own result
    assert strict.step("<step>4 + 4 = 8</step>").reward == 0.0  # not the instructed "- 4"


def test_strict_critic_judges_each_step_from_the_models_own_previous_result() -> None:
    carried = fresh(strict_steps=True)
    play(carried, ["<step>5 + 3 = 9</step>"])
    assert carried.step("<step>9 * 2 = 18</step>").reward == 0.1  # one error is penalised once
    corrected = fresh(strict_steps=True)
    play(corrected, ["<step>5 + 3 = 9</step>"])
    assert corrected.step("<step>8 * 2 = 16</step>").reward == 0.0  # does not continue from its 9


def test_custom_reward_values_and_bad_options() -> None:
    env = fresh(valid_reward=1.0, wrong_reward=-0.5, malformed_reward=-2.0)
    assert [r.reward for r in play(env, ["<step>5 + 3 = 8</step>", "<step>8 * 2 = 15</step>", "??"])] == [1.0, -0.5, -2.0]
    with pytest.raises(ValueError, match="finite"):
        MultiStep(valid_reward=float("nan"))


def test_parse_step_and_judge() -> None:
    assert parse_step("sure: <step> 12 × 3 = 36 </step>") == Step(12, "*", 3, 36)
    assert parse_step("<step>−5 − 3 = −8</step>") == Step(-5, "-", 3, -8)
    assert parse_step("<step>8x2=16</step>") == Step(8, "*", 2, 16)
    assert parse_step("<step>1 + 1 = 2</step><step>2 + 2 = 4</step>") == Step(2, "+", 2, 4)  # the last block
    assert parse_step("<step>٣ + 1 = 4</step>") is None  # ASCII digits only
    assert parse_step("<step>1 / 1 = 1</step>") is None
    assert judge_step(Step(8, "*", 2, 16), 8, ("*", 2), strict=True) == VALID
    assert judge_step(Step(8, "*", 2, 17), 8, ("*", 2), strict=False) == WRONG
    assert judge_step(Step(8, "*", 2, 16), 8, None, strict=False) == MALFORMED
    assert judge_step(None, 8, ("*", 2), strict=False) == MALFORMED


def test_reset_rejects_rows_without_a_consistent_chain() -> None:
    env = MultiStep()
    with pytest.raises(ValueError, match="dataset columns start"):
        env.reset("p", "12", {"start": 5})
    with pytest.raises(ValueError, match="dataset columns start"):
        env.reset("p", "12", {"start": 5, "ops": ["^ 3"]})
    with pytest.raises(ValueError, match="empty"):
        env.reset("p", "5", {"start": 5, "ops": []})
    with pytest.raises(ValueError, match="not the chain's result 12"):
        env.reset("p", "13", dict(ROW))
    with pytest.raises(RuntimeError, match="before reset"):
        env.step("<step>5 + 3 = 8</step>")
    env.reset("p", None, dict(ROW))  # no ground truth: nothing to cross-check


def test_deterministic_for_the_same_reset_and_actions() -> None:
    rng = random.Random(7)
    pieces = ["<step>5 + 3 = 8</step>", "<step>8 * 2 = 16</step>", "<step>16 - 4 = 11</step>", "noise", "<step>1+1=2</step>",
              "<answer>12</answer>"]
    for _ in range(30):
        actions = [rng.choice(pieces) for _ in range(6)]
        runs = []
        for _ in range(2):
            env, results = fresh(), []
            for action in actions:
                results.append(env.step(action))
                if results[-1].done:
                    break
            runs.append(results)
        assert runs[0] == runs[1]


# ---------------------------------------------------------------- in the child-process host


def test_one_episode_through_the_env_host() -> None:
    host = EnvHost("multistep", {}, timeout_s=60.0)  # generous: a spawned child imports slowly on a busy machine
    try:
        episode, stop = host.reset("prompt text", "12", dict(ROW))
        assert stop == ("</step>", "</answer>")
        actions = ["<step>5 + 3 = 8</step>", "garbage", "<step>8 * 2 = 16</step>", "<step>16 - 4 = 12</step>",
                   "<answer>12</answer>"]
        results = [host.step(episode, action) for action in actions]
        assert results == play(fresh(), actions)  # same as in-process, through pickling
        assert [r.reward for r in results] == [0.1, -0.1, 0.1, 0.1, 0.0] and results[-1].done
        with pytest.raises(EnvironmentFailure, match="after the episode ended"):
            host.step(episode, "<step>1 + 1 = 2</step>")
        with pytest.raises(EnvironmentFailure, match="dataset columns start"):
            host.reset("prompt", "1", {"data_source": "multistep"})
        assert host.restarts == 0  # errors are reported, not fatal to the host
    finally:
        host.close()


# ---------------------------------------------------------------- a whole episode loop, scored

TOKENIZER = build_tiny_tokenizer()


class ScriptedEngine:
    """Replies with the next scripted turn (a real engine's place; one episode at a time)."""

    tokenizer = TOKENIZER

    def __init__(self, turns: list[str]) -> None:
        self.turns = list(turns)

    def generate(self, prompt_ids: list[list[int]], n: int, sampling: SamplingOptions) -> list[list[Generation]]:
        outputs = []
        for _ in prompt_ids:
            tokens = TOKENIZER.encode(self.turns.pop(0), add_special_tokens=False)[: sampling.max_new_tokens]
            outputs.append([Generation(tokens, [-0.5] * len(tokens), FinishReason.LENGTH, TOKENIZER.decode(tokens))])
        return outputs


@pytest.mark.parametrize(
    ("turns", "gra", "dra"),
    [
        (["<step>5 + 3 = 8</step>", "<step>8 * 2 = 16</step>", "<step>16 - 4 = 12</step>", "<answer>12</answer>"], 1.3, 1.3),
        (["<step>5 + 3 = 8</step>", "<step>8 * 2 = 16</step>", "<step>16 - 4 = 11</step>", "<answer>11</answer>"], 0.0, 0.2),
        (["<step>1 + 1 = 2</step>", "<step>2 + 2 = 4</step>", "<step>4 + 4 = 8</step>", "<answer>8</answer>"], 0.0, 0.3),
        (["oops", "<step>5 + 3 = 8</step>", "<step>8 * 2 = 16</step>", "<step>16 - 4 = 12</step>",
          "<answer>12</answer>"], 1.2, 1.2),
    ],
    ids=["all-correct", "last-step-wrong", "farming-true-steps", "one-malformed-turn"],
)
def test_episode_loop_then_gra_and_dra(turns: list[str], gra: float, dra: float) -> None:
    text = task.build_prompt(5, [("+", 3), ("*", 2), ("-", 4)])
    prompt = Prompt(uid="p0", text=text, prompt_ids=TOKENIZER.encode(text), ground_truth="12", data_source="multistep",
                    extra=dict(ROW))
    options = EnvOptions(name="multistep", max_turns=5, max_turn_tokens=32, max_episode_tokens=256)
    host = EnvHost("multistep", {}, timeout_s=60.0)
    try:
        (episode,) = run_episodes(ScriptedEngine(turns), host, [RolloutRequest("g0", prompt, 1, 0)], SamplingOptions(),
                                  options, 1024)
    finally:
        host.close()
    assert episode.env_status == "ok" and len(episode.step_rewards) == len(turns) == len(episode.turn_starts)
    kwargs = {"response": episode.text, "ground_truth": "12", "extra": dict(ROW), "step_rewards": tuple(episode.step_rewards)}
    assert score_gra(**kwargs)["score"] == pytest.approx(gra)
    assert score_dra(**kwargs)["score"] == pytest.approx(dra)


# ---------------------------------------------------------------- the task generator and its files


def test_generator_is_deterministic_disjoint_and_consistent() -> None:
    train, test = task.generate(300, 50, seed=5)
    assert (train, test) == task.generate(300, 50, seed=5)
    assert train != task.generate(300, 50, seed=6)[0]
    chains = lambda rows: {(r["start"], tuple(r["ops"])) for r in rows}  # noqa: E731
    assert not chains(train) & chains(test) and len(chains(train)) == 300
    for row in train + test:
        ops = [task.parse_op(op) for op in row["ops"]]
        assert 2 <= len(ops) <= 3 and row["answer"] == str(task.final_value(row["start"], ops))
        value = row["start"]
        for op, operand in ops:
            value = task.apply(value, op, operand)
            assert 0 <= value <= task.MAX_VALUE
        assert set(row) == {"id", "prompt", "answer", "data_source", "start", "ops"}


def test_prompt_example_is_what_the_environment_says() -> None:
    """Replaying the worked example through the environment reproduces it line for line."""
    env = MultiStep()
    env.reset("p", None, {"start": task.EXAMPLE_START, "ops": [task.format_op(*op) for op in task.EXAMPLE_OPS]})
    transcript = ""
    for line in task.worked_example().split("\n"):
        if line.startswith(("<step>", "<answer>")):
            result = env.step(line)
            transcript += line + result.observation
    assert result.done and transcript == task.worked_example()  # the observations carry the newlines
    assert task.worked_example() in task.build_prompt(7, [("+", 1)])


def test_shipped_files_are_the_generator_output(tmp_path: Path) -> None:
    task.main(["--out", str(tmp_path)])
    for name in ("train.jsonl", "test.jsonl"):
        shipped = REPO / "data" / "multistep" / name
        assert shipped.read_bytes() == (tmp_path / name).read_bytes()
        assert shipped.stat().st_size < 2_000_000
    rows = [json.loads(line) for line in (REPO / "data" / "multistep" / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 2000 and rows[0]["data_source"] == "multistep"
