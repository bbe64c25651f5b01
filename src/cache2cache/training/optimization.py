"""The optimisation state of a training run: AdamW over the fusers, the LR schedule, the gate anneal."""

from __future__ import annotations

import torch

from ..model import C2CModel
from ..sharers import fuser_modules
from .schema import TrainingOptions


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


def set_anneal_steps(model: C2CModel, steps: int) -> None:
    """Anneal every fuser's gate temperature over `steps` optimizer steps (and record it in the config)."""
    model.config.fuser.anneal_steps = steps
    for fuser in fuser_modules(model.fusers):
        fuser.anneal_steps = steps
