"""The lm-evaluation-harness adapter: local task files end to end, and scores against a hand computation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance

from cache2cache import kv
from cache2cache.evaluation.lm_eval import C2CLM
from test_eval_runner import tiny_eval_pair

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "tests" / "fixtures" / "eval" / "lm_eval_tasks"
CONTEXT, CONTINUATION = "Question: What is the capital of France?\nAnswer:", " Paris"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Offline datasets, a private datasets cache, and the repository root as working directory
    (the task files name their data relative to it)."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    monkeypatch.chdir(ROOT)


def _request(kind: str, args: tuple) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=args, idx=0)


def test_simple_evaluate_runs_local_tasks_through_c2c(offline):
    import lm_eval
    from lm_eval.tasks import TaskManager

    lm = C2CLM(model=tiny_eval_pair("aligned"), batch_size=4)
    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=["tiny_mc_lm", "tiny_gen_lm"],
        task_manager=TaskManager(include_path=str(TASKS), include_defaults=False),
        log_samples=True,
    )
    assert 0.0 <= out["results"]["tiny_mc_lm"]["acc,none"] <= 1.0
    assert 0.0 <= out["results"]["tiny_gen_lm"]["exact_match,none"] <= 1.0
    samples = out["samples"]["tiny_mc_lm"]
    assert len(samples) == 6
    for sample in samples:  # lm-eval's accuracy is the argmax of our loglikelihoods
        scores = [float(r[0]) for r in sample["filtered_resps"]]
        assert sample["acc"] == float(max(range(len(scores)), key=scores.__getitem__) == sample["target"])


def test_the_name_c2c_is_registered():
    from lm_eval.api.registry import get_model

    assert get_model("c2c") is C2CLM
    assert get_model("hf").__name__ == "HFLM"  # registering c2c leaves lm-eval's own models in place


def test_loglikelihood_scores_the_continuation_over_the_fused_cache():
    model = tiny_eval_pair("shared")
    tok = model.receiver_tokenizer
    context = tok.encode(CONTEXT, add_special_tokens=False)
    continuation = tok.encode(CONTEXT + CONTINUATION, add_special_tokens=False)[len(context) :]
    with torch.no_grad():  # by hand: fuse the context minus its last token, then one receiver pass
        cache = model.fuse(model.inputs_from_ids(torch.tensor([context[:-1]])))
        seq = torch.tensor([context[-1:] + continuation])
        positions = torch.arange(len(context) - 1, len(context) + len(continuation))[None]
        logits = model.receiver(
            input_ids=seq, position_ids=positions, **{kv.cache_kwarg(model.receiver): cache}
        ).logits[0]
        plain = model.receiver(input_ids=torch.tensor([context + continuation])).logits[0, len(context) - 1 : -1]
    hand = sum(float(torch.log_softmax(logits[k], -1)[t]) for k, t in enumerate(continuation))
    alone = sum(float(torch.log_softmax(plain[k], -1)[t]) for k, t in enumerate(continuation))

    [(score, _)] = C2CLM(model=model).loglikelihood(
        [_request("loglikelihood", (CONTEXT, CONTINUATION))], disable_tqdm=True
    )
    [(receiver_score, _)] = C2CLM(model=model, fuse=False).loglikelihood(
        [_request("loglikelihood", (CONTEXT, CONTINUATION))], disable_tqdm=True
    )
    assert score == pytest.approx(hand, abs=1e-4)
    assert receiver_score == pytest.approx(alone, abs=1e-4)
    assert abs(score - receiver_score) > 1e-3  # open gates: fusion changes the score


def test_generate_until_stops_at_the_until_strings():
    model = tiny_eval_pair("aligned")
    lm = C2CLM(model=model)
    [text] = lm.generate_until(
        [_request("generate_until", (CONTEXT, {"until": ["e"], "max_gen_toks": 6, "do_sample": False}))],
        disable_tqdm=True,
    )
    ids = torch.tensor([model.receiver_tokenizer.encode(CONTEXT, add_special_tokens=False)])
    inputs = model.inputs_from_ids(ids, sharer_input_ids=torch.tensor([model.aligner.align_tokens(ids[0].tolist())]))
    full = model.generate_from_inputs(inputs, max_new_tokens=6, do_sample=False)
    expected = model.receiver_tokenizer.decode(full[0, ids.shape[1] :], skip_special_tokens=True).split("e")[0]
    assert text == expected and "e" not in text


def test_rolling_loglikelihood_sums_the_windows():
    lm = C2CLM(model=tiny_eval_pair("shared"), max_length=8)
    [total] = lm.loglikelihood_rolling(
        [_request("loglikelihood_rolling", ("The quick brown fox jumps over the lazy dog.",))], disable_tqdm=True
    )
    assert total < 0


def test_an_untrained_c2c_model_is_refused():
    with pytest.raises(ValueError, match="fuser="):
        C2CLM(receiver="smollm2-135m-instruct", sharer="gemma-3-270m")


def test_fusion_control_reaches_the_scores():
    model = tiny_eval_pair("shared")
    request = [_request("loglikelihood", (CONTEXT, CONTINUATION))]
    [(receiver, _)] = C2CLM(model=model, fuse=False).loglikelihood(request, disable_tqdm=True)
    [(c2c, _)] = C2CLM(model=model).loglikelihood(request, disable_tqdm=True)
    for args in ({"fusion_strength": "0.0"}, {"fuse_layers": ""}, {"fuse_proportion": 0}):
        [(score, _)] = C2CLM(model=model, **args).loglikelihood(request, disable_tqdm=True)
        assert score == pytest.approx(receiver, abs=1e-4)
    [(all_layers, _)] = C2CLM(model=model, fuse_layers="0:1:2").loglikelihood(request, disable_tqdm=True)
    assert all_layers == pytest.approx(c2c, abs=1e-4)
    with pytest.raises(ValueError, match="joined by ':'"):
        C2CLM(model=model, fuse_layers="0;1")


def test_pyproject_declares_the_lm_eval_entry_point():
    import tomllib
    from importlib.metadata import EntryPoint

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["lm_eval.models"]
    assert EntryPoint("c2c", declared["c2c"], "lm_eval.models").load() is C2CLM


def test_c2c_lm_eval_runs_lm_evals_own_cli(offline, dirs, tmp_path, capsys):
    import json

    import lm_eval
    from lm_eval.tasks import TaskManager

    from cache2cache.cli.main import main

    code = main(["lm-eval", "--model", "c2c", "--model_args", f"fuser={dirs['fuser']},batch_size=8", "--tasks", "tiny_mc_lm",
                 "--include_path", str(TASKS), "--output_path", str(tmp_path / "out")])  # fmt: skip
    assert code == 0
    assert "tiny_mc_lm" in capsys.readouterr().out  # lm-eval's results table
    [results_file] = (tmp_path / "out").rglob("results_*.json")
    from_cli = json.loads(results_file.read_text())["results"]["tiny_mc_lm"]["acc,none"]
    in_process = lm_eval.simple_evaluate(model=C2CLM(fuser=str(dirs["fuser"]), batch_size=8), tasks=["tiny_mc_lm"],
                                         task_manager=TaskManager(include_path=str(TASKS), include_defaults=False))  # fmt: skip
    assert from_cli == in_process["results"]["tiny_mc_lm"]["acc,none"]


def test_c2c_lm_eval_help_and_errors_come_back_as_exit_codes(capsys):
    from cache2cache.cli.main import main

    assert main(["lm-eval", "--help"]) == 0
    assert "c2c lm-eval --model c2c --model_args fuser=" in capsys.readouterr().out
    assert main(["lm-eval", "run", "--model", "c2c", "--no_such_flag"]) == 2
