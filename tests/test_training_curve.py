"""scripts/training_curve.py: metrics.jsonl rows become train and eval curves in one PNG."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("training_curve", ROOT / "scripts" / "training_curve.py")
assert spec is not None and spec.loader is not None
training_curve = importlib.util.module_from_spec(spec)
spec.loader.exec_module(training_curve)


def _run(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir()
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    return folder


def test_curves_are_read_in_step_order_and_plotted(tmp_path: Path) -> None:
    run = _run(tmp_path / "a", [{"step": 10, "loss": 2.0, "lr": 1e-4}, {"step": 5, "loss": 3.0},
                                {"step": 10, "eval_loss": 2.5}])  # fmt: skip
    assert training_curve.read_curve(run) == ([(5, 3.0), (10, 2.0)], [(10, 2.5)])
    out = tmp_path / "img" / "curve.png"
    assert (
        training_curve.main([str(run), str(_run(tmp_path / "b", [{"step": 1, "loss": 1.0}])), "--out", str(out)]) == 0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="metrics.jsonl does not exist"):
        training_curve.read_curve(tmp_path)
    with pytest.raises(SystemExit):
        training_curve.main([str(tmp_path), "--labels", "a", "b", "--out", str(tmp_path / "x.png")])
