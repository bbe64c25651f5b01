"""Training recipes: `load_train_config` reads one, applies `--key value` overrides and checks it all.

`load_train_config(path, overrides)` reads a YAML file, applies overrides (a dotted path such as
`training.learning_rate`, or a leaf name that is unique in the schema such as `learning_rate`) and
checks the result. Every problem is collected, then raised together as one `ConfigError`: unknown
keys (with a "did you mean"), wrong types, bad values, missing data files or model folders, and
models that do not fit each other or the checkpoint being resumed. `validate_recipe` is the same
check for `c2c validate`; `check_files=False` keeps only what can be checked without the files.

The schema is `training.schema` (re-exported here), its value and file checks `training.checks`, and
the reading, overriding and typing `cache2cache.recipe`, which evaluation recipes share. Relative
paths resolve against the current directory. Float fields accept text such as "1e-4".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import recipe
from ..recipe import ConfigError, read_recipe
from .checks import check_train_config, looks_local
from .schema import RECIPE_NAME, DataOptions, DataSource, ModelOptions, OutputOptions, TrainConfig, TrainingOptions

__all__ = [
    "RECIPE_NAME",
    "ConfigError",
    "DataOptions",
    "DataSource",
    "ModelOptions",
    "OutputOptions",
    "TrainConfig",
    "TrainingOptions",
    "check_train_config",
    "load_train_config",
    "looks_local",
    "override_paths",
    "parse_train_config",
    "read_recipe",
    "validate_recipe",
]

COMMAND = "c2c train"


def override_paths() -> dict[str, str]:
    """Every command-line override name -> the dotted recipe path it sets (see `recipe.override_paths`)."""
    return recipe.override_paths(TrainConfig)


def parse_train_config(raw: Mapping[str, Any]) -> tuple[TrainConfig, list[str]]:
    """Build a `TrainConfig` from a raw recipe dict.

    Returns:
        The config (fields with problems keep their defaults) and the structural problems (unknown
        keys, wrong types), without the value and file checks of `check_train_config`.
    """
    return recipe.parse_recipe(TrainConfig, raw)


def load_train_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    check_files: bool = True,
) -> TrainConfig:
    """Read a training recipe, apply overrides and check everything.

    Args:
        path: A YAML recipe; None starts from the defaults (then overrides must name the models
            and data).
        overrides: Dotted paths or unique leaf names -> values (strings are parsed as YAML).
        check_files: Also check files, fetched assets, models and output_dir (see `check_train_config`).

    Returns:
        The validated `TrainConfig`.

    Raises:
        ConfigError: listing every problem found.

    Example:
        >>> cfg = load_train_config("recipes/tiny.yaml", {"max_steps": 5})  # doctest: +SKIP
    """

    def check(config: TrainConfig, raw: Mapping[str, Any]) -> list[str]:
        return check_train_config(config, raw, check_files=check_files)

    return recipe.load_recipe(TrainConfig, path, overrides, check=check, command=COMMAND)


def validate_recipe(raw: Mapping[str, Any], *, source: str, check_files: bool = True) -> list[str]:
    """Every problem of a raw training recipe (the `train` validator of `c2c validate`).

    Args:
        raw: The recipe as read from YAML.
        source: Its name, for messages.
        check_files: Also check files, assets, models and output_dir.

    Returns:
        The problems; empty when the recipe is valid.
    """
    config, problems = parse_train_config(raw)
    return problems + check_train_config(config, raw, check_files=check_files)
