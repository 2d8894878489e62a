"""One learner rank: a DeepSpeed ZeRO engine around a HuggingFace causal LM.

Every rank receives the whole batch, computes advantages on it (estimators need batch-level
statistics), and trains on its own rows: row i of each mini-batch belongs to rank
i % world_size. Each micro-batch's loss is its contribution to the mini-batch loss
(denominators taken over the whole mini-batch), scaled so that DeepSpeed's averaging over
ranks yields exactly the gradient of the mini-batch loss, whatever the sharding.

DeepSpeed is imported inside methods: importing this module stays cheap.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rlkit.algorithms import AlgorithmOptions, PolicyLossInputs, actor_loss
from rlkit.algorithms import required_inputs
from rlkit.algorithms.losses import merge_metric
from rlkit.learner.collate import collate, trim_padding
from rlkit.learner.failures import trainable_rows
from rlkit.learner.inputs import denominators_of, fill_advantages, interleave_sources, loss_seed
from rlkit.learner.metrics_merge import merge_rank_metrics
from rlkit.learner.logprobs import batch_logprobs
from rlkit.learner.options import LearnerOptions
from rlkit.learner.safe_checkpoint import install as install_safe_checkpoint_engine
from rlkit.models import cache_root
from rlkit.runtime import pin_cpus
from rlkit.types import ScoredSample, TrainBatch

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
RENDEZVOUS_TIMEOUT_S = 600


class PolicyLogprobs(nn.Module):
    """Wraps a causal LM so that DeepSpeed's forward returns token log-probs and entropies.

    DeepSpeed's backward bookkeeping hooks into the outputs of `engine(...)`, so the chunked
    log-prob computation has to run inside the engine's forward; the LM is `self.model`.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, batch: TrainBatch, temperature: float, chunk_size: int, with_entropy: bool = True, min_chunks: int = 0
    ) -> tuple[Tensor, Tensor | None]:
        return batch_logprobs(self.model, batch, temperature, chunk_size, with_entropy, min_chunks)


@dataclass(frozen=True)
class MicroBatch:
    """Rows of the batch one rank runs in one forward/backward. A filler (weight 0) keeps the
    number of backward passes equal on every rank when rows do not divide evenly."""

    rows: Tensor  # [b] long, row indices into the whole batch
    chunks: int  # LM-head chunks, equal on every rank for this step (ZeRO-3 gathers per call)
    filler: bool = False


@dataclass(frozen=True)
class MiniBatch:
    """One optimizer update: all its rows, and this rank's micro-batches of them."""

    rows: Tensor  # [m] long, every rank's rows of the mini-batch
    micro_batches: tuple[MicroBatch, ...]  # this rank's, same count on every rank


def plan_mini_batches(
    tokens_per_row: Tensor, mini_batches: int, rank: int, world_size: int, micro_batch_size: int, chunk_size: int
) -> list[MiniBatch]:
    """Split the rows into contiguous mini-batches, deal each one's rows to ranks round-robin,
    and cut this rank's rows into micro-batches, padded with fillers up to the largest rank's
    count. Every rank computes the same plan (it sees the whole batch), so all agree on the
    number of micro-batches and on each step's chunk count without communicating.

    `tokens_per_row` [B] counts the response tokens each row projects to the vocabulary.
    """
    num_rows = len(tokens_per_row)
    if num_rows < mini_batches:
        raise ValueError(
            f"a batch of {num_rows} samples cannot be split into mini_batches={mini_batches} updates; "
            "lower learner.mini_batches or raise the batch size"
        )
    plans = []
    bounds = [round(k * num_rows / mini_batches) for k in range(mini_batches + 1)]
    for start, end in zip(bounds, bounds[1:]):
        rows = torch.arange(start, end)
        per_rank = [list(torch.split(rows[r::world_size], micro_batch_size)) for r in range(world_size)]
        real = len(per_rank[rank])
        steps = max(len(parts) for parts in per_rank)
        for parts in per_rank:
            parts += [rows[:1]] * (steps - len(parts))  # fillers
        micro = []
        for step in range(steps):
            most_tokens = max(int(tokens_per_row[parts[step]].sum()) for parts in per_rank)
            chunks = math.ceil(most_tokens / chunk_size)
            micro.append(MicroBatch(rows=per_rank[rank][step], chunks=chunks, filler=step >= real))
        plans.append(MiniBatch(rows=rows, micro_batches=tuple(micro)))
    return plans


def deepspeed_config(options: LearnerOptions, world_size: int) -> dict[str, Any]:
    """The DeepSpeed config a LearnerOptions stands for, with `deepspeed_overrides` merged in.

    Gradient accumulation is driven by the worker (it marks the last micro-batch of each
    mini-batch as the boundary), so DeepSpeed's own count stays 1 and never rescales the loss.
    """
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": options.micro_batch_size,
        "gradient_accumulation_steps": 1,
        "train_batch_size": options.micro_batch_size * world_size,
        "gradient_clipping": options.grad_clip,
        "zero_optimization": {"stage": options.zero_stage},
        "bf16": {"enabled": options.dtype == "bfloat16"},
        "fp16": {"enabled": options.dtype == "float16"},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    return _deep_merge(config, options.deepspeed_overrides)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        nested = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _deep_merge(merged[key], value) if nested else value
    return merged


class LearnerWorker:
    """One data-parallel rank. Every method that touches weights must be called on all ranks
    together (they run collectives); the results that matter come from rank 0."""

    def __init__(
        self,
        rank: int,
        world_size: int,
        master_addr: str | None,
        master_port: int | None,
        model_path: str,
        options: LearnerOptions,
        algorithm: AlgorithmOptions,
        temperature: float = 1.0,
        on_failure: str = "exclude",
    ) -> None:
        """`on_failure` is reward.on_failure: what a row whose reward failed means for the loss
        (rlkit.learner.failures)."""
        trainable_rows([], on_failure)  # refuses an unknown mode before any work
        self.rank = rank
        self.world_size = world_size
        self.master_addr = master_addr
        self.master_port = master_port
        self.model_path = str(model_path)
        self.options = options
        self.algorithm = algorithm
        self.on_failure = on_failure
        # The rollout's sampling temperature: log-probs of logits / T, as sampled (greedy reports T = 1).
        self.temperature = temperature if temperature > 0 else 1.0
        self.engine = None
        self.reference = None
        self.device = torch.device("cpu")
        self.pad_token_id = 0
        self._nonfinite = torch.zeros(())
        self.steps_trained = 0  # seeds the loss's own randomness (Clip-Cov) per step
        self._loss_draws = 0

    # ---------------------------------------------------------------- setup

    def setup(self, master_addr: str | None = None, master_port: int | None = None) -> None:
        """Join the process group, load the model and build the DeepSpeed engine."""
        problems = self.options.check()
        if problems:
            raise ValueError("invalid learner options: " + "; ".join(problems))
        self.master_addr = master_addr or self.master_addr or "127.0.0.1"
        self.master_port = master_port or self.master_port
        if self.master_port is None:
            raise ValueError("LearnerWorker.setup needs a master_port (the rendezvous port of rank 0)")
        backend = self._backend()
        self._set_environment(backend)
        torch.manual_seed(self.options.seed)

        import deepspeed

        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        # DeepSpeed calls torch.distributed functions that torch has renamed: one warning per call.
        warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
        self._join_process_group(backend)
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False)  # adopts the group above
        model = self._load_model()
        parameters = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            parameters,
            lr=self.options.lr,
            betas=tuple(self.options.adam_betas),
            weight_decay=self.options.weight_decay,
            # One kernel per update instead of a dozen passes over fresh full-size temporaries:
            # on CPU those page faults cost seconds per step for a 135M model.
            fused=True,
        )
        self.engine, *_ = deepspeed.initialize(
            model=PolicyLogprobs(model), optimizer=optimizer, config=deepspeed_config(self.options, self.world_size)
        )
        install_safe_checkpoint_engine(self.engine)  # resuming never unpickles arbitrary objects
        self.device = self.engine.device
        for parameter in self.engine.module.parameters():
            if parameter.requires_grad:
                parameter.register_hook(self._watch_gradient)
        self._nonfinite = torch.zeros((), device=self.device)
        if self.algorithm.kl_coef > 0:
            self.reference = self._build_reference(deepspeed)

    def _join_process_group(self, backend: str) -> None:
        """The ranks' process group, its rendezvous store on rank 0 listening on `master_addr`
        only (torch's env:// rendezvous would listen on every interface of the node)."""
        import datetime

        import torch.distributed as dist

        from rlkit.collective import listen

        timeout = datetime.timedelta(seconds=RENDEZVOUS_TIMEOUT_S)
        listening = listen(self.master_addr, self.master_port) if self.rank == 0 else None
        store = dist.TCPStore(self.master_addr, self.master_port, self.world_size, self.rank == 0, timeout,
                              master_listen_fd=listening.detach() if listening is not None else None)
        dist.init_process_group(backend, store=store, rank=self.rank, world_size=self.world_size, timeout=timeout)

    def _backend(self) -> str:
        if self.options.backend != "auto":
            return self.options.backend
        return "nccl" if torch.cuda.is_available() else "gloo"

    def _set_environment(self, backend: str) -> None:
        on_gpu = backend == "nccl"
        if self.options.dtype == "float16" and not on_gpu:
            raise ValueError(
                "learner.dtype='float16' needs a GPU: DeepSpeed refuses fp16 on CPU. Use 'bfloat16' or 'float32'."
            )
        os.environ.update(
            RANK=str(self.rank),
            WORLD_SIZE=str(self.world_size),
            # Ray gives each GPU actor one visible device, so its local index is 0.
            LOCAL_RANK="0" if on_gpu else str(self.rank),
            MASTER_ADDR=str(self.master_addr),
            MASTER_PORT=str(self.master_port),
        )
        os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache_root() / "torch_extensions"))
        clear_stale_build_locks(Path(os.environ["TORCH_EXTENSIONS_DIR"]))
        if not on_gpu:
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
            if self.master_addr in LOOPBACK:
                os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
            torch.set_num_threads(self.options.num_threads)
        pin_cpus(list(self.options.cpu_cores), "learner")

    def _load_model(self) -> nn.Module:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(
            self.model_path, dtype=torch.float32, attn_implementation=self.options.attn_implementation
        )
        model.config.use_cache = False
        if self.options.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.pad_token_id = _pad_token_id(model.config)
        return model

    def _build_reference(self, deepspeed) -> nn.Module:
        """A frozen copy of the initial policy for the KL term; partitioned like the policy under ZeRO-3."""
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(
            self.model_path, dtype=TORCH_DTYPES[self.options.dtype], attn_implementation=self.options.attn_implementation
        )
        model.requires_grad_(False)
        reference = PolicyLogprobs(model).eval()
        if self.options.zero_stage == 3:
            config = {
                "train_micro_batch_size_per_gpu": self.options.micro_batch_size,
                "zero_optimization": {"stage": 3},
                "bf16": {"enabled": self.options.dtype == "bfloat16"},
                "fp16": {"enabled": self.options.dtype == "float16"},
            }
            engine, *_ = deepspeed.initialize(model=reference, config=config)
            return engine
        return reference.to(self.device)

    def _watch_gradient(self, gradient: Tensor) -> Tensor:
        """Flag non-finite gradients as they are produced (before any reduction), on any stage.

        One fp32 sum per gradient: it is NaN or ±inf if any element is, in one pass (an
        element-wise isfinite costs three passes and a temporary). A finite gradient whose sum
        overflows fp32 (elements near 1e38) is flagged too, which is the right call."""
        total = gradient.sum(dtype=torch.float32)
        self._nonfinite = torch.maximum(self._nonfinite, (~torch.isfinite(total)).to(self._nonfinite.dtype))
        return gradient

    # ---------------------------------------------------------------- training

    def train_step(self, scored: list[ScoredSample]) -> dict[str, float]:
        """One train step on the whole batch `scored` (identical on every rank): advantages,
        then `mini_batches` × `ppo_epochs` optimizer updates. Returns metrics merged over ranks.

        Old log-probs (and old entropies, for methods that need them) come from a no-grad pass
        before the first update whenever the batch takes more than one update; with a single
        update the first forward is the old policy, so its values (detached) are used instead.
        An advantage estimator that needs old entropies (EMPG) gets the pass in any case, over
        the whole batch (each rank computes its rows, then they are summed across ranks).

        Rows whose reward did not apply, or failed (as `on_failure` says), leave the group
        statistics and the loss; a mini-batch left without any row to train makes no update.
        With several mini-batches, a batch that mixes data sources (RISE's verifications after
        the solutions) is interleaved first, so no update trains on one kind only.
        """
        start = time.perf_counter()
        engine = self._require_engine()
        needs = required_inputs(self.algorithm)
        self._loss_draws = 0
        if self.options.mini_batches > 1:
            scored = interleave_sources(scored, self.algorithm.seed, self.steps_trained)
        rows = trainable_rows(scored, self.on_failure)
        batch = collate(scored, self.pad_token_id)
        plan = plan_mini_batches(
            batch.attention_mask[:, batch.prompt_width :].sum(dim=1),
            self.options.mini_batches,
            self.rank,
            self.world_size,
            self.options.micro_batch_size,
            self.options.logprob_chunk_size,
        )
        on_policy = self.options.mini_batches == 1 and self.options.ppo_epochs == 1
        entropy_for_advantage = "old_entropy" in needs["advantage"]
        entropy_for_loss = "old_entropy" in needs["loss"] and not on_policy
        old = old_entropy = None
        if not on_policy or entropy_for_advantage:
            old, old_entropy = self._precompute(
                engine, batch, plan, entropy_for_advantage or entropy_for_loss, whole_batch=entropy_for_advantage
            )
            if on_policy:
                old = None
        reference = self._precompute(self.reference, batch, plan)[0] if self.reference is not None else None
        # A row without a usable reward carries no signal: it leaves the loss and its denominators.
        advantage = fill_advantages(batch, rows, self.algorithm.advantage, self.algorithm.advantage_options, old_entropy)

        updates: list[dict[str, float]] = []
        # Over this rank's rows in the first epoch: Σ mask, Σ mask·H, Σ mask·|ℓ_old − ℓ_rollout|.
        token_sums = torch.zeros(3, dtype=torch.float64)
        olds = (old, old_entropy if "old_entropy" in needs["loss"] else None)
        for epoch in range(self.options.ppo_epochs):
            for mini in plan:
                trained = mini.rows[rows.kept[mini.rows]]  # the same on every rank: all skip together
                if len(trained):
                    updates.append(self._update(engine, batch, mini, trained, olds, reference,
                                                token_sums if epoch == 0 else None))
        metrics = self._merge_metrics(updates, token_sums)
        metrics.update({f"actor/{name}": value for name, value in advantage.metrics.items()})
        metrics["actor/excluded_samples"] = float(rows.excluded)
        metrics["actor/lr"] = float(engine.optimizer.param_groups[0]["lr"])
        metrics["timing/train_s"] = time.perf_counter() - start
        self.steps_trained += 1
        return metrics

    @torch.no_grad()
    def _precompute(
        self, model, batch: TrainBatch, plan: list[MiniBatch], with_entropy: bool = False, whole_batch: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Log-probs (and entropies) [B, R] under `model` without gradient, before any update:
        this rank's rows, or with `whole_batch` every row (summed over ranks)."""
        logprob_out = torch.zeros_like(batch.response_mask)
        entropy_out = torch.zeros_like(batch.response_mask) if with_entropy else None
        model.eval()
        for mini in plan:
            for micro in mini.micro_batches:
                part = trim_padding(batch.select(micro.rows))
                # Fillers run too (ZeRO-3 needs the same module calls on every rank) but write nothing.
                logprobs, entropies = model(
                    self._to_device(part), self.temperature, self.options.logprob_chunk_size, with_entropy, micro.chunks
                )
                if micro.filler:
                    continue
                logprob_out[micro.rows, : logprobs.shape[1]] = logprobs.float().cpu()
                if entropy_out is not None:
                    entropy_out[micro.rows, : entropies.shape[1]] = entropies.float().cpu()
        if whole_batch and self.world_size > 1:
            import torch.distributed as dist

            for tensor in (logprob_out, entropy_out):
                if tensor is not None:
                    buffer = tensor.to(self.device)
                    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
                    tensor.copy_(buffer.cpu())
        return logprob_out, entropy_out

    def _update(
        self,
        engine,
        batch: TrainBatch,
        mini: MiniBatch,
        trained: Tensor,
        olds: tuple[Tensor | None, Tensor | None],
        reference: Tensor | None,
        token_sums: Tensor | None,
    ) -> dict[str, float]:
        """Forward/backward every micro-batch of one mini-batch, then one optimizer step.
        Denominators are those of `trained`, the mini-batch's rows that are in the loss, so a
        row left out weighs nothing (seq-mean-token-sum-norm's width included)."""
        denominators = denominators_of(batch, trained, self.algorithm.loss_scale_factor)
        old, old_entropy = olds
        sums: dict[str, float] = {}
        engine.train()
        last = len(mini.micro_batches) - 1
        for index, micro in enumerate(mini.micro_batches):
            engine.set_gradient_accumulation_boundary(index == last)
            part = self._to_device(trim_padding(batch.select(micro.rows)))
            logprobs, entropies = engine(part, self.temperature, self.options.logprob_chunk_size, True, micro.chunks)
            width = part.responses.shape[1]
            old_logprobs = logprobs.detach() if old is None else old[micro.rows, :width].to(self.device)
            old_entropies = entropies.detach() if old_entropy is None else old_entropy[micro.rows, :width].to(self.device)
            loss, micro_metrics = actor_loss(
                PolicyLossInputs(
                    log_prob=logprobs,
                    old_log_prob=old_logprobs,
                    advantages=part.advantages,
                    response_mask=part.response_mask,
                    entropy=entropies,
                    ref_log_prob=None if reference is None else reference[micro.rows, :width].to(self.device),
                    old_entropy=old_entropies,
                    step_ids=part.step_ids,
                    generator=self._loss_generator(),
                    rollout_log_prob=part.rollout_logprobs,
                ),
                self.algorithm,
                denominators,
            )
            if micro.filler:
                # The very graph of a real micro-batch (ZeRO-3 needs identical module calls, forward
                # and backward, on every rank), contributing nothing.
                loss = loss * 0.0
            else:
                for name, value in micro_metrics.items():
                    sums[name] = merge_metric(name, sums[name], value) if name in sums else value
                if token_sums is not None:
                    token_sums += _token_statistics(part, entropies, old_logprobs)
            # DeepSpeed averages gradients over ranks; the contributions must add up instead.
            engine.backward(loss * self.world_size, scale_wrt_gas=False)
        return {**sums, **self._step(engine)}

    def _loss_generator(self) -> torch.Generator:
        """Randomness for the loss (Clip-Cov's token choice): reproducible per seed, step, rank and
        micro-batch, and different across them."""
        self._loss_draws += 1
        return torch.Generator().manual_seed(loss_seed(self.algorithm.seed, self.steps_trained, self.rank, self._loss_draws))

    def _step(self, engine) -> dict[str, float]:
        """Apply the accumulated gradient, or skip the update if any rank saw a non-finite one."""
        import torch.distributed as dist

        flag = self._nonfinite.detach().clone().float()
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        self._nonfinite.zero_()
        if flag.item() > 0:
            if hasattr(engine.optimizer, "overflow"):
                # ZeRO and the bf16/fp16 wrappers check the gradient norm themselves and, when it
                # is not finite, drop the gradients without touching weights or optimizer state.
                engine.step()
                if engine.was_step_applied():
                    raise RuntimeError(
                        "DeepSpeed applied an optimizer step although a gradient was not finite; "
                        "the weights are now corrupt. Please report this with your DeepSpeed version."
                    )
            else:
                engine.zero_grad()  # plain data parallel: gradients live only in .grad
            return {"skipped": 1.0}
        norm = None if hasattr(engine.optimizer, "overflow") else _grad_norm(engine.module)
        engine.step()
        norm = engine.get_global_grad_norm() if norm is None else norm
        return {"skipped": 0.0, "grad_norm": float(norm) if norm is not None else float("nan")}

    def _merge_metrics(self, updates: list[dict[str, float]], token_sums: Tensor) -> dict[str, float]:
        """Gather every rank's per-update metrics and token sums, and merge them."""
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, (updates, token_sums.tolist()))
        return merge_rank_metrics(gathered)

    # ---------------------------------------------------------------- weights

    @torch.no_grad()
    def logprobs(self, prompt_ids: list[int], response_ids: list[int]) -> list[float]:
        """This learner's log-probs of `response_ids` after `prompt_ids` (a sync check)."""
        engine = self._require_engine()
        if not response_ids:
            return []
        ids = torch.tensor([list(prompt_ids) + list(response_ids)], dtype=torch.long)
        width = len(response_ids)
        batch = TrainBatch(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            position_ids=torch.arange(ids.shape[1])[None],
            responses=ids[:, -width:],
            response_mask=torch.ones((1, width)),
            rollout_logprobs=torch.zeros((1, width)),
            scores=torch.zeros(1),
            advantages=torch.zeros((1, width)),
            group_index=torch.zeros(1, dtype=torch.long),
            policy_versions=torch.zeros(1, dtype=torch.long),
            step_ids=torch.zeros((1, width), dtype=torch.long),
        )
        engine.eval()
        logprobs, _ = engine(self._to_device(batch), self.temperature, self.options.logprob_chunk_size, False)
        return logprobs[0].float().cpu().tolist()

    @torch.no_grad()
    def export_weights(self, dtype: str | None = None) -> dict[str, Tensor] | None:
        """The full HuggingFace-named state dict on rank 0 (None on other ranks), on CPU, cast
        to `dtype` (float32 | bfloat16 | float16; None or "auto" keeps the training dtype).
        ZeRO-3 gathers the shards, so every rank must call this."""
        target = export_dtype(dtype)
        state = self.full_state()
        if state is None:
            return None
        return {
            name: tensor.detach().to("cpu", dtype=target if target and tensor.is_floating_point() else None, copy=True)
            for name, tensor in state.items()
        }

    def full_state(self) -> dict[str, Tensor] | None:
        """The live HuggingFace-named state dict on rank 0 (not a copy, except under ZeRO-3,
        which gathers the shards: every rank must call this); None on other ranks."""
        engine = self._require_engine()
        if self.options.zero_stage == 3:
            wrapped = engine._zero3_consolidated_16bit_state_dict()
            return None if wrapped is None else {name.removeprefix("model."): t for name, t in wrapped.items()}
        return engine.module.model.state_dict() if self.rank == 0 else None

    def save_pretrained(self, path: str) -> None:
        """Write a folder transformers and vLLM load (safetensors + config + tokenizer); rank 0 writes."""
        import torch.distributed as dist
        from transformers import AutoTokenizer

        state = self.export_weights()
        if self.rank == 0:
            model = self.engine.module.model
            model.save_pretrained(path, state_dict=state, safe_serialization=True)
            AutoTokenizer.from_pretrained(self.model_path).save_pretrained(path)
        dist.barrier()

    def save_checkpoint(self, directory: str, tag: str) -> None:
        """DeepSpeed checkpoint (weights, optimizer state, shards) plus this worker's own counters
        and RNG state, for resuming; all ranks call."""
        client_state = {"rlkit": {"steps_trained": self.steps_trained, "torch_rng": torch.get_rng_state()}}
        self._require_engine().save_checkpoint(directory, tag=tag, client_state=client_state)

    def load_checkpoint(self, directory: str, tag: str) -> None:
        """Resume from `save_checkpoint(directory, tag)`; all ranks call. Files are read without
        unpickling arbitrary objects (`rlkit.learner.safe_checkpoint`)."""
        engine = self._require_engine()
        missing = FileNotFoundError(
            f"no DeepSpeed checkpoint {tag!r} under {directory}: give the folder and tag that "
            "save_checkpoint wrote (one sub-folder per tag)"
        )
        if not (Path(directory) / tag).is_dir():
            raise missing
        path, client_state = engine.load_checkpoint(directory, tag=tag)
        if path is None:
            raise missing
        own = (client_state or {}).get("rlkit")
        if own is not None:
            self.steps_trained = int(own["steps_trained"])
            torch.set_rng_state(own["torch_rng"])

    # ---------------------------------------------------------------- helpers

    def _require_engine(self):
        if self.engine is None:
            raise RuntimeError("LearnerWorker.setup() has not run: call it on every rank first")
        return self.engine

    def _to_device(self, batch: TrainBatch) -> TrainBatch:
        if self.device.type == "cpu":
            return batch
        return TrainBatch(**{name: getattr(batch, name).to(self.device) for name in batch.__dataclass_fields__})


def _token_statistics(part: TrainBatch, entropies: Tensor, old_logprobs: Tensor) -> Tensor:
    """Σ mask, Σ mask·H and Σ mask·|ℓ_old − ℓ_rollout| of one micro-batch (float64, CPU)."""
    mask = part.response_mask
    return torch.tensor(
        [
            float(mask.sum()),
            float((entropies.detach() * mask).sum()),
            float(((old_logprobs - part.rollout_logprobs).abs() * mask).sum()),
        ],
        dtype=torch.float64,
    )


def _grad_norm(module: nn.Module) -> float:
    """Global L2 norm of replicated (already all-reduced) gradients."""
    norms = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def _pad_token_id(config) -> int:
    """Any real id works as padding (it is masked out); prefer the model's own pad, then eos."""
    for candidate in (config.pad_token_id, config.eos_token_id):
        if isinstance(candidate, (list, tuple)):
            candidate = candidate[0] if candidate else None
        if candidate is not None:
            return int(candidate)
    return 0


def export_dtype(dtype: str | None) -> torch.dtype | None:
    """The torch dtype weights are exported in; None or "auto" keeps the training dtype."""
    dtype = None if dtype == "auto" else dtype
    if dtype is not None and dtype not in TORCH_DTYPES:
        raise ValueError(f"export dtype {dtype!r}: valid are {', '.join(TORCH_DTYPES)}, 'auto' or None")
    return None if dtype is None else TORCH_DTYPES[dtype]


STALE_LOCK_S = 600.0  # a JIT build takes seconds to a few minutes; a lock this old has no builder


def clear_stale_build_locks(extensions_dir: Path, older_than_s: float = STALE_LOCK_S) -> list[Path]:
    """Remove torch extension build locks left by a process killed mid-build.

    torch creates `<extension>/lock` while it JIT-builds an op (DeepSpeed's CPU comm op here)
    and deletes it when done; a process killed in between leaves it, and every later learner
    then waits on it until its setup times out. A lock untouched for `older_than_s` has no
    builder left. Returns the locks removed."""
    removed = []
    now = time.time()
    for lock in extensions_dir.glob("*/lock"):
        try:
            if now - lock.stat().st_mtime > older_than_s:
                lock.unlink()
                removed.append(lock)
                logging.getLogger(__name__).warning("removed a stale build lock %s (left by a killed process)", lock)
        except FileNotFoundError:
            continue
    return removed
