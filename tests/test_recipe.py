"""The one recipe engine (`cache2cache.recipe`) behind training and evaluation recipes: both read the
same values the same way, every problem is a `ConfigError`, Literal fields are checked once, and the
flags' help comes from the schema."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from cache2cache import recipe
from cache2cache.cli.main import main
from cache2cache.config import C2CConfig, FuserConfig
from cache2cache.evaluation.config import load_eval_config, parse_eval_config
from cache2cache.training.config import ConfigError, load_train_config, parse_train_config


def test_float_text_parses_in_both_recipes(tmp_path) -> None:
    train, problems = parse_train_config({"training": {"learning_rate": "1e-4"}})
    assert problems == [] and train.training.learning_rate == 1e-4
    evaluation, problems = parse_eval_config({"fusion_strength": "5e-1", "fuse_proportion": "2.5e-1"})
    assert problems == [] and (evaluation.fusion_strength, evaluation.fuse_proportion) == (0.5, 0.25)
    recipe_file = tmp_path / "eval.yaml"
    recipe_file.write_text("kind: eval\nfusion_strength: 1e-1\n")  # YAML 1.1 reads 1e-1 as a string
    cfg = load_eval_config(recipe_file, {"receiver": "a/r", "sharer": "a/s", "task": "arc_easy", "fuser": "a/f",
                                         "modes": "c2c", "output_dir": str(tmp_path / "out")}, check_files=False)  # fmt: skip
    assert cfg.fusion_strength == pytest.approx(0.1)
    assert parse_eval_config({"fusion_strength": "strong"})[1] == [
        "fusion_strength: got 'strong' (str), expected a number"
    ]


@dataclass
class _Odd:
    """A schema with an annotation the engine has no rule for."""

    kind: str = "odd"
    table: dict[str, int] = field(default_factory=dict)


def test_an_annotation_without_a_rule_is_a_config_error_not_a_type_error() -> None:
    with pytest.raises(ConfigError) as caught:
        recipe.load_recipe(_Odd, None, {"table": "[1, 2]"}, check=lambda config, raw: [], command="c2c odd")
    assert caught.value.problems == ["table: got [1, 2] (list), expected dict[str, int]"]


def test_literal_fields_are_checked_once_by_the_engine() -> None:
    _, problems = parse_train_config({"model": {"layer_map": "deep", "fuser": {"anneal_schedule": "cosine"}}})
    assert problems == [
        "model.layer_map: got 'deep' (str), expected one of 'terminal', 'depth'; did you mean 'depth'?",
        "model.fuser.anneal_schedule: got 'cosine' (str), expected one of 'geometric', 'linear'",
    ]
    assert FuserConfig(anneal_schedule="cosine").problems("fuser.") == [  # type: ignore[arg-type]
        "fuser.anneal_schedule: got 'cosine', expected one of 'geometric', 'linear'"
    ]


def test_saved_configs_check_their_literal_fields() -> None:
    fingerprint = {"name_or_path": "m", "model_type": "llama", "num_hidden_layers": 2, "num_key_value_heads": 1,
                   "head_dim": 8, "vocab_size": 10}  # fmt: skip
    saved = {"receiver": fingerprint, "sharer": fingerprint, "fuser": {}, "layer_map": {"0": 0, "1": 1},
             "format_version": 1}  # fmt: skip
    assert C2CConfig.from_dict(saved).layer_map_name == "custom"
    for key, value in (("alignment_strategy", "middle"), ("layer_map_name", "diagonal")):
        with pytest.raises(ValueError, match=rf"{key}: got '{value}', expected one of"):
            C2CConfig.from_dict({**saved, key: value})


def test_lists_of_scalars_take_commas_and_text_fields_keep_text(tmp_path) -> None:
    train, problems = parse_train_config({"output": {"report_to": "tensorboard, wandb"}})
    assert problems == [] and train.output.report_to == ["tensorboard", "wandb"]
    raw: dict = {}
    assert recipe.apply_overrides(raw, {"run_name": "123", "more_sharers": "a/b,c/d", "keep_last": "null"},
                                  type(train), command="c2c train") == []  # fmt: skip
    config, problems = parse_train_config(raw)
    assert problems == [] and (config.output.run_name, config.model.more_sharers) == ("123", ["a/b", "c/d"])
    assert config.output.keep_last is None
    evaluation, problems = parse_eval_config({"fuse_layers": "0, 2", "modes": "receiver,sharer,bogus"})
    assert evaluation.fuse_layers == [0, 2] and evaluation.modes == ["receiver", "sharer"]
    assert problems == [
        "modes: 'bogus' not allowed, expected a list of one of 'receiver', 'sharer', 't2t', 'self', 'c2c'"
    ]


def test_a_recipe_of_another_kind_is_refused_by_name(tmp_path) -> None:
    other = tmp_path / "eval.yaml"
    other.write_text("kind: eval\ntask: arc_easy\n")
    with pytest.raises(ConfigError, match=r"kind: got 'eval'; `c2c train` reads train recipes \(kind: train\)"):
        load_train_config(other)


def test_field_docs_come_from_metadata_or_the_attributes_section() -> None:
    from cache2cache.evaluation.config import EvalConfig
    from cache2cache.training.config import TrainConfig

    train = recipe.field_docs(TrainConfig)
    assert train["training.learning_rate"] == "Peak AdamW learning rate."
    assert train["model.fuser.hidden_dim"].startswith("Fuser width h")
    assert train["training.max_grad_norm"] == "Gradient clipping norm (0 disables clipping)."
    assert set(train) == set(recipe.field_annotations(TrainConfig)), "every training field is documented"
    evaluation = recipe.field_docs(EvalConfig)
    assert set(evaluation) == set(recipe.override_paths(EvalConfig)), "every eval field has help"


def test_recipe_flags_show_the_field_docs(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--training.learning_rate VALUE Peak AdamW learning rate. (also --learning_rate)" in out
    assert "--output.overwrite [VALUE]" in out  # a bool field also works bare
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--hidden_dim HIDDEN_DIM Fuser width h (published: 1024)." in out
