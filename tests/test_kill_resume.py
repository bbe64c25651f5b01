"""Kill and resume, for real: `c2c train` as a subprocess, stopped by SIGKILL (mid-run and mid-save)
or SIGINT, then `--resume`d, ends with the same fuser weights as an uninterrupted run, bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
STEPS = 60


def _command(output_dir: Path, *extra: str) -> list[str]:
    """The tiny recipe, shortened, as a `c2c train` subprocess."""
    return [
        sys.executable, "-m", "cache2cache.cli.main", "train", "--config", "recipes/tiny.yaml",
        "--max_steps", str(STEPS), "--eval_steps", "0", "--output_dir", str(output_dir), *extra,
    ]  # fmt: skip


def _start(output_dir: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        _command(output_dir, *extra), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(output_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    process = _start(output_dir, *extra)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _wait_for(condition, process: subprocess.Popen[str], timeout: float = 240.0) -> None:
    """Poll `condition()` every millisecond until it holds; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(
                f"training ended (exit {process.returncode}) before the moment to stop it: {process.stderr.read()[-2000:]}"
            )
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("timed out waiting for the moment to stop training")
        time.sleep(0.001)


def _steps(output_dir: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in output_dir.glob("checkpoint-*"))


def _weights(output_dir: Path) -> dict:
    return load_file(output_dir / "final" / "fuser.safetensors")


def _assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not (a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]))]
    assert not different, f"{len(different)} of {len(a)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict:
    """The fuser weights of an uninterrupted run."""
    out = tmp_path_factory.mktemp("straight")
    _finish(out, "--save_steps", "8")
    return _weights(out)


def test_sigkill_mid_run_then_resume_gives_the_same_weights(straight, tmp_path) -> None:
    out = tmp_path / "run"
    process = _start(out, "--save_steps", "8")
    _wait_for(lambda: 16 in _steps(out), process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not (out / "final").exists() and max(_steps(out)) < STEPS
    _finish(out, "--save_steps", "8", "--resume")
    _assert_identical(_weights(out), straight)


def test_sigkill_mid_save_leaves_a_resumable_run(straight, tmp_path) -> None:
    out = tmp_path / "run"
    process = _start(out, "--save_steps", "1")  # a save every step, so one is caught half-written
    _wait_for(lambda: len(_steps(out)) >= 3 and any(out.glob(".tmp-checkpoint-*")), process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    half = [p.name for p in out.glob(".tmp-checkpoint-*")]
    assert half, "the kill did not land inside a save"
    _finish(out, "--save_steps", "1", "--resume")
    _assert_identical(_weights(out), straight)
    assert not list(out.glob(".tmp-checkpoint-*"))  # the half-written folder was not kept as a checkpoint


def test_sigint_saves_the_step_and_exits_cleanly_then_resumes(straight, tmp_path) -> None:
    out = tmp_path / "run"
    process = _start(out, "--save_steps", "1000")  # no checkpoint but the one the interrupt writes
    _wait_for(
        lambda: (out / "metrics.jsonl").is_file() and len((out / "metrics.jsonl").read_text().splitlines()) >= 2,
        process,
    )
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1]
    [stopped] = _steps(out)
    assert 18 <= stopped < STEPS and not (out / "final").exists()
    assert (
        message
        == f"c2c train: interrupted at step {stopped}; checkpoint saved to {out / f'checkpoint-{stopped}'}; continue with --resume"
    )
    _finish(out, "--save_steps", "1000", "--resume")
    _assert_identical(_weights(out), straight)
