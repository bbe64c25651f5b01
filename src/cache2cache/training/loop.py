"""The training loop: one visible loop over optimizer steps, no framework.

    for step in steps:
        gather this rank's micro-batches of the step's global batch
        count the step's supervised tokens over all ranks
        reseed from (seed, step, rank)                         # Gumbel noise, dropout
        for each micro-batch:                                  # gradient accumulation
            prefill receiver + sharer, fuse, score the response  (C2CModel.forward, DDP fusers;
                                                                  include_response fuses the response too)
            backward(sum of token losses / tokens in the global batch)
        clip, AdamW step, LR schedule step, anneal the gate temperature
        log; eval loss every eval_steps; checkpoint every save_steps
        on Ctrl-C (SIGINT): checkpoint this step, then stop (interrupt.py)

The loss is the mean cross-entropy over every supervised token of the global batch, however the
batch is split into micro-batches and ranks, so one process with batch 4 and two processes with
batch 2 take the same step.

`train_fusers(model, train, eval, config)` trains a `C2CModel` you built (the offline demo does);
`run_training(config)` loads the models and data a recipe names and calls it (`c2c train`).

Around the loop: `optimization.py` (AdamW groups, LR schedule, gate anneal), `metrics.py` (metrics
rows), `state.py` (checkpoints, resume), `pair.py` (the recipe's receiver and sharer).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..config import C2CConfig
from ..control import FusionControl
from ..inputs import pad_id
from ..loading import has_fast_bf16, load_model, load_tokenizer
from ..model import C2CModel
from ..sharers import fuser_modules
from .batching import IGNORE_INDEX, TrainingBatch, collate, epoch_order
from .config import (
    RECIPE_NAME,
    ConfigError,
    TrainConfig,
    TrainingOptions,
    check_train_config,
)
from .distributed import World, init_world, resolve_precision
from .examples import ChatDataset, ExampleEncoder
from .interrupt import StopOnInterrupt, TrainingInterrupted
from .metrics import MetricsReporter, gate_open_fraction
from .optimization import build_optimizer, build_scheduler, set_anneal_steps
from .pair import load_pair
from .records import Conversation, load_source, split_holdout
from .state import FINAL, resume_or_start, save_checkpoint, save_final

logger = logging.getLogger(__name__)

StepCallback = Callable[[int, dict[str, float]], None]


# ----------------------------------------------------------------------------------- components


def step_seed(seed: int, step: int, rank: int) -> int:
    """The global RNG seed of optimizer step `step` on `rank` (fixes its Gumbel noise and dropout)."""
    return ((seed * 1_000_003 + step) * 1_009 + rank) % (2**63)


def response_loss_sum(logits: torch.Tensor, labels: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """Summed cross-entropy of the response tokens.

    Args:
        logits: (B, L - P + 1, V) receiver logits for columns P-1 .. L-1 (`C2CModel.forward`).
        labels: (B, L) targets, IGNORE_INDEX where no loss applies.
        prompt_length: P.

    Returns:
        A float32 scalar: the sum over supervised tokens (column j's logits predict column j + 1).
    """
    targets = labels[:, prompt_length:]
    return F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


@torch.no_grad()
def evaluate_loss(
    model: C2CModel, dataset: ChatDataset, world: World, opts: TrainingOptions, pad_ids: tuple[int, int]
) -> float:
    """Mean cross-entropy per response token over `dataset`, fusers in eval mode (hard gates),
    sharded over ranks and summed across them."""
    was_training = model.training
    model.eval()
    total = count = 0.0
    mine = list(range(world.rank, len(dataset), world.world_size))
    size = opts.per_device_batch_size
    for start in range(0, len(mine), size):
        batch = collate(
            [dataset[i] for i in mine[start : start + size]], receiver_pad_id=pad_ids[0], sharer_pad_id=pad_ids[1]
        ).to(world.device)
        with _autocast(world, opts):
            out = model(batch.inputs, batch.prompt_length, control=_control(opts))
        total += response_loss_sum(out.logits, batch.labels, batch.prompt_length).item()
        count += batch.num_target_tokens
    total, count = world.all_reduce_sum([total, count])
    model.train(was_training)
    return total / max(count, 1.0)


def _control(opts: TrainingOptions) -> FusionControl:
    """Plain C2C, with the response fused too under `include_response`."""
    return FusionControl(include_response=opts.include_response)


def _autocast(world: World, opts: TrainingOptions) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast(world.device.type, dtype=torch.bfloat16, enabled=opts.precision == "bf16")


# ----------------------------------------------------------------------------------------- the loop


def train_fusers(
    model: C2CModel,
    train: Sequence[Conversation],
    eval: Sequence[Conversation] | None = None,
    config: TrainConfig | None = None,
    *,
    on_step: StepCallback | None = None,
    progress: bool = True,
) -> Path:
    """Train `model`'s fusers on chat conversations; the receiver and sharer stay frozen.

    Uses `config.data` (max_length, enable_thinking), `config.training` and `config.output`; the
    `model` section and the data sources are for `run_training` and are ignored here. Under torchrun
    every rank calls this with the same arguments.

    Args:
        model: A `C2CModel` with a receiver tokenizer (and a sharer tokenizer when they differ), on
            this rank's device. Its fusers are trained in float32 (master weights).
        train: Training conversations (`{"role", "content"}` lists ending in the assistant's answer).
        eval: Held-out conversations for the eval loss; None skips evaluation.
        config: The recipe (defaults: `TrainConfig()`).
        on_step: Called on every rank after each optimizer step (and its logging, eval and
            checkpoint) with the step number and its metrics (loss, lr, grad_norm, tokens_per_s, ...).
        progress: Show the progress bar (on the main rank).

    Returns:
        The `final/` folder, loadable with `C2CModel.from_pretrained`.

    Raises:
        ConfigError: the training, data or output options are invalid.
        ValueError: no example survives filtering, the global batch exceeds the data, output_dir
            holds another run, or the checkpoint to resume does not fit.
        TrainingInterrupted: SIGINT arrived; the step in flight was finished and checkpointed
            (a `KeyboardInterrupt`, so Ctrl-C still stops callers that do not catch it).

    Example:
        >>> cfg = TrainConfig(training=TrainingOptions(max_steps=50), output=OutputOptions(output_dir="runs/x"))  # doctest: +SKIP
        >>> final = train_fusers(model, conversations, None, cfg)  # doctest: +SKIP
    """
    config = config or TrainConfig()
    problems = check_train_config(config, check_files=False, check_models=False)
    if problems:
        raise ConfigError("train_fusers config", problems)
    opts, out_opts = config.training, config.output
    if model.receiver_tokenizer is None:
        raise ValueError("train_fusers needs the receiver's tokenizer: build the C2CModel with receiver_tokenizer=")
    unshared = model.unshared_sharer_ids()
    if unshared:
        raise ValueError(f"train_fusers: {unshared}; training with several sharers needs them to share one tokenizer")
    world = init_world(opts.device)
    if opts.num_threads is not None:
        torch.set_num_threads(opts.num_threads)
    precision = resolve_precision(opts.precision, world.device)
    if precision == "bf16" and not has_fast_bf16(world.device):
        logger.warning(
            "bf16 on %s without native bf16 support is emulated and slow; precision fp32 is faster here", world.device
        )
    opts = dataclasses.replace(opts, precision=precision)
    output_dir = config.output_path

    # ---- data
    encoder = ExampleEncoder(model.receiver_tokenizer, model.aligner, enable_thinking=config.data.enable_thinking)
    train_set = ChatDataset(train, encoder, config.data.max_length, name="train")
    eval_set = ChatDataset(eval, encoder, config.data.max_length, name="eval") if eval else None
    global_batch = opts.per_device_batch_size * opts.gradient_accumulation_steps * world.world_size
    steps_per_epoch = len(train_set) // global_batch
    if steps_per_epoch == 0:
        raise ValueError(
            f"{len(train_set)} training examples cannot fill one global batch of {global_batch} "
            f"(per_device_batch_size {opts.per_device_batch_size} x gradient_accumulation_steps "
            f"{opts.gradient_accumulation_steps} x {world.world_size} processes); add data or lower the batch"
        )
    total_steps = opts.max_steps or opts.epochs * steps_per_epoch
    if opts.anneal_ratio is not None:
        set_anneal_steps(model, max(1, round(opts.anneal_ratio * total_steps)))
    pad_ids = _pad_ids(model)

    # ---- optimisation state
    model.fusers.float()
    model.train()
    optimizer = build_optimizer(model, opts)
    scheduler = build_scheduler(optimizer, total_steps, opts.warmup_ratio)
    start_step = resume_or_start(model, optimizer, scheduler, config, world, global_batch)
    model.fusers.update_temperature(start_step)
    fusers = world.wrap(model.fusers, find_unused_parameters=model.config.receiver.sliding_window is not None)
    params = model.fuser_parameters()
    control = _control(opts)

    if world.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / RECIPE_NAME).write_text(_recipe_copy(config, model).to_yaml())
    reporter = MetricsReporter(output_dir, out_opts, config.to_dict(), start_step, world.is_main)
    logger.info(
        "training %d examples (%d tokens): %d steps of global batch %d (%d per device x %d accumulation x %d processes), "
        "%d steps per epoch, %d warmup, gate anneal over %d steps (%s); %.2fM fuser parameters; %s on %s",
        len(train_set), train_set.num_tokens, total_steps, global_batch, opts.per_device_batch_size,
        opts.gradient_accumulation_steps, world.world_size, steps_per_epoch, int(opts.warmup_ratio * total_steps),
        model.config.fuser.anneal_steps, model.config.fuser.anneal_schedule, sum(p.numel() for p in params) / 1e6,
        opts.precision, world.device,
    )  # fmt: skip

    def checkpoint(step: int, epoch: int, metrics: dict[str, float]) -> Path:
        state = {
            "step": step,
            "epoch": epoch,
            "samples_seen": step * global_batch,
            "global_batch_size": global_batch,
            "world_size": world.world_size,
            "seed": opts.seed,
            "total_steps": total_steps,
            "num_train_examples": len(train_set),
            "metrics": metrics,
        }
        if world.is_main:
            save_checkpoint(model, optimizer, scheduler, state, output_dir, keep_last=out_opts.keep_last)
        world.barrier()
        return output_dir / f"checkpoint-{step}"

    # log lines go above the progress bar instead of through it
    with logging_redirect_tqdm(), StopOnInterrupt() as interrupt:
        bar = tqdm(
            total=total_steps,
            initial=start_step,
            desc="train",
            unit="step",
            disable=not (world.is_main and progress),
            dynamic_ncols=True,
        )
        window: dict[str, float] = {"loss": 0.0, "steps": 0, "tokens": 0.0, "seconds": 0.0}
        order: tuple[int, list[int]] = (-1, [])
        for step in range(start_step, total_steps):
            started = time.perf_counter()
            epoch, offset = divmod(step, steps_per_epoch)
            if order[0] != epoch:
                order = (
                    epoch,
                    epoch_order(
                        train_set.lengths, opts.seed, epoch, global_batch, group_by_length=opts.group_by_length
                    ),
                )
            batches = _micro_batches(train_set, order[1], offset, opts, world, pad_ids)
            targets, tokens = world.all_reduce_sum(
                [sum(b.num_target_tokens for b in batches), sum(b.num_tokens for b in batches)]
            )

            torch.manual_seed(step_seed(opts.seed, step, world.rank))
            loss_sum = 0.0
            for index, batch in enumerate(batches):
                last = index == len(batches) - 1
                sync = contextlib.nullcontext() if last or not world.distributed else fusers.no_sync()  # type: ignore[operator]
                with sync:
                    with _autocast(world, opts):
                        out = model(batch.inputs, batch.prompt_length, fusers=fusers, control=control)
                    summed = response_loss_sum(out.logits, batch.labels, batch.prompt_length)
                    (summed * (world.world_size / targets)).backward()
                loss_sum += summed.item()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                params, opts.max_grad_norm if opts.max_grad_norm > 0 else math.inf
            )
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            model.fusers.update_temperature(step + 1)

            loss_sum, stop = world.all_reduce_sum([loss_sum, float(interrupt.requested)])  # every rank stops together
            seconds = time.perf_counter() - started
            metrics = {
                "step": step + 1,
                "epoch": (step + 1) / steps_per_epoch,
                "loss": loss_sum / targets,
                "lr": scheduler.get_last_lr()[0],
                "grad_norm": float(grad_norm),
                "tokens_per_s": tokens / seconds,
                "temperature": float(fuser_modules(model.fusers)[0].gate_temperature),
                "gate_open": gate_open_fraction(model),
            }
            for key, value in (("loss", metrics["loss"]), ("steps", 1), ("tokens", tokens), ("seconds", seconds)):
                window[key] += value
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{metrics['lr']:.2e}", tok_s=f"{tokens / seconds:.0f}")
            done = step + 1 == total_steps
            if (step + 1) % out_opts.log_steps == 0 or done:
                reporter.log(
                    {
                        **metrics,
                        "loss": window["loss"] / window["steps"],
                        "tokens_per_s": window["tokens"] / window["seconds"],
                    }
                )
                window = dict.fromkeys(window, 0.0)
            if (
                eval_set is not None
                and len(eval_set)
                and ((out_opts.eval_steps and (step + 1) % out_opts.eval_steps == 0) or done)
            ):
                eval_loss = evaluate_loss(model, eval_set, world, opts, pad_ids)
                metrics["eval_loss"] = eval_loss
                reporter.log({"step": step + 1, "eval_loss": eval_loss})
                if world.is_main:
                    logger.info("step %d: eval loss %.4f", step + 1, eval_loss)
            if (step + 1) % out_opts.save_steps == 0 or done or stop:
                saved = checkpoint(step + 1, epoch, metrics)
            if stop:
                bar.close()
                reporter.close()
                raise TrainingInterrupted(step + 1, saved)
            if on_step is not None:
                on_step(step + 1, metrics)
        bar.close()

    final = output_dir / FINAL
    if world.is_main:
        save_final(model, output_dir)
        logger.info("fusers saved to %s", final)
    world.barrier()
    reporter.close()
    model.eval()
    return final


def _micro_batches(
    dataset: ChatDataset, order: list[int], offset: int, opts: TrainingOptions, world: World, pad_ids: tuple[int, int]
) -> list[TrainingBatch]:
    """This rank's micro-batches of global batch `offset` in the epoch's `order`.

    The global batch is `order[offset*G : (offset+1)*G]`; micro-batch a of rank r takes the slice
    starting at `(a * world_size + r) * per_device_batch_size`.
    """
    size, world_size = opts.per_device_batch_size, world.world_size
    base = offset * size * opts.gradient_accumulation_steps * world_size
    batches = []
    for a in range(opts.gradient_accumulation_steps):
        start = base + (a * world_size + world.rank) * size
        examples = [dataset[i] for i in order[start : start + size]]
        batches.append(collate(examples, receiver_pad_id=pad_ids[0], sharer_pad_id=pad_ids[1]).to(world.device))
    return batches


def _pad_ids(model: C2CModel) -> tuple[int, int]:
    """(receiver, sharer) padding ids: the aligner's when the tokenizers differ, else the receiver
    tokenizer's `inputs.pad_id` (padding is masked anyway)."""
    if model.aligner is not None:
        return model.aligner.receiver_pad_id, model.aligner.sharer_pad_id
    pad = pad_id(model.chat_tokenizer())
    return pad, pad


def _recipe_copy(config: TrainConfig, model: C2CModel) -> TrainConfig:
    """The recipe to copy into output_dir, naming the models trained when the config does not."""
    models = dataclasses.replace(
        config.model,
        receiver=config.model.receiver or (model.config.receiver.name_or_path or ""),
        sharer=config.model.sharer or (model.config.sharer.name_or_path or ""),
        fuser=dataclasses.replace(model.config.fuser),
    )
    return dataclasses.replace(config, model=models)


# ---------------------------------------------------------------------------------------- from a recipe


def run_training(config: TrainConfig, *, on_step: StepCallback | None = None) -> Path:
    """Load the models and data a recipe names, build fresh fusers and train them.

    Args:
        config: A validated recipe (`load_train_config`).
        on_step: See `train_fusers`.

    Returns:
        The `final/` folder.
    """
    world = init_world(config.training.device)
    # The data first: a bad file is reported before the models load (and, for init: random, are saved).
    train = [c for source in config.data.train for c in load_source(source)]
    eval_conversations = [c for source in config.data.eval for c in load_source(source)] or None
    if eval_conversations is None and config.data.eval_ratio > 0:
        train, eval_conversations = split_holdout(train, config.data.eval_ratio, config.training.seed)
    m = config.model
    dtype = (
        m.dtype
        if m.dtype != "auto"
        else ("bfloat16" if resolve_precision(config.training.precision, world.device) == "bf16" else "float32")
    )
    receiver, sharer, receiver_tokenizer, sharer_tokenizer = load_pair(
        dataclasses.replace(m, dtype=dtype), world.device, config.training.seed, config.output_path, write=world.is_main
    )
    more = [load_model(name, dtype=dtype, device=world.device) for name in m.more_sharers]
    pair = C2CConfig.for_pair(
        receiver,
        sharer,
        fuser=dataclasses.replace(m.fuser),
        layer_map=m.layer_map,
        alignment_strategy=m.alignment_strategy,
        more_sharers=more,
        sharer_mode=m.sharer_mode,
    )
    model = C2CModel.from_models(
        receiver,
        [sharer, *more],
        pair,
        receiver_tokenizer=receiver_tokenizer,
        sharer_tokenizer=[sharer_tokenizer, *(load_tokenizer(name) for name in m.more_sharers)],
        seed=config.training.seed,
    )
    return train_fusers(model, train, eval_conversations, config, on_step=on_step)
