"""`c2c lm-eval`: EleutherAI lm-evaluation-harness's own command line, with the `c2c` model registered.

Every argument goes to lm-eval unchanged (`c2c lm-eval ARGS` is `lm-eval ARGS`), after importing
`cache2cache.evaluation.lm_eval`, which registers the `c2c` model. lm-eval 0.4.13 reads models only
from its own table, so its `lm-eval` command does not know `c2c`; lm-eval releases that discover
models through the `lm_eval.models` entry point (declared in pyproject.toml) know it either way.
"""

from __future__ import annotations

import sys

EXAMPLE = """examples:
  # a trained fuser on local task files (any lm-eval flag works; --model_args are C2CLM's arguments)
  c2c lm-eval --model c2c --model_args fuser=runs/pair/final,batch_size=8 \\
      --tasks tiny_mc_lm --include_path tests/fixtures/eval/lm_eval_tasks

  # the receiver alone through the same path, and fusion control (layers joined by ':')
  c2c lm-eval --model c2c --model_args fuser=runs/pair/final,fuse=false --tasks arc_easy
  c2c lm-eval --model c2c --model_args fuser=runs/pair/final,fusion_strength=0.5,fuse_layers=0:1:2 --tasks arc_easy

  # lm-eval's own subcommands and help
  c2c lm-eval ls tasks
  c2c lm-eval run --help
"""

USAGE = f"""usage: c2c lm-eval [lm-eval arguments ...]

Run EleutherAI lm-evaluation-harness's command line with the `c2c` model registered. Every argument
goes to lm-eval unchanged. The c2c model's --model_args (comma-separated key=value): fuser, receiver,
sharer, subfolder, fuse, batch_size, max_length, max_gen_toks, add_bos_token, dtype, device,
fusion_strength, fuse_layers, fuse_proportion (see cache2cache.evaluation.lm_eval.C2CLM).

{EXAMPLE}"""


def run_argv(argv: list[str]) -> int:
    """Register `c2c` with lm-eval and run lm-eval's CLI on `argv`; returns its exit status."""
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    try:
        from lm_eval.__main__ import cli_evaluate

        import cache2cache.evaluation.lm_eval  # noqa: F401  (registers the c2c model)
    except ImportError as err:
        print(
            f"c2c lm-eval: error: lm-eval is not installed ({err}); install it with: pip install 'cache2cache[eval]'",
            file=sys.stderr,
        )
        return 1
    saved, sys.argv = sys.argv, ["lm-eval", *argv]  # lm-eval's parser reads sys.argv itself
    try:
        cli_evaluate()
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.argv = saved
    return 0
