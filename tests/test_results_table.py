"""scripts/results_table.py: accuracy rows from summary.json, paired differences from items.jsonl."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("results_table", ROOT / "scripts" / "results_table.py")
assert spec is not None and spec.loader is not None
results_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_table)


def _run(folder: Path, correct: dict[str, list[bool]], config: dict | None = None, split: str | None = "test") -> Path:
    folder.mkdir()
    modes = [
        {"mode": mode, "n": len(c), "accuracy": sum(c) / len(c), "ci_low": 0.1, "ci_high": 0.9,
         "latency_median_ms": 12.0 if mode == "c2c" else None}
        for mode, c in correct.items()
    ]  # fmt: skip
    summary = {"task": "arc_easy", "split": split, "modes": modes, **({"config": config} if config else {})}
    (folder / "summary.json").write_text(json.dumps(summary))
    lines = [json.dumps({"mode": m, "id": f"q{i}", "correct": v}) for m, c in correct.items() for i, v in enumerate(c)]
    (folder / "items.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_folders_of_one_task_group_in_mode_order_with_paired_differences(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", {"receiver": [True, False, False, False]})
    fused = _run(tmp_path / "c2c", {"c2c": [True, True, True, False]})
    groups = results_table.group_runs([fused, base])
    assert groups == {"arc_easy test": [fused, base]}
    unsplit = _run(tmp_path / "unsplit", {"receiver": [True]}, split=None)  # a file or oe_eval task: no split
    assert list(results_table.group_runs([unsplit])) == ["arc_easy"]
    assert results_table.rows("arc_easy test", groups["arc_easy test"]) == [
        "| arc_easy test | receiver | 4 | 25.0% | [10.0, 90.0] | – |",
        "| arc_easy test | c2c | 4 | 75.0% | [10.0, 90.0] | 12 ms |",
    ]
    # per-item differences 0, 1, 1, 0: mean 0.5, sd 0.577, half-width 1.96 * 0.577 / 2 = 0.566
    assert results_table.paired_rows("arc_easy test", results_table.item_correctness([fused, base])) == [
        "| arc_easy test | c2c - receiver | 4 | +50.0 points | [-6.6, +106.6] |"
    ]


def test_bad_runs_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="summary.json does not exist"):
        results_table.group_runs([tmp_path])


def test_a_mode_run_on_fewer_items_compares_on_the_common_ones(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", {"receiver": [True, False]})
    other = _run(tmp_path / "c2c", {"c2c": [True, True, True]})
    assert (
        results_table.paired_rows("arc_easy test", results_table.item_correctness([base, other]))
        == [
            "| arc_easy test | c2c - receiver | 2 | +50.0 points | [-48.0, +148.0] |"  # diffs 0, 1: sd 0.707, half-width 0.98
        ]
    )


def test_who_knew_splits_the_items_by_the_single_models(tmp_path: Path) -> None:
    # q0: only the sharer right; q1: only the receiver right; q2, q3: both wrong; q4: both right (no row)
    run = _run(tmp_path / "all", {
        "receiver": [False, True, False, False, True], "sharer": [True, False, False, False, True],
        "self": [False, True, True, False, True], "c2c": [True, True, False, False, True],
    })  # fmt: skip
    assert results_table.who_knew_rows("arc_easy test", results_table.item_correctness([run])) == [
        "| arc_easy test | the sharer alone right, the receiver wrong | 1 | 100.0% | 0.0% |",
        "| arc_easy test | the receiver alone right, the sharer wrong | 1 | 100.0% | 100.0% |",
        "| arc_easy test | both wrong | 2 | 0.0% | 50.0% |",
    ]
    partial = _run(tmp_path / "partial", {"receiver": [True], "c2c": [True]})
    assert results_table.who_knew_rows("arc_easy test", results_table.item_correctness([partial])) == []
    # the single models alone: how many items only the sharer knew, with no fused mode to score there
    singles = _run(tmp_path / "singles", {"receiver": [False, True, False], "sharer": [True, False, False]})
    correct = results_table.item_correctness([singles])
    assert results_table.who_knew_columns([correct]) == []
    assert results_table.who_knew_rows("arc_easy test", correct, []) == [
        "| arc_easy test | the sharer alone right, the receiver wrong | 1 |",
        "| arc_easy test | the receiver alone right, the sharer wrong | 1 |",
        "| arc_easy test | both wrong | 1 |",
    ]
    assert (
        results_table.paired_rows("arc_easy test", correct)
        == [
            "| arc_easy test | sharer - receiver | 3 | +0.0 points | [-113.2, +113.2] |"  # diffs 1, -1, 0: sd 1, 1.96/sqrt(3)
        ]
    )


def test_an_ablated_run_is_its_own_row_and_compares_with_plain_c2c(tmp_path: Path) -> None:
    plain = _run(tmp_path / "c2c", {"c2c": [True, True, True, False]})
    ablated = _run(tmp_path / "ablated", {"c2c": [True, False, False, False]}, config={"ablate_sharer": True})
    base = _run(tmp_path / "base", {"receiver": [True, False, True, False]})
    runs = [ablated, plain, base]
    assert [row.split(" | ")[1] for row in results_table.rows("arc_easy test", runs)] == [
        "receiver",
        "c2c",
        "c2c (sharer ablated)",
    ]
    assert results_table.paired_rows("arc_easy test", results_table.item_correctness(runs)) == [
        "| arc_easy test | c2c - receiver | 4 | +25.0 points | [-24.0, +74.0] |",
        "| arc_easy test | c2c - c2c (sharer ablated) | 4 | +50.0 points | [-6.6, +106.6] |",
    ]
    # with the sharer and self too, the who-was-right table gains the ablated column
    rest = _run(tmp_path / "rest", {"sharer": [False, True, False, True], "self": [True, False, False, True]})
    correct = results_table.item_correctness([*runs, rest])
    columns = results_table.who_knew_columns([correct])
    assert columns == ["c2c", "self", "c2c (sharer ablated)"]
    assert results_table.who_knew_rows("arc_easy test", correct, columns) == [
        "| arc_easy test | the sharer alone right, the receiver wrong | 2 | 50.0% | 50.0% | 0.0% |",
        "| arc_easy test | the receiver alone right, the sharer wrong | 2 | 100.0% | 50.0% | 50.0% |",
    ]
    assert results_table.who_knew_columns([results_table.item_correctness([plain, base, rest])]) == ["c2c", "self"]
