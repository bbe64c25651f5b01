"""`c2c eval`: receiver, sharer, T2T and C2C side by side on the same items (accuracy and latency).

Every field of an eval recipe (`cache2cache.evaluation.config.EvalConfig`) is also a flag; flags
override the recipe given with `--config`, and a run needs no recipe at all. Values are YAML (`null`,
`true`, `5`); list fields also take comma-separated text (`--modes receiver,sharer,t2t`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import USER_ERRORS, add_recipe_arguments, configure_logging, report_error

EXAMPLE = """examples:
  # SmolLM2-135M <- Gemma-3-270M, no fuser: the three baselines on ARC-Easy validation (after `c2c fetch`)
  c2c eval --receiver smollm2-135m-instruct --sharer gemma-3-270m --task arc_easy --split validation \\
      --modes receiver,sharer,t2t --answer_method loglik --limit 50 --output_dir runs/eval/arc_easy

  # a recipe, with overrides; --resume continues an interrupted run
  c2c eval --config recipes/eval/smollm2_gemma3_arc_easy_validation.yaml --latency_items 20
  c2c eval --config recipes/eval/smollm2_gemma3_arc_easy_validation.yaml --resume

  # C2C needs trained fusers: the paper's MMLU-Redux setting (hub access needed)
  c2c eval --config recipes/eval/paper_mmlu_redux.yaml

  # a generic JSONL file ({question, choices, answer} per line) and the list of known tasks
  c2c eval --task my_questions.jsonl --receiver smollm2-135m-instruct --sharer gemma-3-270m --modes receiver,sharer
  c2c eval --list_tasks
"""

_PREFIX = "field:"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config`, `--list_tasks` and one `--<field>` per eval recipe field (help: the field's)."""
    from cache2cache.evaluation.config import EvalConfig

    parser.add_argument("--config", metavar="RECIPE", help="a YAML eval recipe (kind: eval; see recipes/eval/)")
    parser.add_argument("--list_tasks", action="store_true", help="list the known task names and exit")
    group = parser.add_argument_group("run settings (recipe fields; flags override the recipe)")
    add_recipe_arguments(group, EvalConfig, _PREFIX)


def run(args: argparse.Namespace) -> int:
    """Check the config, run every mode, print the results table; returns the exit status."""
    configure_logging()
    if args.list_tasks:
        from cache2cache.tasks import list_tasks

        for name, description in list_tasks().items():
            print(f"{name:32} {description}")
        return 0
    overrides = {key[len(_PREFIX) :]: value for key, value in vars(args).items() if key.startswith(_PREFIX)}
    try:
        from cache2cache.evaluation.config import ITEMS_FILE, load_eval_config
        from cache2cache.evaluation.report import markdown_table, speed_ratios, summarize
        from cache2cache.evaluation.runner import run_eval

        config = load_eval_config(args.config, overrides)
        if (
            "resume" in overrides
            and config.resume
            and not (Path(config.output_dir).expanduser() / ITEMS_FILE).is_file()
        ):
            raise ValueError(
                f"--resume: {config.output_dir!r} holds no run to continue (no {ITEMS_FILE}); drop --resume to start a fresh run"
            )
        result = run_eval(config)
    except USER_ERRORS as err:
        return report_error("eval", err)
    except KeyboardInterrupt:
        print("c2c eval: interrupted; continue with --resume (finished items are kept)", file=sys.stderr)
        return 130
    summaries = summarize(result.records, config.modes)
    print(markdown_table(summaries))
    ratios = speed_ratios(summaries)
    if ratios:
        print("median latency ratios: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    written = [
        name
        for name in ("items.jsonl", "summary.json", "results.md", "results.png")
        if (result.output_dir / name).is_file()
    ]
    print(f"results in {result.output_dir}: {', '.join(written)}")
    return 0
