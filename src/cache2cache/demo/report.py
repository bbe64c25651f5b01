"""The demo's side-by-side report: `report.md`, `report.png`, `results.json` and `heldout.jsonl`."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..evaluation.report import ModeSummary, write_chart, write_markdown
from .world import ATTRIBUTES, CITIES, COLOURS, JOBS, World

_VALUES = {"city": CITIES, "job": JOBS, "colour": COLOURS}
EXAMPLES = 6


@dataclass
class ModeResult:
    """One mode's answers on the held-out questions."""

    mode: str
    answers: list[str]
    correct: int
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        """Fraction of exact first-word matches."""
        return self.correct / max(1, len(self.answers))

    @property
    def latency_median_ms(self) -> float:
        """Median latency of one answer at batch size 1."""
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")


@dataclass
class DemoResult:
    """What `run_demo` produced."""

    output_dir: Path
    questions: list[str]
    gold: list[str]
    modes: dict[str, ModeResult]
    phase_seconds: dict[str, float]
    reused: list[str]
    fuser_train_names: set[str]
    held_out_names: set[str]


def mode_summaries(result: DemoResult) -> list[ModeSummary]:
    """One `ModeSummary` per mode, in the order receiver, sharer, t2t, c2c."""
    return [
        ModeSummary.from_counts(m, r.correct, len(r.answers), latencies_ms=r.latencies_ms)
        for m, r in result.modes.items()
    ]


def write_demo_report(result: DemoResult, world: World) -> None:
    """Write the report files into `result.output_dir` (all of them but `report.png` without matplotlib)."""
    out = result.output_dir
    summaries = mode_summaries(result)
    examples = ["| question | gold | " + " | ".join(result.modes) + " |", "|---|---|" + "---|" * len(result.modes)]
    for i in range(min(EXAMPLES, len(result.questions))):
        row = [result.questions[i], result.gold[i]] + [result.modes[m].answers[i] or "(nothing)" for m in result.modes]
        examples.append("| " + " | ".join(row) + " |")
    overlap = result.fuser_train_names & result.held_out_names
    phases = ", ".join(f"{k} {v:.0f} s" for k, v in result.phase_seconds.items())
    if result.reused:
        phases += f" (reused the trained {', '.join(result.reused)})"
    notes = [
        ("What this shows",
        f"The held-out questions ask about {len(result.held_out_names)} people that only the sharer knows. "
        f"The fuser was trained on questions about {len(result.fuser_train_names)} other people "
        f"({len(overlap)} shared with the held-out set), so what C2C gets right crossed the cache at answer time. "
        "The receiver's vocabulary does not even contain these names (they are `<unk>` to it)."),
        ("Examples (first held-out questions)", "\n".join(examples)),
        ("Time", f"Phases: {phases}. Latency is the median of one answer at batch size 1 "
        f"over the first {len(next(iter(result.modes.values())).latencies_ms)} questions."),
    ]  # fmt: skip
    write_markdown(summaries, out / "report.md", title="C2C demo: held-out people", extra_sections=notes)
    write_chart(
        summaries, out / "report.png", title="C2C demo (held-out people)"
    )  # skipped, with a warning, without matplotlib
    (out / "results.json").write_text(
        json.dumps(
            {
                "summaries": [s.to_dict() for s in summaries],
                "phase_seconds": result.phase_seconds,
                "reused": result.reused,
                "items": [
                    {"question": q, "gold": g, **{m: r.answers[i] for m, r in result.modes.items()}}
                    for i, (q, g) in enumerate(zip(result.questions, result.gold))
                ],
            },
            indent=1,
        )
        + "\n"
    )
    with open(out / "heldout.jsonl", "w") as f:  # the same questions as a task for `c2c eval`
        for p in world.held_out:
            for a in ATTRIBUTES:
                choices = list(_VALUES[a])
                f.write(json.dumps({"id": f"{p.name}-{a}", "question": p.question(a), "choices": choices,
                                    "answer": choices.index(p.value(a)), "subject": a}) + "\n")  # fmt: skip
