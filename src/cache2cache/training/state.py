"""Training checkpoints: the fusers in our format plus what it takes to continue exactly.

    <output_dir>/checkpoint-<step>/
        c2c_config.json, fuser.safetensors   the fusers (`save_c2c`; loads with C2CModel.from_pretrained)
        training_state.pt                    optimizer and LR-scheduler state dicts (tensors and plain
                                             Python values only; read back with weights_only=True)
        trainer_state.json                   step, epoch, samples consumed, global batch, world size,
                                             seed, total steps, the step's metrics
    <output_dir>/final/                      the fusers after the last step (our format only)

Each folder is written under a temporary name in output_dir and renamed into place, so a run killed
mid-save leaves either the previous checkpoint or the new one, never half of one.

There is no RNG state to save: the data order is a function of (seed, epoch) and every step reseeds
the global generator from (seed, step, rank) before its forward passes (see `loop.step_seed`), so
the step number alone fixes the Gumbel noise and dropout of everything that follows.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import load_fuser_weights, save_c2c
from ..config import CONFIG_NAME, C2CConfig
from ..model import C2CModel
from .distributed import World
from .metrics import METRICS_NAME
from .schema import TrainConfig

logger = logging.getLogger(__name__)

TRAINING_STATE = "training_state.pt"
TRAINER_STATE = "trainer_state.json"
FINAL = "final"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """The complete `checkpoint-<step>` folders of a run, oldest first."""
    root = Path(output_dir).expanduser()
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _CHECKPOINT.match(p.name)) and (p / TRAINER_STATE).is_file()
    ]
    return [p for _, p in sorted(found)]


def find_latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete `checkpoint-<step>` folder of a run, or None."""
    dirs = checkpoint_dirs(output_dir)
    return dirs[-1] if dirs else None


def read_checkpoint_pair(checkpoint: str | Path) -> dict[str, str | None]:
    """The receiver and sharer names a checkpoint's `c2c_config.json` records."""
    data = json.loads((Path(checkpoint) / CONFIG_NAME).read_text())
    return {role: (data.get(role) or {}).get("name_or_path") for role in ("receiver", "sharer")}


def write_atomically(target: Path, write: Any) -> Path:
    """Call `write(tmp_dir)` on a fresh temporary folder beside `target`, then rename it to `target`
    (replacing an older `target`)."""
    target = Path(target)
    tmp = target.parent / f".tmp-{target.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if target.exists():
        old = target.parent / f".old-{target.name}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old)
    else:
        os.replace(tmp, target)
    return target


def save_checkpoint(
    model: C2CModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    trainer_state: dict[str, Any],
    output_dir: Path,
    *,
    keep_last: int | None = None,
) -> Path:
    """Write `checkpoint-<step>/` atomically; with `keep_last`, delete older checkpoints beyond it.

    Args:
        model: The model whose fusers to save.
        optimizer: Its optimizer.
        scheduler: Its learning-rate scheduler.
        trainer_state: JSON-ready state; must hold `step`.
        output_dir: The run folder.
        keep_last: How many checkpoints to keep (None: all).

    Returns:
        The checkpoint folder.
    """

    def write(folder: Path) -> None:
        save_c2c(model.config, model.fusers, folder)
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, folder / TRAINING_STATE)
        (folder / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=2) + "\n")

    path = write_atomically(output_dir / f"checkpoint-{trainer_state['step']}", write)
    if keep_last is not None:
        for old in checkpoint_dirs(output_dir)[:-keep_last]:
            shutil.rmtree(old)
    return path


def save_final(model: C2CModel, output_dir: Path) -> Path:
    """Write the fusers into `<output_dir>/final/` (our format), atomically."""
    return write_atomically(output_dir / FINAL, lambda folder: save_c2c(model.config, model.fusers, folder))


def load_checkpoint(
    checkpoint: Path,
    model: C2CModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    """Restore fusers, optimizer and scheduler from a checkpoint; returns its trainer state.

    Raises:
        ValueError: the checkpoint was made for another pair or other fuser sizes (the message lists
            the differing fields), or is incomplete.
    """
    missing = [name for name in (CONFIG_NAME, TRAINING_STATE, TRAINER_STATE) if not (checkpoint / name).is_file()]
    if missing:
        raise ValueError(
            f"{checkpoint} is not a complete training checkpoint (missing {', '.join(missing)}); resume from another one"
        )
    saved = C2CConfig.load(checkpoint).to_dict()
    current = model.config.to_dict()
    differences = [
        f"{key}: checkpoint {saved[key]!r} != run {current[key]!r}"
        for key in current
        if key not in ("receiver", "sharer") and saved.get(key) != current[key]
    ]
    for role in ("receiver", "sharer"):
        a, b = dict(saved[role]), dict(current[role])
        a.pop("name_or_path", None), b.pop("name_or_path", None)
        if a != b:
            differences.append(f"{role}: checkpoint {saved[role]!r} != run {current[role]!r}")
    if differences:
        raise ValueError(
            f"cannot resume from {checkpoint}: it was saved for a different setup:\n  - "
            + "\n  - ".join(differences)
            + "\nFix: resume with the recipe it was trained with, or start a fresh run in another output_dir"
        )
    load_fuser_weights(model.fusers, checkpoint / "fuser.safetensors")
    state = torch.load(checkpoint / TRAINING_STATE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return json.loads((checkpoint / TRAINER_STATE).read_text())


def resume_or_start(
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
            (output_dir / METRICS_NAME).unlink(missing_ok=True)
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
