"""The learner on real DeepSpeed ranks (Ray actors, gloo on CPU) against a plain-torch reference.

Two groups are started once and shared: ZeRO-2 (2 ranks × micro-batch 4, on-policy) and ZeRO-3
(2 ranks × micro-batch 2, 2 PPO epochs, KL to a reference model, every weight sharded, small
log-prob chunks so ranks hold different token counts). Each is
checked against one process training on the whole batch at once with plain torch + the same
loss, so the update must not depend on sharding or micro-batching.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch

from rlkit.algorithms import AdvantageInputs, AlgorithmOptions, Denominators, PolicyLossInputs, actor_loss
from rlkit.algorithms import compute_advantages
from rlkit.learner.collate import collate
from rlkit.learner.options import LearnerOptions
from rlkit.learner.failures import reward_components
from rlkit.learner.inputs import loss_seed
from rlkit.learner.worker import deepspeed_config, plan_mini_batches
from rlkit.models import resolve_model
from rlkit.transport import get_tensors
from rlkit.types import FinishReason, Prompt, Reward, RewardStatus, Sample, ScoredSample

LR = 1e-3
TEMPERATURE = 0.9
GROUP_SIZES = (4, 4, 4, 5)  # 17 rows: ranks get 9 and 8, so rank 1 runs a filler micro-batch


def scored_batch(seed: int, poison: bool | float = False) -> list[ScoredSample]:
    """Random prompts/responses; 0/1 rewards, mixed within each group; one masked tool token."""
    rng = random.Random(seed)
    items = []
    for group, size in enumerate(GROUP_SIZES):
        prompt_ids = [rng.randrange(256) for _ in range(rng.randint(2, 9))]
        prompt = Prompt(uid=f"p{group}", text="", prompt_ids=prompt_ids, ground_truth=None)
        for index in range(size):
            response = [rng.randrange(256) for _ in range(rng.randint(1, 12))]
            mask = [1] * len(response)
            if len(response) > 3 and index == 1:
                mask[2] = 0  # e.g. a tool-output token: in context, not in the loss
            sample = Sample(
                group_uid=f"s{seed}-g{group}", index_in_group=index, group_size=size, prompt=prompt,
                response_ids=response, response_mask=mask, rollout_logprobs=[-1.0] * len(response),
                policy_version=0, finish=FinishReason.STOP, response_text="",
            )
            score = (float("nan") if poison is True else float(poison)) if poison is not False else float(index % 2)
            items.append(ScoredSample(sample=sample, reward=Reward(score=score, status=RewardStatus.OK)))
    return items


def naive_logprobs(model, batch, temperature: float):
    """Full logits → /T → log_softmax → gather; entropy from the full distribution."""
    width = batch.responses.shape[1]
    logits = model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids
    ).logits
    logp = torch.log_softmax(logits[:, -width - 1 : -1, :].float() / temperature, dim=-1)
    return logp.gather(-1, batch.responses[..., None]).squeeze(-1), -(logp.exp() * logp).sum(-1)


def reference_training(
    batches: list[list[ScoredSample]], algorithm: AlgorithmOptions, epochs: int = 1, mini_batches: int = 1
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """One process, a whole mini-batch per forward, torch AdamW with clipping at 1.0: what the
    sharded learner must reproduce. Returns the final state dict and the pre-clip gradient norms."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(resolve_model("tiny"), dtype=torch.float32)
    frozen = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.999), weight_decay=0.0)
    norms = []
    on_policy = epochs == 1 and mini_batches == 1
    for step, items in enumerate(batches):
        batch = collate(items, model.config.pad_token_id)
        with torch.no_grad():
            old, old_entropy = naive_logprobs(model, batch, TEMPERATURE)
            reference = naive_logprobs(frozen, batch, TEMPERATURE)[0]
        batch.advantages = compute_advantages(
            algorithm.advantage,
            AdvantageInputs(batch.scores, batch.group_index, batch.response_mask, components=reward_components(items),
                            old_entropy=old_entropy, step_ids=batch.step_ids),
            algorithm.advantage_options,
        ).advantages
        bounds = [round(k * len(batch) / mini_batches) for k in range(mini_batches + 1)]
        draws = 0
        for _ in range(epochs):
            for start, end in zip(bounds, bounds[1:]):
                rows = torch.arange(start, end)
                part = batch.select(rows)
                logprobs, entropy = naive_logprobs(model, part, TEMPERATURE)
                draws += 1
                loss, _ = actor_loss(
                    PolicyLossInputs(
                        logprobs,
                        logprobs.detach() if on_policy else old[rows],
                        part.advantages,
                        part.response_mask,
                        entropy,
                        reference[rows] if algorithm.kl_coef else None,
                        old_entropy=entropy.detach() if on_policy else old_entropy[rows],
                        step_ids=part.step_ids,
                        generator=torch.Generator().manual_seed(loss_seed(algorithm.seed, step, 0, draws)),
                    ),
                    algorithm,
                    Denominators.of(part.response_mask),
                )
                optimizer.zero_grad()
                loss.backward()
                norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)))
                optimizer.step()
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}, norms


def assert_state_close(actual: dict, expected: dict, atol: float) -> None:
    assert set(actual) == set(expected)
    for name in expected:
        torch.testing.assert_close(
            actual[name].float(), expected[name].float(), rtol=0, atol=atol, msg=lambda text, name=name: f"{name}: {text}"
        )


def assert_state_mostly_close(actual: dict, expected: dict, atol: float, outliers: float, bound: float) -> None:
    """Every element within `bound`, and at most a fraction `outliers` of them beyond `atol`."""
    assert set(actual) == set(expected)
    differences = torch.cat([(actual[name].float() - expected[name].float()).abs().flatten() for name in expected])
    assert float(differences.max()) <= bound, float(differences.max())
    assert float((differences > atol).double().mean()) <= outliers, int((differences > atol).sum())


def hf_state(path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).state_dict()


# ------------------------------------------------------------------ pure scheduling (fast)


@pytest.mark.parametrize("rows,world,micro,minis", [(17, 2, 2, 1), (17, 2, 3, 2), (5, 4, 1, 1), (16, 3, 8, 4)])
def test_plan_covers_every_row_once_and_ranks_agree(rows: int, world: int, micro: int, minis: int) -> None:
    tokens = torch.randint(0, 30, (rows,), generator=torch.Generator().manual_seed(rows))
    plans = [plan_mini_batches(tokens, minis, rank, world, micro, chunk_size=16) for rank in range(world)]
    seen: list[int] = []
    for index in range(minis):
        steps = {len(plan[index].micro_batches) for plan in plans}
        assert len(steps) == 1, "every rank must run the same number of backward passes"
        for step in range(steps.pop()):
            # One chunk count per step, enough for the rank with the most tokens.
            chunks = {plan[index].micro_batches[step].chunks for plan in plans}
            assert len(chunks) == 1
            most = max(int(tokens[plan[index].micro_batches[step].rows].sum()) for plan in plans)
            assert chunks.pop() * 16 >= most
        for rank, plan in enumerate(plans):
            assert torch.equal(plan[index].rows, plans[0][index].rows)
            for micro_batch in plan[index].micro_batches:
                assert len(micro_batch.rows) <= micro
                if not micro_batch.filler:
                    assert all(int(row) % world == rank for row in micro_batch.rows - plan[index].rows[0])
                    seen.extend(micro_batch.rows.tolist())
    assert sorted(seen) == list(range(rows))


def test_plan_refuses_more_mini_batches_than_rows() -> None:
    with pytest.raises(ValueError, match="mini_batches"):
        plan_mini_batches(torch.ones(3), 4, 0, 1, 1, 8)


def test_options_check_reports_every_problem_at_once() -> None:
    assert LearnerOptions().check() == []
    problems = LearnerOptions(zero_stage=4, dtype="fp8", adam_betas=(0.9, 1.5), micro_batch_size=0, lr=0).check()
    assert len(problems) == 5 and any("zero_stage=4" in p for p in problems)
    assert any("fp16 on CPU" in p for p in LearnerOptions(dtype="float16", backend="gloo").check())


def test_deepspeed_config_follows_options_and_merges_overrides() -> None:
    options = LearnerOptions(zero_stage=3, dtype="bfloat16", micro_batch_size=3, grad_clip=0.5,
                             deepspeed_overrides={"zero_optimization": {"stage3_param_persistence_threshold": 0}})
    config = deepspeed_config(options, world_size=2)
    assert config["zero_optimization"] == {"stage": 3, "stage3_param_persistence_threshold": 0}
    assert config["bf16"]["enabled"] and not config["fp16"]["enabled"]
    assert config["gradient_clipping"] == 0.5 and config["gradient_accumulation_steps"] == 1
    assert config["train_batch_size"] == 6


# ------------------------------------------------------------------ real ranks


@pytest.fixture(scope="module")
def zero2_run(ray_cluster):
    """ZeRO-2, two mini-batches per step: batch 1, a poisoned (NaN) batch, batch 2; weights after each."""
    from rlkit.learner.group import LearnerGroup

    algorithm = AlgorithmOptions()
    # Eager attention here, sdpa elsewhere: the reference (sdpa) must agree with both kernels.
    options = LearnerOptions(num_ranks=2, zero_stage=2, micro_batch_size=4, mini_batches=2, lr=LR,
                             attn_implementation="eager")
    group = LearnerGroup(str(resolve_model("tiny")), options, algorithm, temperature=TEMPERATURE, step_timeout_s=120)
    ray = ray_cluster
    batches = {name: [ray.put(item) for item in scored_batch(seed, poison)]
               for name, seed, poison in (("one", 1, False), ("nan", 3, True), ("two", 2, False))}
    run = {"algorithm": algorithm, "before": get_tensors(group.export_weights_ref())}
    for name in ("one", "nan", "two"):
        run[f"metrics_{name}"] = group.train_step(batches[name])
        run[f"after_{name}"] = get_tensors(group.export_weights_ref())
    group.shutdown()
    return run


@pytest.fixture(scope="module")
def zero3_group(ray_cluster):
    """ZeRO-3, on-policy, KL to a sharded reference; its tests expect to run in file order."""
    from rlkit.learner.group import LearnerGroup

    algorithm = AlgorithmOptions(kl_coef=0.05)
    options = LearnerOptions(
        num_ranks=2, zero_stage=3, micro_batch_size=2, lr=LR, logprob_chunk_size=8,
        # Shard every tensor of the tiny model (by default small ones stay whole on each rank).
        deepspeed_overrides={"zero_optimization": {"stage3_param_persistence_threshold": 0}},
    )
    group = LearnerGroup(str(resolve_model("tiny")), options, algorithm, temperature=TEMPERATURE, step_timeout_s=120)
    yield group, algorithm
    group.shutdown()


@pytest.mark.slow
def test_train_step_changes_weights_and_reports_metrics(zero2_run) -> None:
    metrics = zero2_run["metrics_one"]
    for key in ("actor/loss", "actor/pg_loss", "actor/pg_clipfrac", "actor/ppo_kl", "actor/entropy",
                "actor/grad_norm", "actor/lr", "actor/skipped_steps", "timing/train_s", "entropy/mean",
                "actor/rollout_logprob_diff"):
        assert key in metrics and metrics[key] == metrics[key], key  # present and not NaN
    assert metrics["actor/skipped_steps"] == 0 and metrics["actor/lr"] == LR
    assert 0 < metrics["entropy/mean"] <= torch.log(torch.tensor(260.0)).item()
    # The second mini-batch runs after one update: its ratio to the old log-probs is not 1.
    assert metrics["actor/ppo_kl"] != 0.0
    changed = [name for name in zero2_run["before"]
               if not torch.equal(zero2_run["before"][name], zero2_run["after_one"][name])]
    assert len(changed) == len(zero2_run["before"])


@pytest.mark.slow
def test_zero2_steps_equal_single_process_reference(zero2_run) -> None:
    """2 ranks × micro-batch 4 (rank 1 runs a filler) == 1 process × whole mini-batches."""
    expected, norms = reference_training([scored_batch(1)], zero2_run["algorithm"], mini_batches=2)
    assert zero2_run["metrics_one"]["actor/grad_norm"] == pytest.approx(sum(norms) / len(norms), rel=1e-4)
    # Adam's first step moves each weight by ≈ lr·sign(gradient): a 2e-5 match pins every element.
    assert_state_close(zero2_run["after_one"], expected, atol=2e-5)


@pytest.mark.slow
def test_nonfinite_gradient_skips_the_step_and_keeps_optimizer_state(zero2_run) -> None:
    metrics = zero2_run["metrics_nan"]
    assert metrics["actor/skipped_steps"] == 2  # both mini-batches
    assert "actor/grad_norm" not in metrics  # no norm reported for updates that did not happen
    for name, tensor in zero2_run["after_one"].items():
        assert torch.equal(zero2_run["after_nan"][name], tensor), name
    assert zero2_run["metrics_two"]["actor/skipped_steps"] == 0
    # Had the skipped steps touched Adam's moments or step count, this would not match.
    expected, _ = reference_training([scored_batch(1), scored_batch(2)], zero2_run["algorithm"], mini_batches=2)
    assert_state_close(zero2_run["after_two"], expected, atol=2e-5)


@pytest.mark.slow
def test_zero3_export_equals_model_then_training_matches_reference(zero3_group, ray_cluster, tmp_path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlkit.learner.logprobs import token_logprobs_and_entropy

    group, algorithm = zero3_group
    ray = ray_cluster
    initial = get_tensors(group.export_weights_ref())
    assert_state_close(initial, hf_state(resolve_model("tiny")), atol=0)  # incl. the tied lm_head.weight

    metrics = [group.train_step([ray.put(item) for item in scored_batch(seed)]) for seed in (1, 2)]
    assert [m["actor/skipped_steps"] for m in metrics] == [0, 0]
    assert metrics[0]["actor/ppo_kl"] == 0.0  # on-policy: the old log-probs are the current ones
    assert metrics[0]["actor/kl_loss"] == 0.0 < metrics[1]["actor/kl_loss"]  # the policy left the reference
    trained = get_tensors(group.export_weights_ref())
    expected, _ = reference_training([scored_batch(1), scored_batch(2)], algorithm)
    assert_state_close(trained, expected, atol=2e-5)
    exported_bf16 = get_tensors(group.export_weights_ref("bfloat16"))
    assert all(tensor.dtype == torch.bfloat16 for tensor in exported_bf16.values())

    # The learner's log-probs equal a fresh HF model holding the exported weights.
    fresh = AutoModelForCausalLM.from_pretrained(resolve_model("tiny"), dtype=torch.float32)
    fresh.load_state_dict(trained)
    prompt, response = [5, 17, 200, 3], [44, 9, 120, 7, 7]
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        want, _ = token_logprobs_and_entropy(fresh, ids, torch.ones_like(ids), torch.arange(ids.shape[1])[None],
                                             len(response), TEMPERATURE, 512)
    torch.testing.assert_close(torch.tensor(group.logprobs(prompt, response)), want[0], rtol=0, atol=1e-5)

    # save_pretrained (consolidated from shards) loads back with transformers, tokenizer included.
    group.save_pretrained(str(tmp_path / "model"))
    assert_state_close(hf_state(tmp_path / "model"), trained, atol=0)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "model")
    assert tokenizer.decode(tokenizer.encode("2 + 3")) == "2 + 3"


@pytest.mark.slow
def test_checkpoint_round_trip_restores_weights(zero3_group, ray_cluster, tmp_path) -> None:
    group, _ = zero3_group
    ray = ray_cluster
    group.save_checkpoint(str(tmp_path), "t1")
    saved = get_tensors(group.export_weights_ref())
    group.train_step([ray.put(item) for item in scored_batch(2)])
    moved = get_tensors(group.export_weights_ref())
    assert any(not torch.equal(moved[name], saved[name]) for name in saved)
    group.load_checkpoint(str(tmp_path), "t1")
    assert_state_close(get_tensors(group.export_weights_ref()), saved, atol=0)
    with pytest.raises(RuntimeError, match="no DeepSpeed checkpoint .missing"):
        group.load_checkpoint(str(tmp_path), "missing")


# ------------------------------------------------------------------ every method on real ranks

# One configuration per method, as its recipe selects it. Single-rank runs with one micro-batch
# per mini-batch match the whole-batch reference exactly even for the methods whose statistics
# are per micro-batch (STEER, Clip-Cov, KL-Cov); EMPG and LLDS also run on two ranks.
# (algorithm, ranks, mini-batches, ZeRO stage)
METHOD_CASES = {
    "grpo_lambda": (AlgorithmOptions(advantage="grpo_lambda", advantage_options={"alpha": 0.6, "top_lambda": 0.5}), 1, 1, 2),
    "bnpo": (AlgorithmOptions(advantage="bnpo", loss_agg_mode="seq-mean-token-sum",
                              loss_options={"clip_ratio_high": 0.28, "clip_ratio_c": 10.0}), 1, 1, 2),
    "clip_cov": (AlgorithmOptions(loss="clip_cov", loss_options={"clip_cov_ratio": 0.05, "clip_cov_lb": 0.0}), 1, 2, 2),
    "kl_cov": (AlgorithmOptions(loss="kl_cov", loss_options={"kl_cov_ratio": 0.05}), 1, 2, 2),
    "steer": (AlgorithmOptions(loss="steer"), 1, 2, 2),
    "empg": (AlgorithmOptions(advantage="empg"), 2, 1, 2),
    # ZeRO-3, fillers, and the whole-batch entropy pass with an off-policy old pass on two ranks.
    "empg_zero3": (AlgorithmOptions(advantage="empg"), 2, 2, 3),
    "llds": (AlgorithmOptions(regularizers={"llds": {"no_reduce_lambda": 0.2}}), 2, 2, 2),
}
METHOD_METRICS = {
    "grpo_lambda": "actor/grpo_lambda/efficiency_group_frac",
    "bnpo": "actor/bnpo/alpha",
    "clip_cov": "actor/clip_cov/selected_tokens",
    "kl_cov": "actor/kl_cov/selected_tokens",
    "steer": "actor/steer/weight_min",
    "empg": "actor/empg/g_mean",
    "empg_zero3": "actor/empg/g_mean",
    "llds": "actor/llds/active_frac",
}


@pytest.mark.slow
def test_every_registered_method_has_a_rank_case() -> None:
    from rlkit.algorithms import method_names

    assert set(method_names()) - {"grpo"} <= set(METHOD_CASES), "add the new method to METHOD_CASES"


@pytest.mark.parametrize("method", list(METHOD_CASES))
def test_every_method_trains_on_deepspeed_ranks_like_the_reference(method: str, ray_cluster) -> None:
    from rlkit.learner.group import LearnerGroup

    algorithm, ranks, mini_batches, zero_stage = METHOD_CASES[method]
    micro = 32 if ranks == 1 else 4
    options = LearnerOptions(
        num_ranks=ranks, zero_stage=zero_stage, micro_batch_size=micro, mini_batches=mini_batches, lr=LR,
        deepspeed_overrides={"zero_optimization": {"stage3_param_persistence_threshold": 0}} if zero_stage == 3 else {},
    )
    group = LearnerGroup(str(resolve_model("tiny")), options, algorithm, temperature=TEMPERATURE, step_timeout_s=120)
    try:
        metrics = [group.train_step([ray_cluster.put(item) for item in scored_batch(seed)]) for seed in (1, 2)]
        trained = get_tensors(group.export_weights_ref())
    finally:
        group.shutdown()
    for step in metrics:
        assert step["actor/skipped_steps"] == 0
        assert all(value == value for value in step.values()), step  # no NaN anywhere
        assert METHOD_METRICS[method] in step
    expected, norms = reference_training([scored_batch(1), scored_batch(2)], algorithm, mini_batches=mini_batches)
    # Adam ignores a constant factor on a whole update; the gradient norm does not.
    for step, row in enumerate(metrics):
        update_norms = norms[step * mini_batches : (step + 1) * mini_batches]
        assert row["actor/grad_norm"] == pytest.approx(sum(update_norms) / len(update_norms), rel=1e-3)
    # Methods that read the policy's entropies (STEER, EMPG) see chunked and naive computations
    # differ in the last bits, which moves an element whose gradient nearly cancels by up to
    # one Adam step (≈ lr). A wrong advantage or loss moves thousands of elements by that much.
    assert_state_mostly_close(trained, expected, atol=1e-4, outliers=1e-4, bound=2 * LR)
    if method in ("clip_cov", "kl_cov"):
        assert metrics[0][METHOD_METRICS[method]] >= 1  # the selection acted
    if method == "llds":
        assert metrics[1]["actor/llds/loss"] > 0  # a second mini-batch trains on a displaced policy


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_nan_and_inf_updates_are_skipped_in_each_dtype(ray_cluster, dtype: str) -> None:
    """A NaN or an infinite reward poisons the loss and every gradient; in fp32 and in bf16
    (DeepSpeed's bf16 optimizer) the update is skipped and counted, weights and Adam untouched,
    and the next clean batch trains."""
    from rlkit.learner.group import LearnerGroup

    options = LearnerOptions(num_ranks=1, zero_stage=0, micro_batch_size=8, lr=LR, dtype=dtype)
    group = LearnerGroup(str(resolve_model("tiny")), options, AlgorithmOptions(), temperature=TEMPERATURE, step_timeout_s=120)
    ray = ray_cluster
    try:
        before = get_tensors(group.export_weights_ref())
        for poison in (float("nan"), float("inf"), float("-inf")):
            metrics = group.train_step([ray.put(item) for item in scored_batch(3, poison)])
            assert metrics["actor/skipped_steps"] == 1, (poison, metrics)
            after = get_tensors(group.export_weights_ref())
            for name, tensor in before.items():
                assert torch.equal(after[name], tensor), (poison, name)
        metrics = group.train_step([ray.put(item) for item in scored_batch(1)])
        assert metrics["actor/skipped_steps"] == 0
        trained = get_tensors(group.export_weights_ref())
        assert any(not torch.equal(trained[name], tensor) for name, tensor in before.items())
    finally:
        group.shutdown()
