"""Multi-turn episodes with a real engine and the whole pipeline: what the engine reports for
the model's tokens must be what the policy assigns them in the full transcript, and turn
boundaries must reach the learner (EMPG counts steps per response)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlkit.config import load_config
from rlkit.controller import train
from rlkit.environment import EnvOptions
from rlkit.rollout.engine import EngineOptions, SamplingOptions
from rlkit.rollout.engines import build_engine
from rlkit.rollout.env_host import EnvHost
from rlkit.rollout.episodes import run_episodes
from rlkit.tracking.metrics_log import read_metrics
from rlkit.types import Prompt, RolloutRequest

REPO = Path(__file__).parents[2]
THREE_TURNS = '''
from rlkit.environment import StepResult

class ThreeTurns:
    """Answers every turn with a short observation and ends after the third; step reward = turn."""
    stop = ()
    def __init__(self, **options):
        pass
    def reset(self, prompt, ground_truth, extra):
        self.turn = 0
    def step(self, action):
        self.turn += 1
        return StepResult(observation=f" <obs {self.turn}> ", reward=float(self.turn), done=self.turn >= 3)
'''

pytestmark = pytest.mark.slow


@pytest.fixture()
def three_turns(tmp_path: Path) -> str:
    path = tmp_path / "three_turns.py"
    path.write_text(THREE_TURNS)
    return f"{path}:ThreeTurns"


def test_engine_logprobs_of_model_tokens_match_the_full_transcript(three_turns: str) -> None:
    engine = build_engine("hf", "tiny", EngineOptions(max_model_len=512))
    host = EnvHost(three_turns, {}, timeout_s=5.0)
    try:
        prompt_ids = engine.tokenizer.encode("Count to three:")
        request = RolloutRequest("g", Prompt("p", "Count to three:", prompt_ids, None), n=2, batch_index=0)
        options = EnvOptions(name=three_turns, max_turns=5, max_turn_tokens=8, max_episode_tokens=200)
        episodes = run_episodes(engine, host, [request], SamplingOptions(temperature=1.0, seed=3), options, 512)
        for episode in episodes:
            assert len(episode.turn_starts) == 3 and episode.step_rewards == [1.0, 2.0, 3.0]
            assert 0 in episode.mask and episode.mask[0] == 1
            rescored = engine.token_logprobs(prompt_ids, episode.response_ids, 1.0)
            for position, counts in enumerate(episode.mask):
                if counts:
                    assert rescored[position] == pytest.approx(episode.logprobs[position], abs=1e-4)
    finally:
        host.close()
        engine.close()


@pytest.mark.usefixtures("ray_cluster")
def test_multi_turn_run_reaches_the_learner_with_its_steps(three_turns: str, tmp_path: Path, monkeypatch) -> None:
    from rlkit.config.methods import method_overrides

    monkeypatch.chdir(REPO)
    run_dir = tmp_path / "run"
    config = load_config(str(REPO / "recipes" / "tiny_cpu.yaml"), [
        *method_overrides("empg"), f"rollout.env.name={three_turns}", "rollout.env.max_turn_tokens=6",
        "rollout.env.max_episode_tokens=64", "data.max_prompt_tokens=192", f"run.output_dir={run_dir}", "run.steps=2",
        f"reward.fn.path={REPO / 'rewards' / 'char_fraction.py'}", "data.eval_path=null",
        "logging.progress_bar=false", "logging.plots=false", "run.save_final_model=false", "logging.wandb=false",
    ])
    train(config)
    rows = [row for row in read_metrics(run_dir / "metrics.jsonl") if "reward/mean" in row]
    assert [row["policy_version"] for row in rows] == [1, 2]
    for row in rows:
        assert row["rollout/env_error"] == 0 and row["rollout/env_timeout"] == 0
        # One step per turn: three unless the model ended an episode early (end-of-sequence).
        turns_per_episode = row["rollout/env_turns"] / row["rollout/generated_samples"]
        assert row["actor/empg/steps_per_response"] == pytest.approx(turns_per_episode) and turns_per_episode > 2
        assert row["actor/skipped_steps"] == 0
