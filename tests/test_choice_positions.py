"""scripts/choice_positions.py: how often a mode picks either end of the option list, beside gold."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("choice_positions", ROOT / "scripts" / "choice_positions.py")
assert spec is not None and spec.loader is not None
choice_positions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(choice_positions)


def test_counts_picks_and_gold_at_each_end(tmp_path: Path) -> None:
    records = [  # (mode, options, pred, gold)
        ("receiver", 4, 0, 0), ("receiver", 4, 0, 3), ("receiver", 3, 2, 1),
        ("c2c", 4, 3, 0), ("c2c", 4, None, 3), ("c2c", 2, 1, 1),
    ]  # fmt: skip
    lines = [json.dumps({"mode": m, "scores": [0.0] * k, "pred": p, "gold": g}) for m, k, p, g in records]
    (tmp_path / "items.jsonl").write_text("\n".join(lines) + "\n")
    counts = choice_positions.position_counts(tmp_path)
    assert counts["receiver"] == {"n": 3, "pick_first": 2, "pick_last": 1, "gold_first": 1, "gold_last": 1}
    # an item with no pick is at neither end; with two options the second is the last
    assert counts["c2c"] == {"n": 3, "pick_first": 0, "pick_last": 2, "gold_first": 1, "gold_last": 2}
    assert (
        choice_positions.rows([tmp_path])[0]
        == f"| {tmp_path.parent.name}/{tmp_path.name} | receiver | 3 | 2 | 1 | 1 | 1 |"
    )


def test_a_folder_without_records_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="items.jsonl does not exist"):
        choice_positions.position_counts(tmp_path)
