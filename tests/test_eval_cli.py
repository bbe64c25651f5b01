"""`c2c eval` from the command line: models from folders, the table printed, and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest

from cache2cache.cli.main import main
from test_eval_runner import TASK

pytestmark = pytest.mark.usefixtures("one_thread")


def _eval(dirs, tmp_path, *extra: str) -> int:
    return main(["eval", "--receiver", str(dirs["receiver"]), "--sharer", str(dirs["sharer"]), "--task", TASK,
                 "--max_new_tokens", "2", "--communication_max_new_tokens", "3", "--latency_items", "1",
                 "--output_dir", str(tmp_path / "run"), *extra])  # fmt: skip


def test_the_baselines_run_from_folders_and_print_the_table(dirs, tmp_path, capsys):
    assert _eval(dirs, tmp_path, "--modes", "receiver,sharer,t2t", "--answer_method", "loglik") == 0
    out = capsys.readouterr().out
    assert "| receiver | 6 |" in out and "| sharer | 6 |" in out and "| t2t | 6 |" in out
    assert "results in" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [m["mode"] for m in summary["modes"]] == ["receiver", "sharer", "t2t"]


def test_c2c_runs_with_a_fuser_checkpoint(dirs, tmp_path, capsys):
    assert main(["eval", "--fuser", str(dirs["fuser"]), "--task", TASK, "--modes", "c2c", "--limit", "2", "--max_new_tokens", "2",
                 "--output_dir", str(tmp_path / "run")]) == 0  # fmt: skip
    assert "| c2c | 2 |" in capsys.readouterr().out


def test_c2c_without_a_fuser_is_refused(dirs, tmp_path, capsys):
    assert _eval(dirs, tmp_path, "--modes", "receiver,c2c") == 1
    err = capsys.readouterr().err
    assert err.startswith("c2c eval: error:") and "'c2c' needs a trained fuser: pass --fuser" in err
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_for_another_pair_names_both_sides(dirs, tmp_path, capsys):
    code = main(["eval", "--fuser", str(dirs["fuser"]), "--receiver", str(dirs["other"]), "--task", TASK, "--modes", "c2c",
                 "--output_dir", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "does not fit the models given" in err and "receiver" in err and "num_hidden_layers" in err


def test_bad_tasks_are_one_line_errors(dirs, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"question": "Q?", "choices": ["a", "b"], "answer": 0}\n{"question": "R?", "choices": ["a"], "answer": 0}\n'
    )
    cases = [
        (str(tmp_path / "missing.jsonl"), "is neither a known task"),
        ("arc_esay", "did you mean arc_easy"),
        (str(bad), "bad.jsonl:2: malformed record: item 'bad:2': needs 2 to 26 choices, got 1"),
    ]
    for task, message in cases:
        code = main(["eval", "--receiver", str(dirs["receiver"]), "--sharer", str(dirs["sharer"]), "--task", task,
                     "--modes", "receiver", "--output_dir", str(tmp_path / "run"), "--overwrite"])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 1 and message in err, err


def test_list_tasks(capsys):
    assert main(["eval", "--list_tasks"]) == 0
    out = capsys.readouterr().out
    assert "arc_easy" in out and "mmlu_redux" in out
