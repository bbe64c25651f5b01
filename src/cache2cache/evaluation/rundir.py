"""The run folder of `c2c eval`: resolved config, per-item records (resumable) and reports.

    <output_dir>/
      config.yaml     the resolved EvalConfig
      items.jsonl     one record per (mode, item), appended as batches finish
      summary.json    per-mode accuracy, CI, latency medians/p90, stage medians, groups, speed ratios
      results.md      the markdown report (`report.write_markdown`)
      results.png     accuracy and latency per mode (`report.plot_summary`)

`--resume` reloads `items.jsonl` and skips its (mode, item id) pairs; it refuses a config that differs
in a field that changes results (the task, models, prompts, answer method, ...), since old and new
records would not be comparable. A field that only some modes read (`MODE_FIELDS`: a fuser
checkpoint, the T2T background settings, the fusion controls) may be given or changed while the
folder holds no record of those modes, so baselines run first can be joined by C2C later (`--resume
--fuser ... --modes receiver,sharer,c2c`), and a sharer-alone run can be resumed with another
`--communication_max_new_tokens`. A last line cut short by an
interruption is dropped with a warning.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .config import CONFIG_FILE, ITEMS_FILE, RESUMABLE_CHANGES, EvalConfig
from .report import speed_ratios, summarize, write_chart, write_markdown

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
MARKDOWN_FILE = "results.md"
CHART_FILE = "results.png"

_FUSED = frozenset({"c2c", "self"})
MODE_FIELDS: dict[str, frozenset[str]] = {
    "fuser": frozenset({"c2c"}),
    "subfolder": frozenset({"c2c"}),
    "self_fuser": frozenset({"self"}),
    "communication_max_new_tokens": frozenset({"t2t"}),
    "background_prompt": frozenset({"t2t"}),
    **dict.fromkeys(
        ("fusion_strength", "fuse_layers", "fuse_proportion", "include_response", "ablate_sharer", "sharer_context"),
        _FUSED,
    ),
}
"""Config fields that change only some modes' records -> those modes."""


class RunFolder:
    """Reads and writes one run folder.

    Args:
        path: The folder (created when opened).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.items_path = self.path / ITEMS_FILE
        self._done: dict[tuple[str, str], dict[str, Any]] = {}

    def open(self, config: EvalConfig) -> dict[tuple[str, str], dict[str, Any]]:
        """Prepare the folder for `config`; returns the finished records by (mode, item id).

        Raises:
            ValueError: The folder holds a run and neither resume nor overwrite is set, or the
                resumed run's config differs in a field that changes results.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        existing = self.items_path.is_file() and self.items_path.stat().st_size > 0
        if existing and not (config.resume or config.overwrite):
            raise ValueError(
                f"{self.path} already holds a run ({ITEMS_FILE}); continue it with --resume, replace it with --overwrite, "
                "or choose another --output_dir"
            )
        if config.overwrite:
            for name in (ITEMS_FILE, SUMMARY_FILE, MARKDOWN_FILE, CHART_FILE):
                (self.path / name).unlink(missing_ok=True)
        elif config.resume and existing:
            done = self._load()
            self._check_resumable(config, {mode for mode, _ in done})
            self._done = done
            logger.info("resuming %s: %d finished records", self.path, len(self._done))
        (self.path / CONFIG_FILE).write_text(config.to_yaml(), encoding="utf-8")
        return dict(self._done)

    def _check_resumable(self, config: EvalConfig, recorded_modes: set[str]) -> None:
        saved_path = self.path / CONFIG_FILE
        if not saved_path.is_file():
            raise ValueError(
                f"cannot resume {self.path}: {CONFIG_FILE} is missing, so its records cannot be checked; use --overwrite"
            )
        saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
        now = config.to_dict()
        # A field a run folder predates had its default value in that run.
        saved = {**EvalConfig().to_dict(), **saved}
        free = {name for name, modes in MODE_FIELDS.items() if not modes & recorded_modes}
        changed = [k for k in now if k not in RESUMABLE_CHANGES | free and saved.get(k) != now[k]]
        if changed:
            diffs = "; ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
            raise ValueError(
                f"cannot resume {self.path}: the config changed in fields that change results ({diffs}). "
                "Resume with the same settings, or use --overwrite / another --output_dir"
            )

    def _load(self) -> dict[tuple[str, str], dict[str, Any]]:
        lines = self.items_path.read_text(encoding="utf-8").splitlines()
        done: dict[tuple[str, str], dict[str, Any]] = {}
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                if number == len(lines):
                    logger.warning("%s: dropping its last line, cut short by an interruption", self.items_path)
                    self.items_path.write_text("".join(x + "\n" for x in lines[:-1]), encoding="utf-8")
                    break
                raise ValueError(
                    f"{self.items_path}:{number} is not valid JSON ({err.msg}); fix or delete the line, or use --overwrite"
                ) from err
            done[(record["mode"], record["id"])] = record
        return done

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Append records to `items.jsonl` (flushed, so an interruption loses at most this batch)."""
        with self.items_path.open("a", encoding="utf-8") as sink:
            for record in records:
                sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                self._done[(record["mode"], record["id"])] = record

    def records(self, modes: Sequence[str], ids: Sequence[str]) -> list[dict[str, Any]]:
        """The records of these modes and items, mode by mode in item order (missing ones skipped)."""
        return [self._done[(m, i)] for m in modes for i in ids if (m, i) in self._done]

    def write_reports(self, config: EvalConfig, records: list[dict[str, Any]], n_items: int) -> dict[str, Any]:
        """Write `summary.json`, `results.md` and `results.png` (skipped, with a warning, without matplotlib); returns the summary."""
        summaries = summarize(records, config.modes)
        summary = {
            "task": config.task,
            "split": config.split,
            "n_items": n_items,
            "modes": [s.to_dict() for s in summaries],
            "speed_ratios": speed_ratios(summaries),
            "config": config.to_dict(),
        }
        (self.path / SUMMARY_FILE).write_text(
            json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        title = f"{config.task}" + (f" ({config.split})" if config.split else "") + f": {n_items} items"
        write_markdown(summaries, self.path / MARKDOWN_FILE, title=title, extra_sections={"Setup": setup_text(config)})
        write_chart(summaries, self.path / CHART_FILE, title=title)
        return summary


def setup_text(config: EvalConfig) -> str:
    """A markdown list of the settings that shape the numbers."""
    c = config
    method = (
        c.answer_method
        if c.answer_method == "generate"
        else f"loglik ({c.loglik_target}, response prefix {c.response_text!r})"
    )
    timed = "every item" if c.latency_items is None else f"the first {c.latency_items} items"
    lines = [
        f"- receiver: `{c.receiver}`; sharer: `{c.sharer}`; fuser: `{c.fuser}`; dtype {c.dtype}, device {c.device}",
        f"- answer method: {method}; prompt style: {c.prompt_style}",
        f"- generation: greedy, max_new_tokens {c.max_new_tokens}; T2T background: greedy, at most {c.communication_max_new_tokens} tokens",
        f"- latency: {timed} timed at batch size 1 (perf_counter, no warm-up); the rest batched by {c.batch_size}",
    ]
    return "\n".join(lines)
