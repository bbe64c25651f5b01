"""Shared fixtures: tiny random pairs and a small fuser config (seconds per test, no downloads)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from cache2cache import C2CModel, FuserConfig  # noqa: E402
from tiny import tiny_receiver, tiny_sharer  # noqa: E402

SMALL_FUSER = FuserConfig(hidden_dim=32, intermediate_dim=32, num_layers=3, dropout=0.0)


def pytest_report_header() -> str:
    """The CPU kernel level torch dispatches to (set with ATEN_CPU_CAPABILITY): trained numbers depend on it."""
    return f"torch {torch.__version__}, CPU kernels {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads"


@pytest.fixture
def pair() -> C2CModel:
    """Receiver Qwen3 (3 layers, 2x16 KV) <- sharer Llama (2 layers, 3x8 KV), open gates."""
    fuser = FuserConfig(**{**SMALL_FUSER.__dict__, "gate_init": 3.0})
    return C2CModel.from_models(tiny_receiver(), tiny_sharer(), fuser=fuser, seed=0).eval()


@pytest.fixture
def closed_pair() -> C2CModel:
    """The same pair with the published gate init (logit 0: closed at eval)."""
    return C2CModel.from_models(tiny_receiver(), tiny_sharer(), fuser=SMALL_FUSER, seed=0).eval()


def prompt_ids(batch: int = 1, length: int = 12, seed: int = 0) -> torch.Tensor:
    """Random token ids avoiding the special ids 0-2, (batch, length)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 96, (batch, length), generator=g)
