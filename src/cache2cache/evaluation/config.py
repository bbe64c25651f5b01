"""`EvalConfig`: an evaluation run (`c2c eval`), from a YAML recipe plus `--key value` overrides.

A recipe is one flat mapping (every key optional except the task and the models):

    kind: eval
    receiver: smollm2-135m-instruct        # models: hub id, folder, .gguf or fetched alias
    sharer: gemma-3-270m
    fuser: null                            # a checkpoint; required by the c2c mode
    task: arc_easy                         # items: see `cache2cache.tasks.load_task`
    split: validation
    modes: [receiver, sharer, t2t]         # receiver | sharer | t2t | self | c2c, side by side
    answer_method: loglik                  # generate (the paper's) | loglik
    output_dir: runs/eval/arc_easy

`load_eval_config(path, overrides)` reads the file, applies the overrides (strings are parsed as YAML;
a list field also takes "a,b,c") and checks everything. Every problem is collected and raised at once
as one `ConfigError` naming the field, the value, what was expected and the fix. `validate_recipe` is
the same check for `c2c validate` (kind `eval`). Reading, overrides and typing are the shared recipe
engine's (`cache2cache.recipe`, as for training recipes); the checks here are eval's own. Each field's
`metadata["help"]` is its `c2c eval --help` line. This module imports no torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from .. import recipe
from ..control import LAYERS_RANGE, PROPORTION_RANGE, STRENGTH_RANGE, valid_layers, valid_proportion, valid_strength
from ..output_dir import output_dir_problem
from ..tasks.prompts import T2T_BACKGROUND_PROMPT, PromptStyle

Mode = Literal["receiver", "sharer", "t2t", "self", "c2c"]
MODES: tuple[Mode, ...] = get_args(Mode)
"""Evaluation modes, in report order. `self` is the paper's cache-enrichment control: C2C's fuser
architecture trained the same way on the receiver's own cache (`self_fuser`)."""
DEFAULT_MODES: tuple[Mode, ...] = ("receiver", "sharer", "t2t", "c2c")
"""The modes a run compares unless told otherwise (`self` needs its own trained fuser)."""
PAPER_RESPONSE_PREFIX = "The correct answer is"
"""The loglik mode's default response prefix with the paper's prompt (docs/method.md §6.4 `response_text`)."""
CONFIG_FILE = "config.yaml"
ITEMS_FILE = "items.jsonl"

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
# Fields that may change between a run and its --resume without changing any finished item's result.
RESUMABLE_CHANGES: frozenset[str] = frozenset(
    {"modes", "limit", "batch_size", "latency_items", "device", "output_dir", "resume", "overwrite"}
)


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class EvalConfig:
    """One evaluation run; each field's `metadata["help"]` is its `c2c eval --help` line."""

    kind: Literal["eval"] = _opt("eval", "recipe kind (always 'eval')")
    receiver: str | None = _opt(
        None, "receiver: hub id, local folder, .gguf or fetched alias (default with --fuser: the recorded one)"
    )
    sharer: str | None = _opt(
        None,
        "sharer: hub id, local folder, .gguf or fetched alias (default with --fuser: the recorded one; "
        "a,b for a checkpoint with several sharers, of which sharer and t2t modes use the first)",
    )
    fuser: str | None = _opt(
        None, "trained fuser checkpoint (folder, published layout or hub id); required by the c2c mode"
    )
    subfolder: str | None = _opt(None, "folder inside --fuser (e.g. qwen3_0.6b+qwen2.5_0.5b_Fuser)")
    self_fuser: str | None = _opt(
        None,
        "fuser checkpoint trained with the receiver as its own sharer (c2c train --sharer <the receiver>); "
        "required by the self mode, the cache-enrichment control",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = _opt(
        "auto",
        "dtype of the models (auto: bfloat16 on a GPU or a CPU with AMX/AVX-512 BF16, float32 on other CPUs (where bf16 is emulated and ~6x slower))",
    )
    device: str = _opt("auto", "torch device: auto (cuda if available), cpu, cuda, cuda:N")
    task: str = _opt("", "task name (see --list_tasks), bigbench:<task>, or a .jsonl / .jsonl.gz file")
    split: str | None = _opt(None, "split of a registered task (default: its first, usually test)")
    subjects: list[str] | None = _opt(None, "keep these subjects only (comma-separated)")
    skip: int = _opt(0, "drop the first N items first (e.g. those a training source with limit: N read)")
    limit: int | None = _opt(None, "keep the first N items")
    sample: int | None = _opt(None, "keep N items drawn with --seed (instead of --limit)")
    seed: int = _opt(0, "seed of --sample")
    data_dir: str | None = _opt(None, "where local benchmark data lives (default: the c2c fetch cache)")
    modes: list[Mode] = field(
        default_factory=lambda: list(DEFAULT_MODES),
        metadata={"help": "comma-separated modes run side by side: receiver, sharer, t2t, self, c2c"},
    )
    answer_method: Literal["generate", "loglik"] = _opt(
        "generate", "generate: greedy reply + answer extraction (the paper's); loglik: rank choices by log-probability"
    )
    loglik_target: Literal["letters", "texts"] = _opt(
        "letters",
        "loglik: score the letters ' A', ' B', ... after the response prefix (docs/method.md §6.4), or each choice's full text (lm-eval style)",
    )
    prompt_style: PromptStyle = _opt(
        "paper",
        "paper: the paper's multiple-choice prompt; plain: the question text alone; listed: the question and its lettered "
        "options, no instructions (plain and listed need loglik_target texts or generate)",
    )
    response_prefix: str | None = _opt(
        None,
        "loglik: text after the generation prompt, before the scored choice (default: 'The correct answer is' for paper prompts, '' for plain and listed)",
    )
    max_new_tokens: int = _opt(64, "generate: most answer tokens (paper: 64)")
    communication_max_new_tokens: int = _opt(256, "t2t: most background tokens the sharer writes (paper: 256)")
    background_prompt: str = _opt(
        T2T_BACKGROUND_PROMPT, "t2t: the sharer's prompt; {question} is the stem without options"
    )
    enable_thinking: bool = _opt(False, "passed to chat templates that read it (Qwen3); off as in the paper")
    fusion_strength: float = _opt(1.0, "c2c: scale every fused delta by this alpha >= 0 (0: receiver alone, 1: C2C)")
    fuse_layers: list[int] | None = _opt(
        None, "c2c: receiver layers to fuse, comma-separated, [] for none (default: every mapped layer)"
    )
    fuse_proportion: float = _opt(
        1.0, "c2c: fuse only the last p in [0, 1] of each prompt's fused tokens (0: receiver alone, 1: C2C)"
    )
    include_response: bool = _opt(
        False,
        "c2c: also fuse the response (generated tokens; the scored continuation in loglik), the sharer reading it",
    )
    ablate_sharer: bool = _opt(
        False,
        "c2c and self: the fusers get the sharer's K/V averaged over each prompt's fused tokens, nothing "
        "token-specific (a test of whether the gain comes from what the sharer read)",
    )
    sharer_context: bool = _opt(
        False,
        "c2c and self: the sharer reads each item's context (SciQ's support passage) before the question, "
        "the receiver the question alone; items without one are plain",
    )
    batch_size: int = _opt(8, "items per batch for untimed items")
    latency_items: int | None = _opt(
        None, "time only the first N items, at batch size 1 (default: all items, all at batch size 1; 0: none)"
    )
    output_dir: str = _opt("runs/eval", "run folder: config.yaml, items.jsonl, summary.json, results.md, results.png")
    resume: bool = _opt(False, "continue a run in output_dir, skipping finished items")
    overwrite: bool = _opt(False, "replace the results of a previous run in output_dir")

    @property
    def response_text(self) -> str:
        """The loglik response prefix in effect (`response_prefix`, or the prompt style's default)."""
        if self.response_prefix is not None:
            return self.response_prefix
        return PAPER_RESPONSE_PREFIX if self.prompt_style == "paper" else ""

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of every field."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The config as YAML (what the run folder's `config.yaml` holds)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=120)


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(EvalConfig) if f.name != "kind")
"""The overridable fields, in recipe order."""


# ----------------------------------------------------------------------------------- parsing


def parse_eval_config(raw: Mapping[str, Any]) -> tuple[EvalConfig, list[str]]:
    """An `EvalConfig` from a raw mapping, and its structural problems (unknown keys, wrong types).

    Fields with problems keep their defaults.
    """
    return recipe.parse_recipe(EvalConfig, raw)


# ------------------------------------------------------------------------------------ checks


def check_eval_config(config: EvalConfig, *, check_files: bool = True) -> list[str]:
    """Every value problem of a parsed config and, with `check_files`, every file problem.

    Args:
        config: The parsed config.
        check_files: Also check that the task's file, the models (fetched aliases, local folders),
            the fuser folder exist and that `output_dir` holds no other run.
    """
    c = config
    problems: list[str] = []
    if not c.task:
        problems.append(
            "task: missing; give a task name (see `c2c eval --list_tasks`), bigbench:<task> or a .jsonl file"
        )
    if not c.modes:
        problems.append(f"modes: empty; name at least one of {', '.join(MODES)}")
    duplicates = sorted({m for m in c.modes if c.modes.count(m) > 1})
    if duplicates:
        problems.append(f"modes: {duplicates} listed more than once; list each mode once")
    if "c2c" in c.modes and not c.fuser:
        problems.append(
            "modes: 'c2c' needs a trained fuser: pass --fuser <checkpoint> (c2c eval never runs untrained fusers), "
            "or drop c2c, e.g. --modes receiver,sharer,t2t"
        )
    if "self" in c.modes and not c.self_fuser:
        problems.append(
            "modes: 'self' needs a fuser trained on the receiver's own cache: pass --self_fuser <checkpoint> "
            "(train it with the same recipe and --sharer set to the receiver), or drop self"
        )
    for role in ("receiver", "sharer"):
        if not getattr(c, role) and not c.fuser:
            problems.append(
                f"{role}: missing; give a hub id, a local folder, a .gguf file or a fetched alias (or --fuser, which records both)"
            )
    if c.subfolder and not c.fuser:
        problems.append("subfolder: a folder inside --fuser; give --fuser too, or drop --subfolder")
    if c.prompt_style != "paper" and c.answer_method == "loglik" and c.loglik_target == "letters":
        problems.append(
            f"loglik_target: 'letters' scores a letter after 'The correct answer is', which only prompt_style 'paper' asks "
            f"for ({c.prompt_style!r} is answered with an option's text); use --loglik_target texts or --prompt_style paper"
        )
    for name in ("batch_size", "max_new_tokens", "communication_max_new_tokens", "limit", "sample"):
        value = getattr(c, name)
        if value is not None and value < 1:
            problems.append(f"{name}: got {value}, expected a positive integer")
    if not valid_strength(c.fusion_strength):
        problems.append(f"fusion_strength: got {c.fusion_strength}, expected {STRENGTH_RANGE}")
    if not valid_proportion(c.fuse_proportion):
        problems.append(f"fuse_proportion: got {c.fuse_proportion}, expected {PROPORTION_RANGE}")
    if c.fuse_layers is not None and not valid_layers(c.fuse_layers):
        problems.append(f"fuse_layers: got {c.fuse_layers}, expected {LAYERS_RANGE}")
    controlled = [
        name
        for name, default in (
            ("fusion_strength", 1.0),
            ("fuse_layers", None),
            ("fuse_proportion", 1.0),
            ("include_response", False),
        )
        if getattr(c, name) != default
    ]
    if controlled and "c2c" not in c.modes:
        problems.append(
            f"{', '.join(controlled)}: control the c2c mode only, which --modes lacks; add c2c to --modes or drop them"
        )
    if c.limit is not None and c.sample is not None:
        problems.append("limit and sample: give either limit (the first N items) or sample (N random items), not both")
    if c.skip < 0:
        problems.append(f"skip: got {c.skip}, expected a number of items >= 0")
    for name in ("sharer_context", "ablate_sharer"):
        if getattr(c, name) and not {"c2c", "self"} & set(c.modes):
            problems.append(f"{name}: applies to the c2c and self modes, which --modes lacks; add one or drop it")
    if c.ablate_sharer and c.include_response:
        problems.append("ablate_sharer and include_response: the ablation averages the prompt's sharer cache; use one")
    if c.latency_items is not None and c.latency_items < 0:
        problems.append(f"latency_items: got {c.latency_items}, expected >= 0 (0 times no item; null times every item)")
    if "{question}" not in c.background_prompt:
        problems.append("background_prompt: must contain '{question}' (where the question stem goes)")
    if not _DEVICE.match(c.device):
        problems.append(f"device: got {c.device!r}, expected auto, cpu, mps, cuda or cuda:N")
    if c.subjects is not None and not c.subjects:
        problems.append("subjects: empty; name at least one subject, or null for all")
    if c.resume and c.overwrite:
        problems.append("resume and overwrite: choose one (resume keeps finished items, overwrite discards them)")
    if not c.output_dir:
        problems.append("output_dir: empty; give the run folder, e.g. runs/eval/arc_easy")
    if check_files:
        problems += _file_problems(c)
    return problems


def _file_problems(c: EvalConfig) -> list[str]:
    from .. import assets
    from ..tasks import list_tasks

    problems: list[str] = []
    registered = [name for name in list_tasks() if "<" not in name]
    if c.task and c.task not in registered and not c.task.startswith(("bigbench:", "oe_eval:")):
        if not Path(c.task).expanduser().is_file():
            close = difflib.get_close_matches(c.task, registered, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            problems.append(
                f"task: {c.task!r} is neither a known task{hint} nor an existing file; see `c2c eval --list_tasks`"
            )
        elif c.split is not None:
            problems.append(f"split: {c.task!r} is a file and has no splits; drop split")
    sharers = (c.sharer or "").split(",")  # several for a multi-sharer checkpoint
    for role, name in (("receiver", c.receiver), *(("sharer", name.strip()) for name in sharers)):
        if name and name in assets.ASSETS and not assets.is_fetched(name):
            problems.append(f"{role}: {name!r} is not fetched; run `c2c fetch {name}`")
        elif name and _path_like(name) and not Path(name).expanduser().exists():
            problems.append(f"{role}: {name!r} does not exist (relative paths resolve against {Path.cwd()})")
    for name in ("fuser", "self_fuser"):
        path = getattr(c, name)
        if path and _path_like(path) and not Path(path).expanduser().exists():
            problems.append(f"{name}: {path!r} does not exist (relative paths resolve against {Path.cwd()})")
    unusable = output_dir_problem(c.output_dir) if c.output_dir else None
    if unusable:
        problems.append(f"output_dir: {unusable}; choose another --output_dir")
    items = Path(c.output_dir).expanduser() / ITEMS_FILE
    if items.is_file() and items.stat().st_size and not (c.resume or c.overwrite):
        problems.append(
            f"output_dir: {c.output_dir!r} already holds a run ({ITEMS_FILE}); continue it with --resume, "
            "replace it with --overwrite, or choose another --output_dir"
        )
    return problems


def _path_like(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name.endswith(".gguf") or name.count("/") > 1


# ----------------------------------------------------------------------------------- loading


def load_eval_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    check_files: bool = True,
) -> EvalConfig:
    """Read an eval recipe, apply overrides and check everything.

    Args:
        path: A YAML recipe (`kind: eval`); None starts from the defaults.
        overrides: Field name -> value; strings are parsed as YAML, list fields also take "a,b".
        check_files: Also check the task file, models, fuser and output_dir (see `check_eval_config`).

    Returns:
        The validated `EvalConfig`.

    Raises:
        ConfigError: listing every problem found.

    Example:
        >>> cfg = load_eval_config("recipes/eval/smollm2_gemma3_arc_easy_validation.yaml", {"limit": "20"})  # doctest: +SKIP
    """

    def check(config: EvalConfig, raw: Mapping[str, Any]) -> list[str]:
        return check_eval_config(config, check_files=check_files)

    return recipe.load_recipe(EvalConfig, path, overrides, check=check, command="c2c eval", noun="eval")


def validate_recipe(raw: Mapping[str, Any], *, source: str, check_files: bool = True) -> list[str]:
    """Every problem of a raw eval recipe (the `eval` validator of `c2c validate`).

    Args:
        raw: The recipe as read from YAML.
        source: Its name, for messages.
        check_files: Also check task files, models, the fuser and output_dir.

    Returns:
        The problems; empty when the recipe is valid.
    """
    config, problems = parse_eval_config(raw)
    return problems + check_eval_config(config, check_files=check_files)
