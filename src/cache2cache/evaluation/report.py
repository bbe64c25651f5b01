"""Summaries, markdown tables and charts of evaluation results, per mode.

Reusable by anything that compares modes (`c2c eval`, the offline demo):

    summaries = summarize(records, modes=["receiver", "sharer", "t2t", "c2c"])
    write_markdown(summaries, "results.md", title="ARC-Easy", extra_sections={"Command": "`c2c eval ...`"})
    plot_summary(summaries, "results.png", title="ARC-Easy")

A record is one answered item of one mode, as `c2c eval` writes to `items.jsonl`: at least `mode` and
`correct`; optionally `pred` (None: no answer), `latency_ms` (a dict of stage -> ms with a `total`;
None: not timed), `subject` and `category`. A demo can also build `ModeSummary` objects directly with
`ModeSummary.from_counts`.

Accuracy intervals are 95% Wilson score intervals. Latency is summarised by the median and the 90th
percentile (linear interpolation) of the timed items' totals, and per stage by the median.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

Z_95 = 1.959963984540054
"""The standard normal quantile of a two-sided 95% interval."""


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion `correct / n`.

    Returns:
        `(low, high)`; `(0.0, 1.0)` when `n` is 0.

    Example:
        >>> [round(x, 3) for x in wilson_interval(50, 100)]
        [0.404, 0.596]
    """
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # Exact at the ends (the formula gives 0 and 1 there, up to rounding), so low <= p <= high always holds.
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100) with linear interpolation between order statistics (NumPy's default)."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class GroupAccuracy:
    """Accuracy of one subject or category within a mode."""

    correct: int
    n: int

    @property
    def accuracy(self) -> float:
        """`correct / n` (0 for an empty group)."""
        return self.correct / self.n if self.n else 0.0


@dataclass
class ModeSummary:
    """Accuracy and latency of one mode over a set of items.

    Attributes:
        mode: The mode's name ("receiver", "sharer", "t2t", "c2c", or any label).
        n: Items answered.
        correct: Items answered correctly.
        accuracy: `correct / n`.
        ci_low: Lower end of the 95% Wilson interval.
        ci_high: Upper end.
        unanswered: Items with no extractable answer (counted as wrong).
        latency_n: Items timed (batch size 1).
        latency_median_ms: Median total latency of the timed items (None if none was timed).
        latency_p90_ms: 90th percentile of the same.
        stage_median_ms: Median per stage (prefill, sharer, fuse, decode; stage1, stage2; ...).
        by_subject: Subject -> accuracy, for items with a subject.
        by_category: Category -> accuracy, for items with a category.
    """

    mode: str
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    unanswered: int = 0
    latency_n: int = 0
    latency_median_ms: float | None = None
    latency_p90_ms: float | None = None
    stage_median_ms: dict[str, float] = field(default_factory=dict)
    by_subject: dict[str, GroupAccuracy] = field(default_factory=dict)
    by_category: dict[str, GroupAccuracy] = field(default_factory=dict)

    @classmethod
    def from_counts(
        cls, mode: str, correct: int, n: int, *, latencies_ms: Sequence[float] = (), unanswered: int = 0
    ) -> ModeSummary:
        """A summary from counts and (optionally) per-item total latencies in ms."""
        low, high = wilson_interval(correct, n)
        return cls(
            mode, n, correct, correct / n if n else 0.0, low, high, unanswered, len(latencies_ms),
            statistics.median(latencies_ms) if latencies_ms else None,
            percentile(latencies_ms, 90) if latencies_ms else None,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (groups as {name: {correct, n, accuracy}})."""
        out = asdict(self)
        for key in ("by_subject", "by_category"):
            out[key] = {k: {**asdict(g), "accuracy": g.accuracy} for k, g in getattr(self, key).items()}
        return out


def summarize(records: Iterable[Mapping[str, Any]], modes: Sequence[str] | None = None) -> list[ModeSummary]:
    """One `ModeSummary` per mode from per-item records (see the module docstring).

    Args:
        records: Per-item records with `mode` and `correct` (and optionally `pred`, `latency_ms`,
            `subject`, `category`).
        modes: The modes to report, in this order; default: as first seen in `records`.

    Returns:
        The summaries; a mode without records gets n = 0.
    """
    by_mode: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        by_mode.setdefault(record["mode"], []).append(record)
    summaries = []
    for mode in modes if modes is not None else list(by_mode):
        rows = by_mode.get(mode, [])
        correct = sum(bool(r["correct"]) for r in rows)
        timed = [r["latency_ms"] for r in rows if r.get("latency_ms")]
        summary = ModeSummary.from_counts(
            mode, correct, len(rows), latencies_ms=[t["total"] for t in timed],
            unanswered=sum(1 for r in rows if "pred" in r and r["pred"] is None),
        )  # fmt: skip
        stages = [s for s in dict.fromkeys(k for t in timed for k in t) if s != "total"]
        summary.stage_median_ms = {s: statistics.median(t.get(s, 0.0) for t in timed) for s in stages}
        for key, target in (("subject", summary.by_subject), ("category", summary.by_category)):
            for r in rows:
                if r.get(key):
                    group = target.setdefault(r[key], GroupAccuracy(0, 0))
                    group.n += 1
                    group.correct += bool(r["correct"])
        summaries.append(summary)
    return summaries


def speed_ratios(summaries: Sequence[ModeSummary]) -> dict[str, float]:
    """Ratios of median latencies: `"t2t/c2c"` (the paper's speed-up) and `"<mode>/receiver"` for
    every other timed mode, when both sides were timed."""
    median = {s.mode: s.latency_median_ms for s in summaries if s.latency_median_ms}
    ratios = {}
    if "t2t" in median and "c2c" in median:
        ratios["t2t/c2c"] = median["t2t"] / median["c2c"]
    if "receiver" in median:
        ratios.update({f"{m}/receiver": v / median["receiver"] for m, v in median.items() if m != "receiver"})
    return ratios


# ----------------------------------------------------------------------------------- markdown


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def markdown_table(summaries: Sequence[ModeSummary]) -> str:
    """The main table: accuracy with its 95% CI, unanswered items and latency per mode."""
    lines = [
        "| mode | n | accuracy | 95% CI | unanswered | median latency (ms) | p90 latency (ms) | timed |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.mode} | {s.n} | {100 * s.accuracy:.1f}% | [{100 * s.ci_low:.1f}, {100 * s.ci_high:.1f}] | {s.unanswered} "
            f"| {_ms(s.latency_median_ms)} | {_ms(s.latency_p90_ms)} | {s.latency_n} |"
        )
    return "\n".join(lines)


def _stage_table(summaries: Sequence[ModeSummary]) -> str:
    stages = list(dict.fromkeys(stage for s in summaries for stage in s.stage_median_ms))
    if not stages:
        return ""
    lines = ["| mode | " + " | ".join(stages) + " |", "|---|" + "---:|" * len(stages)]
    for s in summaries:
        if s.stage_median_ms:
            lines.append(f"| {s.mode} | " + " | ".join(_ms(s.stage_median_ms.get(stage)) for stage in stages) + " |")
    return "\n".join(lines)


def _group_table(summaries: Sequence[ModeSummary], key: str) -> str:
    names = sorted({name for s in summaries for name in getattr(s, key)})
    if not names:
        return ""
    lines = ["| " + key.removeprefix("by_") + " | n | " + " | ".join(s.mode for s in summaries) + " |",
             "|---|---:|" + "---:|" * len(summaries)]  # fmt: skip
    for name in names:
        groups = [getattr(s, key).get(name) for s in summaries]
        n = max(g.n for g in groups if g is not None)
        cells = " | ".join("–" if g is None else f"{100 * g.accuracy:.1f}%" for g in groups)
        lines.append(f"| {name} | {n} | {cells} |")
    return "\n".join(lines)


def render_markdown(
    summaries: Sequence[ModeSummary],
    *,
    title: str = "Evaluation results",
    extra_sections: Mapping[str, str] | Sequence[tuple[str, str]] = (),
) -> str:
    """The report as markdown: the main table, the latency breakdown and speed ratios, accuracy per
    category and per subject (when items have them), then `extra_sections` (heading -> markdown)."""
    parts = [f"# {title}", markdown_table(summaries)]
    stage_table = _stage_table(summaries)
    if stage_table:
        parts += ["## Latency by stage (median ms, timed items at batch size 1)", stage_table]
    ratios = speed_ratios(summaries)
    if ratios:
        parts.append("Median latency ratios: " + ", ".join(f"{k} = {v:.2f}x" for k, v in ratios.items()) + ".")
    for key, heading in (("by_category", "Accuracy by category"), ("by_subject", "Accuracy by subject")):
        table = _group_table(summaries, key)
        if table:
            parts += [f"## {heading}", table]
    sections = extra_sections.items() if isinstance(extra_sections, Mapping) else extra_sections
    for heading, body in sections:
        parts += [f"## {heading}", body.strip()]
    return "\n\n".join(parts) + "\n"


def write_markdown(
    summaries: Sequence[ModeSummary],
    path: str | Path,
    *,
    title: str = "Evaluation results",
    extra_sections: Mapping[str, str] | Sequence[tuple[str, str]] = (),
) -> Path:
    """Write `render_markdown(...)` to `path`; returns the path."""
    path = Path(path)
    path.write_text(render_markdown(summaries, title=title, extra_sections=extra_sections), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------- chart


CHART_EXTRA = "pip install 'cache2cache[demo]' (matplotlib only; the eval and all extras include it too)"
"""How to get the charts' one optional dependency."""


def write_chart(
    summaries: Sequence[ModeSummary], path: str | Path, *, title: str = "Evaluation results"
) -> Path | None:
    """`plot_summary`, or, without matplotlib, a warning and None: a finished run never loses its
    results to the chart. A chart left at `path` by an earlier run is removed then, so none is stale."""
    try:
        return plot_summary(summaries, path, title=title)
    except ImportError as err:
        Path(path).unlink(missing_ok=True)
        logger.warning("skipped the chart %s: %s", path, err)
        return None


def plot_summary(summaries: Sequence[ModeSummary], path: str | Path, *, title: str = "Evaluation results") -> Path:
    """A PNG with accuracy (bars, 95% CI whiskers) and median latency (bars, p90 whiskers) per mode.

    The latency panel is left out when no mode was timed. Uses matplotlib's Agg backend (no display).

    Raises:
        ImportError: matplotlib is missing (the message names `CHART_EXTRA`).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(f"the chart needs matplotlib: {CHART_EXTRA}") from err
    timed = [s for s in summaries if s.latency_median_ms is not None]
    figure, axes = plt.subplots(1, 2 if timed else 1, figsize=(10 if timed else 5.5, 4), squeeze=False)
    names = [s.mode for s in summaries]
    accuracy = [100 * s.accuracy for s in summaries]
    whiskers = [
        [100 * max(0.0, s.accuracy - s.ci_low) for s in summaries],
        [100 * max(0.0, s.ci_high - s.accuracy) for s in summaries],
    ]
    ax = axes[0][0]
    bars = ax.bar(names, accuracy, yerr=whiskers, capsize=4, color="#4C72B0")
    ax.bar_label(bars, labels=[f"{a:.1f}" for a in accuracy], padding=2, fontsize=8)
    ax.set_ylabel("accuracy (%), 95% Wilson CI")
    ax.set_ylim(0, 100)
    ax.set_title("accuracy")
    if timed:
        ax = axes[0][1]
        medians = [s.latency_median_ms or 0.0 for s in timed]
        upper = [max(0.0, (s.latency_p90_ms or m) - m) for s, m in zip(timed, medians)]
        bars = ax.bar([s.mode for s in timed], medians, yerr=[[0] * len(timed), upper], capsize=4, color="#DD8452")
        ax.bar_label(bars, labels=[f"{m:,.0f}" for m in medians], padding=2, fontsize=8)
        ax.set_ylabel("latency per item (ms): median, p90 whisker")
        ax.set_title("latency (batch size 1)")
    figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
