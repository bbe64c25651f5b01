"""Training metrics: rows of `metrics.jsonl`, and TensorBoard / wandb when the recipe asks."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..model import C2CModel
from .schema import OutputOptions

METRICS_NAME = "metrics.jsonl"


def gate_open_fraction(model: C2CModel) -> float:
    """Share of gate logits > 0, i.e. gates open at eval time."""
    logits = [p.item() for n, p in model.fusers.named_parameters() if n.endswith("_gate_logit")]
    return sum(v > 0 for v in logits) / max(1, len(logits))


def _row_step(row: str) -> float:
    """The step of a `metrics.jsonl` row; infinite for a blank or torn one (a kill mid-write), so it is dropped."""
    try:
        return float(json.loads(row).get("step", 0))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return math.inf


class MetricsReporter:
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
