"""`c2c validate`: check YAML recipes and report every problem of each at once.

A recipe's top-level `kind:` picks its validator in `RECIPE_KINDS`. A validator is a function
`validate_recipe(raw: dict, *, source: str, check_files: bool) -> list[str]` that returns one
message per problem (field, value, expectation and fix); to support a new kind of recipe, add one
line `"<kind>": "<module>:<function>"` here. With `--no_file_checks` only structure and values are
checked (recipes written for another machine, models or data not fetched here).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

from .common import USER_ERRORS, report_error

RECIPE_KINDS: dict[str, str] = {
    "train": "cache2cache.training.config:validate_recipe",
    "eval": "cache2cache.evaluation.config:validate_recipe",
}
"""Recipe kind -> `module:function` of its validator (imported only when used)."""

Validator = Callable[..., list[str]]

EXAMPLE = """examples:
  c2c validate recipes/tiny.yaml
  c2c validate recipes/*.yaml recipes/eval/*.yaml   # several at once; exit status 1 if any has problems
  c2c validate recipes/qwen3-0.6b_qwen2.5-0.5b.yaml --no_file_checks   # models and data live elsewhere
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Recipe paths and `--no_file_checks`."""
    parser.add_argument("recipes", nargs="+", metavar="RECIPE", help="YAML recipe files")
    parser.add_argument(
        "--no_file_checks", action="store_true",
        help="check structure and values only: skip data files, model folders, fetched assets and output_dir",
    )  # fmt: skip


def validator_for(kind: str) -> Validator:
    """The validator registered for `kind`.

    Raises:
        ValueError: no validator is registered for it.
    """
    if kind not in RECIPE_KINDS:
        raise ValueError(f"unknown recipe kind {kind!r}; known kinds: {', '.join(RECIPE_KINDS)}")
    module, function = RECIPE_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), function)


def validate_file(path: str, *, check_files: bool = True) -> tuple[str | None, list[str]]:
    """Validate one recipe file.

    Args:
        path: The YAML file.
        check_files: Also check files, models, fetched assets and output folders.

    Returns:
        `(kind, problems)`; kind is None when the file could not be read or names no known kind.
    """
    from cache2cache.recipe import ConfigError, read_recipe

    try:
        raw: dict[str, Any] = read_recipe(path)
    except ConfigError as err:
        return None, err.problems
    kind = raw.get("kind")
    if kind is None:
        if len(RECIPE_KINDS) != 1:
            return None, [f"kind: missing; add `kind: <{'|'.join(RECIPE_KINDS)}>` at the top"]
        kind = next(iter(RECIPE_KINDS))
    if kind not in RECIPE_KINDS:
        return None, [f"kind: got {kind!r}, expected one of: {', '.join(RECIPE_KINDS)}"]
    return kind, validator_for(kind)(raw, source=path, check_files=check_files)


def run(args: argparse.Namespace) -> int:
    """Validate every recipe given; print OK or its problems; returns 1 if any has problems."""
    failed = 0
    for path in args.recipes:
        try:
            kind, problems = validate_file(path, check_files=not args.no_file_checks)
        except USER_ERRORS as err:
            return report_error("validate", err)
        if problems:
            failed += 1
            count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
            print(f"{path}: {count}:\n  - " + "\n  - ".join(problems))
        else:
            print(f"{path}: OK ({kind} recipe{', files not checked' if args.no_file_checks else ''})")
    return 1 if failed else 0
