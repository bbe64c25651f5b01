"""report.py: Wilson intervals, percentiles, per-mode summaries, markdown and the chart."""

from __future__ import annotations

import pytest

from cache2cache.evaluation.report import (
    ModeSummary,
    percentile,
    plot_summary,
    render_markdown,
    speed_ratios,
    summarize,
    wilson_interval,
    write_markdown,
)


def test_wilson_interval_known_values_and_ends():
    assert wilson_interval(50, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_percentile_interpolates_like_numpy():
    assert percentile([1.0, 2.0, 3.0, 4.0], 90) == pytest.approx(3.7)
    assert percentile([5.0], 90) == 5.0
    with pytest.raises(ValueError):
        percentile([], 50)


def _records():
    rows = []
    for i in range(10):
        rows.append({"mode": "receiver", "correct": i < 4, "pred": None if i == 9 else 0, "subject": "math" if i < 5 else "art",
                     "latency_ms": {"prefill": 10.0 * i, "decode": 5.0, "total": 10.0 * i + 5} if i < 5 else None})  # fmt: skip
        rows.append({"mode": "t2t", "correct": i < 6, "pred": 1, "subject": "math" if i < 5 else "art",
                     "latency_ms": {"stage1": 100.0, "stage2": 20.0, "total": 120.0}})  # fmt: skip
    return rows


def test_summarize_counts_latency_and_groups():
    receiver, t2t, missing = summarize(_records(), ["receiver", "t2t", "c2c"])
    assert (receiver.n, receiver.correct, receiver.unanswered, receiver.latency_n) == (10, 4, 1, 5)
    assert receiver.accuracy == 0.4 and (receiver.ci_low, receiver.ci_high) == pytest.approx(wilson_interval(4, 10))
    assert receiver.latency_median_ms == 25.0 and receiver.latency_p90_ms == pytest.approx(41.0)
    assert receiver.stage_median_ms == {"prefill": 20.0, "decode": 5.0}
    assert (receiver.by_subject["math"].correct, receiver.by_subject["math"].n) == (4, 5)
    assert t2t.stage_median_ms == {"stage1": 100.0, "stage2": 20.0}
    assert missing.n == 0 and missing.latency_median_ms is None
    assert speed_ratios([receiver, t2t]) == {"t2t/receiver": pytest.approx(120 / 25)}
    assert speed_ratios([t2t, ModeSummary.from_counts("c2c", 1, 2, latencies_ms=[60.0])])["t2t/c2c"] == pytest.approx(
        2.0
    )


def test_markdown_has_the_tables_and_extra_sections(tmp_path):
    summaries = summarize(_records())
    text = render_markdown(summaries, title="Demo", extra_sections={"Command": "`c2c eval ...`"})
    assert text.startswith("# Demo\n")
    assert "| receiver | 10 | 40.0% | [16.8, 68.7] | 1 | 25 | 41 | 5 |" in text
    assert "## Latency by stage" in text and "| t2t | – | – | 100 | 20 |" in text
    assert "## Accuracy by subject" in text and "| math | 5 | 80.0% | 100.0% |" in text
    assert text.rstrip().endswith("`c2c eval ...`")
    path = write_markdown(summaries, tmp_path / "r.md", title="Demo", extra_sections=[("Notes", "none")])
    assert "## Notes\n\nnone" in path.read_text()


@pytest.mark.parametrize("timed", [True, False])
def test_plot_summary_writes_a_png(tmp_path, timed):
    summaries = [ModeSummary.from_counts("receiver", 3, 10, latencies_ms=[1.0, 2.0] if timed else []),
                 ModeSummary.from_counts("c2c", 10, 10, latencies_ms=[3.0] if timed else [])]  # fmt: skip
    path = plot_summary(summaries, tmp_path / "chart.png", title="Demo")
    assert path.read_bytes()[:4] == b"\x89PNG"
