"""Multi-turn episodes: the loop's bookkeeping with a scripted engine, environments in their
killable host process (hostile ones included), and the calculator environment's evaluator."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlkit.environment import EnvOptions, StepResult, build_environment
from rlkit.models import build_tiny_tokenizer
from rlkit.rollout.engine import SamplingOptions
from rlkit.rollout.env_host import EnvHost, EnvironmentFailure
from rlkit.rollout.episodes import cut_at_stop, run_episodes
from rlkit.types import FinishReason, Generation, Prompt, RolloutRequest
from envs.calculator import CalculatorError, evaluate

TOKENIZER = build_tiny_tokenizer()
EOS = TOKENIZER.convert_tokens_to_ids("<|im_end|>")


class ScriptedEngine:
    """Replies with the next scripted text for each prompt (tokenized with the real tokenizer);
    a real engine's place in a unit test of the loop's bookkeeping."""

    tokenizer = TOKENIZER

    def __init__(self, turns: list[str]) -> None:
        self.turns = list(turns)
        self.contexts: list[list[int]] = []

    def generate(self, prompt_ids: list[list[int]], n: int, sampling: SamplingOptions) -> list[list[Generation]]:
        outputs = []
        for ids in prompt_ids:
            self.contexts.append(list(ids))
            text = self.turns.pop(0)
            end = text.endswith("<eos>")
            tokens = TOKENIZER.encode(text.removesuffix("<eos>"), add_special_tokens=False) + ([EOS] if end else [])
            tokens = tokens[: sampling.max_new_tokens]
            finish = FinishReason.STOP if end else FinishReason.LENGTH
            logprobs = [-0.5 - 0.01 * i for i in range(len(tokens))]
            outputs.append([Generation(tokens, logprobs, finish, TOKENIZER.decode(tokens, skip_special_tokens=True))])
        return outputs


def request(n: int = 1) -> RolloutRequest:
    prompt = Prompt(uid="p0", text="What is 12*7?", prompt_ids=TOKENIZER.encode("What is 12*7?"), ground_truth="84")
    return RolloutRequest(group_uid="g0", prompt=prompt, n=n, batch_index=0)


@pytest.fixture()
def calculator_host():
    host = EnvHost("calculator", {"call_reward": 0.1}, timeout_s=5.0)
    yield host
    host.close()


def test_turns_observations_masks_and_rewards(calculator_host: EnvHost) -> None:
    engine = ScriptedEngine(["Let me check <calc>12*7</calc> and more text after", "So it is 84.<eos>"])
    options = EnvOptions(name="calculator", max_turns=4, max_turn_tokens=64, max_episode_tokens=256)
    (episode,) = run_episodes(engine, calculator_host, [request()], SamplingOptions(), options, max_model_len=1024)
    first = TOKENIZER.encode("Let me check <calc>12*7</calc>", add_special_tokens=False)
    observation = TOKENIZER.encode("<result>84</result>\n", add_special_tokens=False)
    second = TOKENIZER.encode("So it is 84.", add_special_tokens=False) + [EOS]
    assert episode.response_ids == first + observation + second  # the turn was cut at its stop string
    assert episode.mask == [1] * len(first) + [0] * len(observation) + [1] * len(second)
    assert episode.logprobs[len(first) : len(first) + len(observation)] == [0.0] * len(observation)
    assert episode.logprobs[: len(first)] == [-0.5 - 0.01 * i for i in range(len(first))]  # kept as generated
    assert episode.turn_starts == [0, len(first) + len(observation)]
    assert episode.step_rewards == [0.1, 0.0]  # a well-formed call, then the final answer
    assert episode.text == "Let me check <calc>12*7</calc><result>84</result>\nSo it is 84."
    assert episode.finish == FinishReason.STOP and episode.env_status == "ok"
    # The second turn was generated from the prompt + everything so far, observation included.
    assert engine.contexts[1] == request().prompt.prompt_ids + first + observation


def test_turn_and_token_limits_end_episodes(calculator_host: EnvHost) -> None:
    calls = ["<calc>1+1</calc>"] * 3
    engine = ScriptedEngine(calls)
    options = EnvOptions(name="calculator", max_turns=3, max_turn_tokens=64, max_episode_tokens=1000)
    (episode,) = run_episodes(engine, calculator_host, [request()], SamplingOptions(), options, max_model_len=1024)
    assert len(episode.turn_starts) == 3 and episode.finish == FinishReason.LENGTH  # out of turns
    engine = ScriptedEngine(["<calc>1+1</calc>", "x" * 40])
    options = EnvOptions(name="calculator", max_turns=5, max_turn_tokens=64, max_episode_tokens=40)
    (episode,) = run_episodes(engine, calculator_host, [request()], SamplingOptions(), options, max_model_len=1024)
    assert len(episode.response_ids) <= 40 and episode.finish == FinishReason.LENGTH


def test_a_last_turn_cut_at_the_turn_budget_ends_as_length(calculator_host: EnvHost) -> None:
    """The environment ends the episode on a turn the budget cut: it counts as truncated."""
    engine = ScriptedEngine(["The answer is " + "very " * 40])  # no call: the calculator says done
    options = EnvOptions(name="calculator", max_turns=4, max_turn_tokens=16, max_episode_tokens=256)
    (episode,) = run_episodes(engine, calculator_host, [request()], SamplingOptions(), options, max_model_len=1024)
    assert len(episode.response_ids) == 16 and episode.finish == FinishReason.LENGTH
    engine = ScriptedEngine(["84<eos>"])
    (episode,) = run_episodes(engine, calculator_host, [request()], SamplingOptions(), options, max_model_len=1024)
    assert episode.finish == FinishReason.STOP


def test_an_observation_too_long_for_the_episode_ends_it_untokenized(tmp_path: Path) -> None:
    path = tmp_path / "verbose.py"
    path.write_text(VERBOSE)
    host = EnvHost(f"{path}:Verbose", {}, timeout_s=5.0)
    try:
        options = EnvOptions(name=f"{path}:Verbose", max_turns=3, max_turn_tokens=16, max_episode_tokens=64)
        engine = ScriptedEngine(["search"])
        (episode,) = run_episodes(engine, host, [request()], SamplingOptions(), options, max_model_len=1024)
    finally:
        host.close()
    assert episode.finish == FinishReason.LENGTH and episode.mask == [1] * len(episode.response_ids)


VERBOSE = '''
from rlkit.environment import StepResult

class Verbose:
    stop = ()
    def __init__(self):
        pass
    def reset(self, prompt, ground_truth, extra):
        pass
    def step(self, action):
        return StepResult(observation="x" * 10_000_000)  # 10 MB of tool output
'''


def test_stop_cut_finds_the_first_stop_in_a_long_turn() -> None:
    text = "word " * 300 + "<calc>1</calc>" + " more" * 300 + "</calc>"
    tokens = TOKENIZER.encode(text, add_special_tokens=False)
    generation = Generation(tokens, [0.0] * len(tokens), FinishReason.LENGTH, text)
    cut = cut_at_stop(generation, ("</calc>",), lambda ids: TOKENIZER.decode(ids))
    assert cut.text.endswith("<calc>1</calc>") and cut.text.count("</calc>") == 1
    assert "</calc>" not in TOKENIZER.decode(cut.response_ids[:-1])  # the shortest such prefix


def test_stop_cut_keeps_the_shortest_prefix() -> None:
    tokens = TOKENIZER.encode("a <calc>2</calc> tail", add_special_tokens=False)
    generation = Generation(tokens, [float(i) for i in range(len(tokens))], FinishReason.LENGTH, "a <calc>2</calc> tail")
    cut = cut_at_stop(generation, ("</calc>",), lambda ids: TOKENIZER.decode(ids))
    assert cut.text == "a <calc>2</calc>" and cut.finish == FinishReason.STOP
    assert cut.logprobs == generation.logprobs[: len(cut.response_ids)]


HOSTILE = '''
import os, time
from rlkit.environment import StepResult

class Flaky:
    stop = ()
    def __init__(self, **options):
        pass
    def reset(self, prompt, ground_truth, extra):
        self.turns = 0
    def step(self, action):
        self.turns += 1
        if "raise" in action:
            raise RuntimeError("environment bug")
        if "hang" in action:
            time.sleep(60)
        if "die" in action:
            os._exit(3)
        if "garbage" in action:
            return "not a StepResult"
        return StepResult(observation=f"[{self.turns}]", reward=float(self.turns))
'''


@pytest.mark.parametrize(("action", "status", "message"), [
    ("raise", "error", "RuntimeError: environment bug"),
    ("hang", "timeout", "no answer within"),
    ("die", "error", "died"),
    ("garbage", "error", "expected rlkit.environment.StepResult"),
])
def test_hostile_environment_fails_its_episode_only(tmp_path: Path, action: str, status: str, message: str) -> None:
    path = tmp_path / "flaky.py"
    path.write_text(HOSTILE)
    host = EnvHost(f"{path}:Flaky", {}, timeout_s=1.0)
    try:
        healthy, _ = host.reset("p", None, {})
        doomed, _ = host.reset("p", None, {})
        assert host.step(healthy, "fine") == StepResult("[1]", 1.0, False)
        with pytest.raises(EnvironmentFailure) as failure:
            host.step(doomed, action)
        assert failure.value.status == status and message in str(failure.value)
        # The other episode carries on where it was (replayed into a new process if needed).
        assert host.step(healthy, "fine") == StepResult("[2]", 2.0, False)
    finally:
        host.close()


def test_environment_names_are_checked(tmp_path: Path) -> None:
    assert "did you mean \"calculator\"" in EnvOptions(name="calculater").problems()[0]
    assert "not found" in EnvOptions(name=f"{tmp_path}/missing.py:Env").problems()[0]
    assert EnvOptions(name="calculator").problems() == []


@pytest.mark.parametrize(("expression", "value"), [("12*(3+4)", 84), ("7/2", 3.5), ("-2**3", -8), ("2 ** 10 % 1000", 24)])
def test_calculator_computes_arithmetic(expression: str, value: float) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize("expression", [
    "__import__('os').system('echo hi')", "open('/etc/passwd').read()", "(lambda: 1)()", "9**9**9", "10**20",
    "1/0", "x" * 500, "[1, 2]", "True + 1", "(-8) ** 0.5",
])
def test_calculator_refuses_everything_else(expression: str) -> None:
    with pytest.raises(CalculatorError):
        evaluate(expression)


def test_calculator_episode_through_its_host() -> None:
    environment = build_environment("calculator")
    environment.reset("", None, {})
    assert environment.step("<calc>6*7</calc>").observation == "<result>42</result>\n"
    assert environment.step("42").done


def test_environment_options_are_checked_with_the_config() -> None:
    problem = EnvOptions(name="calculator", options={"call_rewrd": 0.1}).problems()[0]
    assert problem.startswith("options: calculator rejects") and "call_rewrd" in problem


def test_no_observation_follows_the_last_allowed_turn(calculator_host: EnvHost) -> None:
    engine = ScriptedEngine(["<calc>1+1</calc>"] * 2)
    options = EnvOptions(name="calculator", max_turns=2, max_turn_tokens=64, max_episode_tokens=1000)
    (episode,) = run_episodes(engine, calculator_host, [request()], SamplingOptions(), options, max_model_len=1024)
    assert episode.text == "<calc>1+1</calc><result>2</result>\n<calc>1+1</calc>"  # the reward never sees a last tool output


SLOW_REPLAY = '''
import os, time
from rlkit.environment import StepResult

class SlowReplay:
    """Hangs in reset while a marker file exists: a replay that hangs too."""
    stop = ()
    def __init__(self, marker):
        self.marker = marker
    def reset(self, prompt, ground_truth, extra):
        while os.path.exists(self.marker) and prompt != "quick":
            time.sleep(0.05)
    def step(self, action):
        if action == "hang":
            time.sleep(60)
        return StepResult(observation="ok")
'''


def test_a_replay_that_hangs_gives_up_the_episodes_and_the_host_keeps_serving(tmp_path: Path) -> None:
    path, marker = tmp_path / "slow.py", tmp_path / "marker"
    path.write_text(SLOW_REPLAY)
    host = EnvHost(f"{path}:SlowReplay", {"marker": str(marker)}, timeout_s=1.0, startup_s=2.0)
    try:
        replayed, _ = host.reset("quick", None, {})  # replays fine, into a process then killed
        healthy, _ = host.reset("p", None, {})
        doomed, _ = host.reset("p", None, {})
        marker.write_text("")  # from now on resets hang: the replay of `healthy` will
        with pytest.raises(EnvironmentFailure, match="no answer"):
            host.step(doomed, "hang")
        marker.unlink()
        for episode in (replayed, healthy):
            with pytest.raises(EnvironmentFailure, match="lost"):  # given up, not answered out of step
                host.step(episode, "fine")
        fresh, _ = host.reset("p", None, {})
        assert host.step(fresh, "fine") == StepResult("ok", 0.0, False)
    finally:
        host.close()


UNREPEATABLE = '''
import os
from rlkit.environment import StepResult

class Unrepeatable:
    """Steps fail on replay once the marker file exists (an environment reading the clock, say)."""
    stop = ()
    def __init__(self, marker):
        self.marker = marker
    def reset(self, prompt, ground_truth, extra):
        self.prompt = prompt
    def step(self, action):
        if action == "die":
            os._exit(3)
        if os.path.exists(self.marker) and self.prompt == "unrepeatable":
            raise RuntimeError("different the second time")
        return StepResult(observation=f"{self.prompt}:{action}")
'''


def test_an_episode_whose_replay_fails_is_given_up_cleanly(tmp_path: Path) -> None:
    """Its next step is an EnvironmentFailure (never a crash of the worker), the other episodes
    carry on, and a second process death gives up the ones already replayed too."""
    path, marker = tmp_path / "unrepeatable.py", tmp_path / "marker"
    path.write_text(UNREPEATABLE)
    host = EnvHost(f"{path}:Unrepeatable", {"marker": str(marker)}, timeout_s=2.0, startup_s=10.0)
    try:
        steady, _ = host.reset("steady", None, {})
        flaky, _ = host.reset("unrepeatable", None, {})
        doomed, _ = host.reset("doomed", None, {})
        for episode in (steady, flaky):
            host.step(episode, "a")
        marker.write_text("")
        with pytest.raises(EnvironmentFailure, match="died"):
            host.step(doomed, "die")  # the process dies: steady replays, flaky's replay raises
        with pytest.raises(EnvironmentFailure, match="lost"):
            host.step(flaky, "b")
        assert host.step(steady, "b") == StepResult("steady:b", 0.0, False)
        with pytest.raises(EnvironmentFailure, match="died"):
            host.step(steady, "die")  # the only live episode dies with the process
        again, _ = host.reset("again", None, {})
        assert host.step(again, "c") == StepResult("again:c", 0.0, False)
        assert host.restarts == 2
    finally:
        host.close()


def test_tool_math_reward_ignores_the_calculators_output() -> None:
    from rewards.tool_math import score

    assert score(response="<calc>6*7</calc><result>42</result>\nSo", ground_truth="42")["score"] == 0.0
    assert score(response="<calc>6*7</calc><result>42</result>\nIt is 42.", ground_truth="42")["score"] == 1.0
