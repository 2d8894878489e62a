"""The `algorithm` section at load time: every method's options are converted and checked before
Ray starts, and setups where a method would silently do nothing are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlkit.algorithms import AdvantageInputs, compute_advantages
from rlkit.config.load import ConfigError, load_config

TINY = Path(__file__).parents[2] / "recipes" / "tiny_cpu.yaml"


def problems_of(*overrides: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(TINY, list(overrides))
    return str(caught.value)


def test_required_option_is_named() -> None:
    assert "['alpha'] are required" in problems_of("algorithm.advantage=grpo_lambda")


def test_empg_base_options_are_checked_when_the_config_loads() -> None:
    text = problems_of("algorithm.advantage=empg", "algorithm.advantage_options.base=grpo_lambda")
    assert "alpha" in text and "required" in text
    config = load_config(TINY, ["algorithm.advantage=empg",
                                "algorithm.advantage_options={base: grpo_lambda, base_options: {alpha: 0.5}}"])
    assert config.algorithm.advantage_options["base_options"] == {"alpha": 0.5}


def test_option_types_are_converted_or_refused() -> None:
    config = load_config(TINY, ["algorithm.loss=clip_cov", "algorithm.loss_options.clip_cov_ratio=2e-4"])
    from rlkit.algorithms import POLICY_LOSSES

    options = POLICY_LOSSES.get("clip_cov").build_options(config.algorithm.loss_options)
    assert options.clip_cov_ratio == pytest.approx(2e-4)  # YAML 1.1 reads 2e-4 as a string
    assert "must be bool, got 'yes please'" in problems_of("algorithm.loss=steer", "algorithm.loss_options.linear='yes please'")
    assert "must be float" in problems_of("algorithm.loss=steer", "algorithm.loss_options.token_weight_min=[1]")


def test_off_policy_methods_refuse_a_single_update_per_batch() -> None:
    for overrides in (["algorithm.loss=kl_cov"], ["algorithm.regularizers={llds: {}}"]):
        assert "learner.mini_batches ≥ 2 or learner.ppo_epochs ≥ 2" in problems_of(*overrides)
        load_config(TINY, [*overrides, "learner.ppo_epochs=2"])  # fine with a second pass


def test_llds_answer_mask_is_refused_until_rollouts_record_it() -> None:
    text = problems_of("algorithm.regularizers={llds: {mask_answer: true}}", "learner.mini_batches=2")
    assert "regularizer 'llds' needs per-token answer masks, which no rollout records yet" in text


def test_bnpo_decompose_needs_the_named_components() -> None:
    mask = torch.ones(4, 3)
    inputs = AdvantageInputs(
        scores=torch.tensor([1.0, 0.0, 1.0, 1.0]), group_index=torch.tensor([0, 0, 1, 1]), response_mask=mask,
        components={"acc": torch.tensor([1.0, 0.0, float("nan"), 1.0])},
    )
    with pytest.raises(ValueError, match="did not return"):
        compute_advantages("bnpo", inputs, {"decompose": ["format"]})
    with pytest.raises(ValueError, match="missing or non-finite reward"):
        compute_advantages("bnpo", inputs, {"decompose": ["acc"]})


def test_failed_rewards_give_zero_components_but_scored_samples_must_have_them() -> None:
    from rlkit.learner.failures import reward_components
    from rlkit.types import FinishReason, Prompt, Reward, RewardStatus, Sample, ScoredSample

    prompt = Prompt(uid="p", text="", prompt_ids=[1], ground_truth=None)

    def item(status: RewardStatus, components: dict) -> ScoredSample:
        sample = Sample("g", 0, 3, prompt, [2], [1], [-1.0], 0, FinishReason.STOP, "")
        return ScoredSample(sample, Reward(score=0.0, status=status, components=components))

    components = reward_components([
        item(RewardStatus.OK, {"acc": 1.0}), item(RewardStatus.TIMEOUT, {}), item(RewardStatus.OK, {}),
    ])
    values = components["acc"].tolist()
    assert values[:2] == [1.0, 0.0] and values[2] != values[2]  # NaN: the estimator will refuse it


def test_dr_grpo_divides_by_the_response_budget() -> None:
    from rlkit.learner.inputs import denominators_of
    from rlkit.types import TrainBatch

    rows = 2
    batch = TrainBatch(
        input_ids=torch.ones(rows, 6, dtype=torch.long), attention_mask=torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]]),
        position_ids=torch.zeros(rows, 6, dtype=torch.long), responses=torch.ones(rows, 4, dtype=torch.long),
        response_mask=torch.tensor([[1.0, 1.0, 0, 0], [1.0, 0, 0, 0]]), rollout_logprobs=torch.zeros(rows, 4),
        scores=torch.zeros(rows), advantages=torch.zeros(rows, 4), group_index=torch.zeros(rows, dtype=torch.long),
        policy_versions=torch.zeros(rows, dtype=torch.long), step_ids=torch.zeros(rows, 4, dtype=torch.long),
    )
    assert denominators_of(batch, torch.arange(rows), 32.0).response_width == 32.0
    assert denominators_of(batch, torch.arange(rows)).response_width == 2.0  # without a budget: the longest response


def test_loss_scale_factor_must_be_positive() -> None:
    assert "loss_scale_factor=0.0: must be > 0" in problems_of("algorithm.loss_scale_factor=0")


def test_option_dependent_needs_are_gathered() -> None:
    from rlkit.algorithms import AlgorithmOptions, required_inputs
    from rlkit.algorithms.needs import needers

    llds = AlgorithmOptions(regularizers={"llds": {"mask_answer": True}})
    assert "answer_mask" in required_inputs(llds)["loss"]
    assert "answer_mask" not in required_inputs(AlgorithmOptions(regularizers={"llds": {}}))["loss"]
    empg = AlgorithmOptions(advantage="empg")
    assert needers(empg, "old_entropy") == ["advantage 'empg'"]


def test_bnpo_accepts_float32_rewards_at_its_bounds() -> None:
    rewards = torch.tensor([0.1, 0.0, 0.1, 0.05], dtype=torch.float32)  # 0.1 is not exact in binary
    inputs = AdvantageInputs(scores=rewards, group_index=torch.tensor([0, 0, 1, 1]), response_mask=torch.ones(4, 2))
    result = compute_advantages("bnpo", inputs, {"max_value": 0.1})
    assert bool(torch.isfinite(result.advantages).all())
    assert result.advantages[0, 0] > 0 > result.advantages[1, 0]


def test_kl_cov_ratio_zero_turns_the_penalty_off() -> None:
    from rlkit.algorithms import PolicyLossInputs
    from rlkit.algorithms.methods.kl_cov import KlCovOptions, kl_cov_details

    log_prob = torch.tensor([[-1.0, -2.0, -0.5]])
    inputs = PolicyLossInputs(log_prob, log_prob - 0.3, torch.tensor([[1.0, -1.0, 2.0]]), torch.ones(1, 3))
    assert int(kl_cov_details(inputs, KlCovOptions(kl_cov_ratio=0.0)).selected.sum()) == 0
    assert int(kl_cov_details(inputs, KlCovOptions(kl_cov_ratio=1e-9)).selected.sum()) == 1  # at least one


def test_not_applicable_samples_leave_the_group_statistics() -> None:
    from rlkit.learner.inputs import advantages_of_applicable

    mask = torch.ones(5, 2)
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 5.0], dtype=torch.float64)
    inputs = AdvantageInputs(scores=scores, group_index=torch.tensor([0, 0, 0, 1, 1]), response_mask=mask)
    applicable = torch.tensor([True, True, False, True, False])
    result = advantages_of_applicable("grpo", inputs, {}, applicable)
    # Group 0 is {1, 0} without the third sample: ±0.707; group 1 is a singleton (raw score 1).
    assert result.advantages[:, 0].tolist() == pytest.approx([0.7071063, -0.7071063, 0.0, 1.0 / (1 + 1e-6), 0.0], rel=1e-5)
    assert advantages_of_applicable("grpo", inputs, {}, torch.zeros(5, dtype=torch.bool)).advantages.abs().sum() == 0
