"""EvalConfig: YAML + `--key value` overrides, every problem collected, the recipes in recipes/eval."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cache2cache.evaluation.config import EvalConfig, load_eval_config, validate_recipe
from cache2cache.training.config import ConfigError, read_recipe

ROOT = Path(__file__).resolve().parents[1]
TASK = str(ROOT / "tests" / "fixtures" / "eval" / "tiny_mc.jsonl")
RECIPES = sorted((ROOT / "recipes" / "eval").glob("*.yaml"))
MODELS = {"receiver": "some/receiver", "sharer": "some/sharer"}


def test_overrides_are_parsed_as_yaml_and_lists_take_commas(tmp_path):
    cfg = load_eval_config(None, {
        **MODELS, "task": TASK, "modes": "receiver, sharer,t2t", "limit": "5", "resume": "true", "response_prefix": "",
        "subjects": "math,physics", "latency_items": "null", "background_prompt": "Context for: {question}",
        "output_dir": str(tmp_path),
    })  # fmt: skip
    assert cfg.modes == ["receiver", "sharer", "t2t"] and cfg.limit == 5 and cfg.resume is True
    assert cfg.response_prefix == "" and cfg.response_text == "" and cfg.subjects == ["math", "physics"]
    assert cfg.latency_items is None and cfg.background_prompt == "Context for: {question}"


def test_a_recipe_is_read_and_flags_override_it(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        yaml.safe_dump({"kind": "eval", **MODELS, "task": TASK, "modes": ["receiver"], "max_new_tokens": 8})
    )
    cfg = load_eval_config(recipe, {"max_new_tokens": "16", "output_dir": str(tmp_path / "out")})
    assert (cfg.modes, cfg.max_new_tokens, cfg.response_text) == (["receiver"], 16, "The correct answer is")


def test_every_problem_is_reported_at_once(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(yaml.safe_dump({
        "kind": "eval", "task": "arc_esay", "modes": ["receiver", "c2c", "c2c"], "answer_method": "logits",
        "prompt_style": "plain", "answer_method_typo": 1, "batch_size": 0, "limit": 3, "sample": 3, "device": "gpu",
        "background_prompt": "no placeholder", "output_dir": str(tmp_path / "out"),
    }))  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_eval_config(recipe, {"max_new_token": "3"})
    text = str(caught.value)
    for expected in (
        "--max_new_token: no such eval field; did you mean --max_new_tokens",
        "answer_method_typo: unknown key; did you mean 'answer_method'",
        "answer_method: got 'logits' (str), expected one of 'generate', 'loglik'; did you mean 'loglik'",
        "modes: ['c2c'] listed more than once",
        "'c2c' needs a trained fuser: pass --fuser",
        "receiver: missing", "sharer: missing",
        "batch_size: got 0", "give either limit", "device: got 'gpu'", "background_prompt: must contain '{question}'",
        "task: 'arc_esay' is neither a known task (did you mean arc_easy",
    ):  # fmt: skip
        assert expected in text, f"{expected!r} not in:\n{text}"


@pytest.mark.parametrize("style", ["plain", "listed"])
def test_only_paper_prompts_can_score_letters(style):
    cfg = EvalConfig(**MODELS, task=TASK, prompt_style=style, answer_method="loglik", loglik_target="letters")
    with pytest.raises(ConfigError, match=f"loglik_target: 'letters' .* only prompt_style 'paper'.*{style!r}.*texts"):
        load_eval_config(None, {k: v for k, v in cfg.to_dict().items() if k != "kind"})


def test_a_finished_run_in_output_dir_needs_resume_or_overwrite(tmp_path):
    (tmp_path / "items.jsonl").write_text('{"mode": "receiver", "id": "q1"}\n')
    overrides = {**MODELS, "task": TASK, "modes": "receiver", "output_dir": str(tmp_path)}
    with pytest.raises(ConfigError, match="already holds a run.*--resume.*--overwrite"):
        load_eval_config(None, overrides)
    assert load_eval_config(None, {**overrides, "resume": "true"}).resume
    with pytest.raises(ConfigError, match="choose one"):
        load_eval_config(None, {**overrides, "resume": "true", "overwrite": "true"})


def test_missing_files_are_named(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_eval_config(None, {"receiver": "./nowhere/receiver", "sharer": "gemma-3-270m", "task": str(tmp_path / "missing.jsonl"),
                                "modes": "receiver", "output_dir": str(tmp_path)})  # fmt: skip
    assert "missing.jsonl' is neither a known task" in str(caught.value)
    assert "receiver: './nowhere/receiver' does not exist" in str(caught.value)


def test_oe_eval_and_bigbench_task_names_pass_the_file_checks(tmp_path):
    """They are resolved when the items load (a missing asset is reported there), not refused as unknown."""
    for task in ("oe_eval:sciq/rc_0shot", "bigbench:physics"):
        cfg = load_eval_config(None, {**MODELS, "task": task, "modes": "receiver", "skip": "800",
                                      "output_dir": str(tmp_path / task.replace(":", "_").replace("/", "_"))})  # fmt: skip
        assert (cfg.task, cfg.skip) == (task, 800)


def test_a_train_recipe_is_not_an_eval_recipe(tmp_path):
    recipe = tmp_path / "train.yaml"
    recipe.write_text("kind: train\n")
    with pytest.raises(ConfigError, match="kind: got 'train'"):
        load_eval_config(recipe)


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_every_eval_recipe_is_valid(recipe):
    raw = read_recipe(recipe)
    assert raw["kind"] == "eval"
    assert validate_recipe(raw, source=str(recipe), check_files=False) == []


def test_c2c_validate_knows_eval_recipes():
    from cache2cache.cli import validate

    if "eval" not in validate.RECIPE_KINDS:
        pytest.skip(
            'cli/validate.py does not register kind "eval" yet: add "eval": "cache2cache.evaluation.config:validate_recipe"'
        )
    kind, problems = validate.validate_file(str(RECIPES[0]), check_files=False)
    assert (kind, problems) == ("eval", [])
