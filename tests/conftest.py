"""Shared fixtures: tiny random pairs and a small fuser config (seconds per test, no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from cache2cache import C2CModel, FuserConfig
from cache2cache.loading import load_model
from tiny import tiny_receiver, tiny_sharer
from toy_tokenizers import bpe_tokenizer, wordlevel_tokenizer

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


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    """A receiver, a sharer and a receiver of another shape, saved as folders with their tokenizers,
    plus a fuser checkpoint for the first pair."""
    root = tmp_path_factory.mktemp("models")
    rt, st = bpe_tokenizer(), wordlevel_tokenizer()
    built = {
        "receiver": (tiny_receiver(vocab_size=len(rt)), rt),
        "sharer": (tiny_sharer(vocab_size=len(st)), st),
        "other": (tiny_receiver(vocab_size=len(rt), num_hidden_layers=4, head_dim=8), rt),
    }
    out = {}
    for name, (model, tok) in built.items():
        model.generation_config.eos_token_id, model.generation_config.pad_token_id = tok.eos_token_id, tok.pad_token_id
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        out[name] = root / name
    # Loaded from the folders, so the checkpoint records where its receiver and sharer are.
    pair = C2CModel.from_models(load_model(out["receiver"]), load_model(out["sharer"]), fuser=FuserConfig(hidden_dim=16, intermediate_dim=16),
                                receiver_tokenizer=rt, sharer_tokenizer=st)  # fmt: skip
    out["fuser"] = pair.save_pretrained(root / "fuser")
    return out


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and a busy 2-core machine makes two threads ~30x slower.
    A module turns it on with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def generate_cli_kwargs(monkeypatch) -> dict:
    """`c2c generate` with a stand-in model: the dict fills with the kwargs the command passes to `generate`."""
    import cache2cache.cli.generate as generate_cli

    seen: dict = {}

    class FakeModel:
        receiver_tokenizer = None

        def generate(self, messages, **kwargs):
            seen.update(kwargs)

    monkeypatch.setattr(generate_cli, "build_model", lambda args: FakeModel())
    monkeypatch.setattr("transformers.TextStreamer", lambda *a, **k: None)
    return seen
