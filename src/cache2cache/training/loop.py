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
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..config import C2CConfig
from ..control import FusionControl
from ..inputs import pad_id
from ..loading import has_fast_bf16
from ..model import C2CModel
from ..sharers import fuser_modules
from .batching import IGNORE_INDEX, TrainingBatch, collate
from .config import (
    RECIPE_NAME,
    ConfigError,
    ModelOptions,
    OutputOptions,
    TrainConfig,
    TrainingOptions,
    check_train_config,
)
from .distributed import World, init_world, resolve_precision
from .examples import ChatDataset, ExampleEncoder
from .interrupt import StopOnInterrupt, TrainingInterrupted
from .records import Conversation, load_source, split_holdout
from .state import FINAL, checkpoint_dirs, find_latest_checkpoint, load_checkpoint, save_checkpoint, save_final

logger = logging.getLogger(__name__)

METRICS_NAME = "metrics.jsonl"
StepCallback = Callable[[int, dict[str, float]], None]


# ----------------------------------------------------------------------------------- components


def step_seed(seed: int, step: int, rank: int) -> int:
    """The global RNG seed of optimizer step `step` on `rank` (fixes its Gumbel noise and dropout)."""
    return ((seed * 1_000_003 + step) * 1_009 + rank) % (2**63)


def build_optimizer(model: C2CModel, opts: TrainingOptions) -> torch.optim.AdamW:
    """AdamW over the fuser parameters only, in three groups.

    - weight matrices: `learning_rate`, `weight_decay`;
    - biases and norm weights: `learning_rate`, no decay;
    - `*_gate_logit`: `learning_rate x gate_lr_multiplier`, no decay (decay would pull the gates
      towards 0, which is closed at eval time).
    """
    groups: dict[str, list[torch.nn.Parameter]] = {"decay": [], "no_decay": [], "gate": []}
    for name, param in model.fusers.named_parameters():
        kind = "gate" if name.endswith("_gate_logit") else ("decay" if param.ndim >= 2 else "no_decay")
        groups[kind].append(param)
    lr = opts.learning_rate
    return torch.optim.AdamW(
        [
            {"params": groups["decay"], "lr": lr, "weight_decay": opts.weight_decay},
            {"params": groups["no_decay"], "lr": lr, "weight_decay": 0.0},
            {"params": groups["gate"], "lr": lr * opts.gate_lr_multiplier, "weight_decay": 0.0},
        ],
        lr=lr,
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over `warmup_ratio` of the steps, then linear decay to 0 at `total_steps`."""
    warmup = int(warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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


def set_anneal_steps(model: C2CModel, steps: int) -> None:
    """Anneal every fuser's gate temperature over `steps` optimizer steps (and record it in the config)."""
    model.config.fuser.anneal_steps = steps
    for fuser in fuser_modules(model.fusers):
        fuser.anneal_steps = steps


def _gate_open_fraction(model: C2CModel) -> float:
    """Share of gate logits > 0, i.e. gates open at eval time."""
    logits = [p.item() for n, p in model.fusers.named_parameters() if n.endswith("_gate_logit")]
    return sum(v > 0 for v in logits) / max(1, len(logits))


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


def _row_step(row: str) -> float:
    """The step of a `metrics.jsonl` row; infinite for a blank or torn one (a kill mid-write), so it is dropped."""
    try:
        return float(json.loads(row).get("step", 0))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return math.inf


class _Reporter:
    """Metrics rows to `metrics.jsonl`, and to TensorBoard / wandb when asked (rank 0 only)."""

    def __init__(
        self, output_dir: Path, opts: OutputOptions, config: dict[str, Any], start_step: int, enabled: bool
    ) -> None:
        self.enabled = enabled
        self.path = output_dir / METRICS_NAME
        self.writers: list[Any] = []
        if not enabled:
            return
        if self.path.exists():  # a resumed run: forget rows past the checkpoint
            rows = [r for r in self.path.read_text().splitlines() if _row_step(r) <= start_step]
            self.path.write_text("".join(r + "\n" for r in rows))
        if "tensorboard" in opts.report_to:
            from torch.utils.tensorboard import SummaryWriter

            self.writers.append(SummaryWriter(log_dir=str(output_dir / "tensorboard")))
        if "wandb" in opts.report_to:
            import wandb

            self.writers.append(
                wandb.init(
                    project="cache2cache", name=opts.run_name or output_dir.name, dir=str(output_dir), config=config
                )
            )

    def log(self, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        step = int(row["step"])
        for writer in self.writers:
            metrics = {k: v for k, v in row.items() if k != "step"}
            if hasattr(writer, "add_scalar"):
                for key, value in metrics.items():
                    writer.add_scalar(key, value, step)
            else:
                writer.log(metrics, step=step)

    def close(self) -> None:
        for writer in self.writers:
            (writer.close if hasattr(writer, "close") else writer.finish)()


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
    start_step = _resume_or_start(model, optimizer, scheduler, config, world, global_batch)
    model.fusers.update_temperature(start_step)
    fusers = world.wrap(model.fusers, find_unused_parameters=model.config.receiver.sliding_window is not None)
    params = model.fuser_parameters()
    control = _control(opts)

    if world.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / RECIPE_NAME).write_text(_recipe_copy(config, model).to_yaml())
    reporter = _Reporter(output_dir, out_opts, config.to_dict(), start_step, world.is_main)
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
                generator = torch.Generator().manual_seed(opts.seed * 1_000_003 + epoch)
                order = (epoch, torch.randperm(len(train_set), generator=generator).tolist())
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
                "gate_open": _gate_open_fraction(model),
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


def _resume_or_start(
    model: C2CModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
    world: World,
    global_batch: int,
) -> int:
    """Restore the checkpoint named by `training.resume_from` and return its step; or prepare a
    fresh run (refusing to mix with an earlier run's checkpoints unless `output.overwrite`)."""
    output_dir, resume = config.output_path, config.training.resume_from
    checkpoint = (
        find_latest_checkpoint(output_dir) if resume == "latest" else (Path(resume).expanduser() if resume else None)
    )
    if checkpoint is None:
        if resume == "latest":
            logger.info("resume_from 'latest': no checkpoint in %s yet, starting fresh", output_dir)
        earlier = checkpoint_dirs(output_dir)
        if earlier and not config.output.overwrite:
            raise ValueError(
                f"{output_dir} already holds checkpoints ({earlier[-1].name}); continue with --resume "
                "(training.resume_from: latest), set output.overwrite: true, or choose another output_dir"
            )
        world.barrier()  # every rank has looked before rank 0 deletes
        if earlier and world.is_main:
            for folder in [*earlier, output_dir / FINAL]:
                shutil.rmtree(folder, ignore_errors=True)
            (output_dir / "metrics.jsonl").unlink(missing_ok=True)
        return 0
    if not checkpoint.is_dir():
        raise ValueError(
            f"training.resume_from: {str(checkpoint)!r} does not exist; give a checkpoint-<step> folder or 'latest'"
        )
    state = load_checkpoint(checkpoint, model, optimizer, scheduler)
    if state["global_batch_size"] != global_batch:
        raise ValueError(
            f"cannot resume from {checkpoint}: it was trained with a global batch of {state['global_batch_size']}, "
            f"this run has {global_batch}; keep per_device_batch_size x gradient_accumulation_steps x processes the same"
        )
    logger.info("resumed from %s at step %d of %d", checkpoint, state["step"], state["total_steps"])
    return int(state["step"])


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
    from ..loading import load_model, load_tokenizer

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


def load_pair(
    options: ModelOptions, device: torch.device, seed: int, output_dir: Path, *, write: bool
) -> tuple[PreTrainedModel, PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerBase | None]:
    """The receiver, sharer and their tokenizers a recipe names, frozen on `device`.

    With `init: pretrained` the models load through `cache2cache.loading` (hub id, folder, GGUF or
    fetched alias) in `options.dtype` ("auto": chosen by the device, see `loading.auto_dtype`; `run_training` resolves
    the recipe's "auto" from the precision first). With `init: random` each is built from the
    `config.json` in its folder with random weights seeded by `seed` (receiver) and `seed + 1`
    (sharer), then saved with its tokenizer under `<output_dir>/models/<role>/` (when `write`) and
    named by that folder, so the fusers' config records where to reload the exact models from.

    Returns:
        `(receiver, sharer, receiver_tokenizer, sharer_tokenizer)`; the sharer tokenizer is None when
        the sharer comes with none (it then reads the receiver's ids).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..loading import load_model, load_tokenizer

    receiver_tokenizer = load_tokenizer(options.receiver_tokenizer or options.receiver)
    if options.init == "pretrained":
        receiver = load_model(options.receiver, dtype=options.dtype, device=device)
        sharer = load_model(options.sharer, dtype=options.dtype, device=device)
        return receiver, sharer, receiver_tokenizer, load_tokenizer(options.sharer_tokenizer or options.sharer)

    sharer_folder = Path(options.sharer).expanduser()
    has_tokenizer = any((sharer_folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))
    sharer_tokenizer = (
        load_tokenizer(options.sharer_tokenizer)
        if options.sharer_tokenizer
        else (load_tokenizer(options.sharer) if has_tokenizer else None)
    )
    dtype = torch.float32 if options.dtype == "auto" else getattr(torch, options.dtype)
    models = []
    for offset, (role, tokenizer) in enumerate(
        (("receiver", receiver_tokenizer), ("sharer", sharer_tokenizer or receiver_tokenizer))
    ):
        torch.manual_seed(seed + offset)
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(getattr(options, role)), dtype=dtype)
        target = (output_dir / "models" / role).resolve()
        if write:
            target.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(target)
            tokenizer.save_pretrained(target)
        model.name_or_path = model.config._name_or_path = str(target)
        models.append(model.to(device).eval().requires_grad_(False))
    logger.info(
        "built random-weight receiver and sharer from %s and %s (saved under %s)",
        options.receiver,
        options.sharer,
        output_dir / "models",
    )
    return models[0], models[1], receiver_tokenizer, sharer_tokenizer
