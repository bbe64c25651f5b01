"""The recipe engine: a YAML file, `--key value` overrides and a typed dataclass schema, checked at once.

Training (`training.config.TrainConfig`) and evaluation (`evaluation.config.EvalConfig`) recipes are
both a tree of dataclasses read through this one module:

    raw = read_recipe("recipes/tiny.yaml")                       # the YAML mapping
    problems = apply_overrides(raw, {"learning_rate": "3e-4"}, TrainConfig, command="c2c train")
    config, structural = parse_recipe(TrainConfig, raw)          # typed, bad fields keep their defaults

or all of it in one call, `load_recipe(TrainConfig, path, overrides, check=..., command=...)`, which
raises one `ConfigError` listing every problem: unknown keys (with a "did you mean"), wrong types and
whatever the schema's own `check` finds. Values are checked against the field annotations: `bool`,
`int`, `float`, `str`, `Literal[...]`, `X | None`, `list[X]` and nested dataclasses. A float field also
takes text such as `"1e-4"` (YAML 1.1 reads that as a string); a list of scalars also takes
comma-separated text (`"receiver,sharer"`). An override is named by its dotted path
(`training.learning_rate`) or, when unique in the schema, by its leaf name (`learning_rate`).

Each field's help text (`field_docs`) is its `metadata["help"]`, or else its entry in the Google-style
`Attributes:` section of its class docstring; the command-line flags take their help from there.
This module imports no torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

Schema = TypeVar("Schema")
_MISSING: Any = dataclasses.MISSING
_INTEGER = re.compile(r"-?\d+")


class ConfigError(ValueError):
    """A recipe has problems; `problems` lists each one (field, value, expectation and fix)."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        if len(problems) == 1:  # one problem, one line
            super().__init__(f"{source}: {problems[0]}")
        else:
            super().__init__(f"{source}: {len(problems)} problems:\n  - " + "\n  - ".join(problems))


# ------------------------------------------------------------------------------------------ reading


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The raw dict of a YAML recipe file.

    Raises:
        ConfigError: the file is missing, is not YAML, or is not a mapping.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(str(path), ["is a folder, not a recipe; give the .yaml file (see recipes/)"])
    if not path.is_file():
        raise ConfigError(str(path), [f"recipe file not found (relative paths resolve against {Path.cwd()})"])
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(
            str(path), [f"not valid YAML{where}: {what}; fix the file there (indentation, brackets, quotes)"]
        ) from err
    except UnicodeDecodeError as err:
        raise ConfigError(
            str(path), [f"not UTF-8 text (byte {err.start}: {err.reason}); save the recipe as UTF-8"]
        ) from err
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(str(path), [f"the top level must be a mapping of sections, got {type(raw).__name__}"])
    return raw


# ------------------------------------------------------------------------------------------- schema


def _leaves(schema: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field[Any], Any, type]]:
    """`(dotted path, field, annotation, owning class)` of every non-dataclass field, `kind` aside."""
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):  # type: ignore[arg-type]
        if f.name == "kind":
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _leaves(tp, f"{prefix}{f.name}.")  # type: ignore[arg-type]
        else:
            yield f"{prefix}{f.name}", f, tp, schema


def override_paths(schema: type) -> dict[str, str]:
    """Every override name of `schema` -> the dotted recipe path it sets.

    Each scalar or list field is reachable by its dotted path (`training.learning_rate`), and by its
    leaf name alone when that name is unique in the schema (`learning_rate`). Lists of dataclasses are
    set whole, as YAML (`--data.train '[{type: chat, path: a.jsonl}]'`).
    """
    paths = [path for path, *_ in _leaves(schema)]
    by_leaf: dict[str, list[str]] = {}
    for path in paths:
        by_leaf.setdefault(path.rsplit(".", 1)[-1], []).append(path)
    names = {path: path for path in paths}
    names.update({leaf: found[0] for leaf, found in by_leaf.items() if len(found) == 1 and leaf not in names})
    return names


def field_annotations(schema: type) -> dict[str, Any]:
    """Dotted path -> annotation of every leaf field (as in `override_paths`)."""
    return {path: tp for path, _, tp, _ in _leaves(schema)}


def field_docs(schema: type) -> dict[str, str]:
    """Dotted path -> help text of every leaf field: `metadata["help"]`, else the class docstring's
    `Attributes:` entry (whitespace joined to one line); fields documented nowhere are left out."""
    docs: dict[str, str] = {}
    attributes: dict[type, dict[str, str]] = {}
    for path, f, _, owner in _leaves(schema):
        if owner not in attributes:
            attributes[owner] = _attribute_docs(owner)
        text = f.metadata.get("help") or attributes[owner].get(f.name)
        if text:
            docs[path] = text
    return docs


def _attribute_docs(cls: type) -> dict[str, str]:
    """The `name: text` entries of a Google-style `Attributes:` docstring section."""
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    if "Attributes:" not in lines:
        return {}
    docs: dict[str, str] = {}
    name = None
    for line in lines[lines.index("Attributes:") + 1 :]:
        if line and not line.startswith(" "):
            break  # the next section
        entry = re.match(r"^ {4}(\w+): (.*)$", line)
        if entry:
            name = entry[1]
            docs[name] = entry[2].strip()
        elif name and line.strip():
            docs[name] += " " + line.strip()
    return docs


def type_name(tp: Any) -> str:
    """What a value of annotation `tp` looks like, in words: "an integer", "one of 'a', 'b'", ..."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        named = " or ".join(type_name(a) for a in args if a is not type(None))
        return named + " or null" if type(None) in args else named
    if origin is list:
        return f"a list of {type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _strip_none(tp: Any) -> Any:
    """`X` for `X | None`; `tp` itself otherwise."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return tp


def _is_scalar(tp: Any) -> bool:
    tp = _strip_none(tp)
    return tp in (bool, int, float, str) or typing.get_origin(tp) is Literal


# ------------------------------------------------------------------------------------------ parsing


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _closest(value: Any, choices: typing.Iterable[Any]) -> str | None:
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return close[0] if close else None


def _convert(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    """`value` checked against the annotation `tp`; on a mismatch a problem is recorded and
    `dataclasses.MISSING` returned (so the field keeps its default)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, path, problems)
        for option in inner:  # the first member the value fits
            attempt: list[str] = []
            converted = _convert(option, value, path, attempt)
            if not attempt:
                return converted
    elif origin is Literal:
        if value in args:
            return value
        close = _closest(value, args)
        hint = f"; did you mean {close!r}?" if close else ""
        problems.append(f"{path}: got {_describe(value)}, expected {type_name(tp)}{hint}")
        return _MISSING
    elif origin is list:
        return _convert_list(tp, value, path, problems)
    elif dataclasses.is_dataclass(tp):
        return _parse_dataclass(tp, value, path, problems)  # type: ignore[arg-type]
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any or (isinstance(tp, type) and isinstance(value, tp)):
        return value
    problems.append(f"{path}: got {_describe(value)}, expected {type_name(tp)}")
    return _MISSING


def _convert_list(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    """A list field: comma-separated text is split for scalar items; Literal items that do not fit
    are named together, and the items that fit are kept (later checks then see no stale default)."""
    (item_type,) = typing.get_args(tp)
    if isinstance(value, str) and _is_scalar(item_type):
        value = [part.strip() for part in value.split(",") if part.strip()]
        if _strip_none(item_type) in (int, float):
            value = [int(part) if _INTEGER.fullmatch(part) else part for part in value]
    if not isinstance(value, list):
        problems.append(f"{path}: got {_describe(value)}, expected {type_name(tp)}")
        return _MISSING
    if typing.get_origin(item_type) is Literal:
        choices = typing.get_args(item_type)
        bad = [v for v in value if v not in choices]
        if bad:
            hints = "".join(f"; {v!r}: did you mean {c!r}?" for v in bad if (c := _closest(v, choices)))
            problems.append(f"{path}: {', '.join(repr(v) for v in bad)} not allowed, expected {type_name(tp)}{hints}")
        return [v for v in value if v in choices]
    items = [_convert(item_type, v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    return [v for v in items if v is not _MISSING]


def _parse_dataclass(cls: type, data: Any, path: str, problems: list[str]) -> Any:
    """Build `cls` from a mapping, recording unknown keys and type errors; bad fields keep defaults."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        problems.append(f"{path or 'the recipe'}: got {_describe(data)}, expected a mapping of {', '.join(names)}")
        return cls()
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"{key_path}: unknown key; {hint}valid keys{' here' if path else ''}: {', '.join(names)}")
            continue
        converted = _convert(hints[key], value, key_path, problems)
        if converted is not _MISSING:
            values[key] = converted
    return cls(**values)


def parse_recipe(schema: type[Schema], raw: Mapping[str, Any]) -> tuple[Schema, list[str]]:
    """`schema` built from a raw recipe mapping, and its structural problems (unknown keys, wrong types).

    Fields with problems keep their defaults; value checks are the schema's own (see `load_recipe`).
    """
    problems: list[str] = []
    return _parse_dataclass(schema, raw, "", problems), problems


# ---------------------------------------------------------------------------------------- overrides


def apply_overrides(
    raw: dict[str, Any], overrides: Mapping[str, Any], schema: type, *, command: str, noun: str = "recipe"
) -> list[str]:
    """Set `overrides` (dotted path or unique leaf name -> value) in the raw recipe dict, in place.

    Text is read as YAML (`null`, `true`, `3`, `[a, b]`, `{k: v}`), except that a string field keeps
    the text as typed and a list field keeps text that is not a YAML list (to be split at commas).
    Python values are set as they are. Types are checked later, by `parse_recipe`.

    Args:
        raw: The recipe mapping, changed in place.
        overrides: Override name -> value.
        schema: The recipe's dataclass.
        command: The command whose `--help` lists the fields, for the message on an unknown name.
        noun: What the message calls a field ("no such <noun> field").

    Returns:
        One problem per unknown override name.
    """
    problems = []
    known = override_paths(schema)
    annotations = field_annotations(schema)
    for name, value in overrides.items():
        path = known.get(name)
        if path is None:
            close = difflib.get_close_matches(name, list(known), n=3)
            hint = f"; did you mean {', '.join('--' + c for c in close)}?" if close else ""
            problems.append(f"override --{name}: no such {noun} field{hint} (see `{command} --help`)")
            continue
        if isinstance(value, str):
            value = _read_text(value, _strip_none(annotations[path]))
        node = raw
        *parents, leaf = path.split(".")
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[leaf] = value
    return problems


def _read_text(text: str, tp: Any) -> Any:
    """Command-line text for a field of annotation `tp` (without its `| None`)."""
    if not text.strip():
        return text
    if text.strip() in ("null", "~"):
        return None
    if tp is str:
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # the type check reports it if text is wrong here
    if typing.get_origin(tp) is list and not isinstance(value, list):
        return text
    return value


# ------------------------------------------------------------------------------------------ loading


def load_recipe(
    schema: type[Schema],
    path: str | Path | None,
    overrides: Mapping[str, Any] | None,
    *,
    check: Callable[[Schema, Mapping[str, Any]], list[str]],
    command: str,
    noun: str = "recipe",
) -> Schema:
    """Read a YAML recipe, apply overrides, parse it into `schema` and run its value checks.

    Args:
        schema: The recipe's dataclass; its `kind` field's default is the kind of recipe it reads.
        path: The YAML file; None starts from the defaults.
        overrides: Override name -> value (see `apply_overrides`).
        check: The schema's value (and file) checks: `(config, raw) -> problems`.
        command: The command reading it, e.g. "c2c train" (named in messages).
        noun: What messages call a field (see `apply_overrides`).

    Returns:
        The parsed recipe.

    Raises:
        ConfigError: listing every problem found; at once, when the file is of another kind.
    """
    source = str(path) if path is not None else "<command line>"
    raw = read_recipe(path) if path is not None else {}
    kind = next((f.default for f in dataclasses.fields(schema) if f.name == "kind"), None)  # type: ignore[arg-type]
    if kind is not None and raw.get("kind", kind) != kind:
        raise ConfigError(source, [f"kind: got {raw.get('kind')!r}; `{command}` reads {kind} recipes (kind: {kind})"])
    problems = apply_overrides(raw, overrides or {}, schema, command=command, noun=noun)
    config, structural = parse_recipe(schema, raw)
    problems += structural + check(config, raw)
    if problems:
        raise ConfigError(source, problems)
    return config
