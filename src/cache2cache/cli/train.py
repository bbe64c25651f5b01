"""`c2c train`: train fusers from a YAML recipe (`cache2cache.training.run_training`).

Every recipe field can be overridden on the command line, by its dotted path (`--training.learning_rate
3e-4`) or, when the name is unique, by its leaf name (`--learning_rate 3e-4`); values are YAML. The
same command runs distributed under torchrun (DDP over the fusers; gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import argparse
import os
import sys

from .common import USER_ERRORS, add_recipe_arguments, configure_logging, report_error

EXAMPLE = """examples:
  # the tiny built-in pair: random-weight models from recipes/data/tiny, no downloads, under a minute
  c2c train --config recipes/tiny.yaml

  # overrides: any recipe field, by dotted path or unique leaf name
  c2c train --config recipes/tiny.yaml --max_steps 20 --learning_rate 1e-3 --output_dir runs/tiny-short

  # SmolLM2-135M <- Gemma-3-270M on the local multiple-choice mix (after `c2c fetch`); continue a run
  c2c train --config recipes/smollm2-135m_gemma3-270m.yaml
  c2c train --config recipes/smollm2-135m_gemma3-270m.yaml --resume

  # two processes (gloo on CPU; NCCL with --device cuda): the global batch is per-device x accumulation x 2
  torchrun --nproc_per_node 2 -m cache2cache.cli.main train --config recipes/tiny.yaml

  # check a recipe without training
  c2c validate recipes/qwen3-0.6b_qwen2.5-0.5b.yaml
"""

_PREFIX = "override:"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config`, `--resume` and one `--<field>` per recipe field (help: the field's docs)."""
    from cache2cache.training.schema import TrainConfig

    parser.add_argument("--config", required=True, metavar="RECIPE", help="the YAML recipe (see recipes/)")
    parser.add_argument(
        "--resume", nargs="?", const="latest", metavar="CHECKPOINT",
        help="continue from the newest checkpoint in output_dir (or the given checkpoint-<step> folder); "
        "an error when there is none (a recipe's training.resume_from: latest starts fresh instead)",
    )  # fmt: skip
    group = parser.add_argument_group(
        "recipe overrides",
        "Any recipe field, as --<section>.<field> VALUE (YAML: 3e-4, true, null, [a, b]; lists also a,b); "
        "a field whose name is unique also works as --<field> (e.g. --learning_rate, --output_dir, --seed).",
    )
    add_recipe_arguments(group, TrainConfig, _PREFIX)


def run(args: argparse.Namespace) -> int:
    """Load and check the recipe, train, print where the fusers are; returns the exit status."""
    main_rank = int(os.environ.get("RANK", "0")) == 0
    configure_logging()
    if not main_rank:
        import logging

        logging.getLogger("cache2cache").setLevel(logging.WARNING)
    overrides = {key[len(_PREFIX) :]: value for key, value in vars(args).items() if key.startswith(_PREFIX)}
    if args.resume is not None:
        overrides["training.resume_from"] = args.resume
    try:
        from cache2cache.training import load_train_config, run_training
        from cache2cache.training.state import find_latest_checkpoint

        config = load_train_config(args.config, overrides)
        if args.resume == "latest" and find_latest_checkpoint(config.output_path) is None:
            raise ValueError(
                f"--resume: {str(config.output_path)!r} holds no checkpoint-<step> to continue; drop --resume to start a fresh run "
                "(or give --output_dir of the run to continue)"
            )
        final = run_training(config)
    except USER_ERRORS as err:
        return report_error("train", err)
    except KeyboardInterrupt as err:  # TrainingInterrupted says which step it saved
        print(f"c2c train: {err or 'interrupted'}; continue with --resume", file=sys.stderr)
        return 130
    finally:
        _leave_process_group()
    if main_rank:
        print(f"fusers saved to {final}")
        print(f'load them with: C2CModel.from_pretrained({str(final)!r}), or c2c generate --fuser {final} "..."')
    return 0


def _leave_process_group() -> None:
    """Destroy torchrun's process group, if training joined one (this process owns it)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
