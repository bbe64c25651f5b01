"""`c2c generate`: one prompt in, one answer streamed out, from a receiver reading a sharer's fused cache."""

from __future__ import annotations

import argparse
import sys

from .common import (
    USER_ERRORS,
    add_fresh_fuser_arguments,
    add_generation_arguments,
    add_model_arguments,
    add_runtime_arguments,
    build_model,
    configure_logging,
    generation_kwargs,
    report_error,
)

EXAMPLE = """examples:
  # the published Qwen3-0.6B <- Qwen2.5-0.5B fuser (hub access needed)
  c2c generate "Which planet is the largest?" --fuser nics-efc/C2C_Fuser --subfolder qwen3_0.6b+qwen2.5_0.5b_Fuser \\
      --receiver Qwen/Qwen3-0.6B --sharer Qwen/Qwen2.5-0.5B-Instruct --max_new_tokens 64

  # offline, after `c2c fetch`: fresh (untrained) fusers, the pipeline end to end
  c2c generate "Which planet is the largest?" --receiver smollm2-135m-instruct --sharer gemma-3-270m --max_new_tokens 32

  # the same prompt through the receiver alone, for comparison
  c2c generate "Which planet is the largest?" --receiver smollm2-135m-instruct --sharer gemma-3-270m --no_fuse

  # fusion control: half-strength deltas, only receiver layers 20-27, only the last half of the prompt
  c2c generate "Which planet is the largest?" --fuser nics-efc/C2C_Fuser --subfolder qwen3_0.6b+qwen2.5_0.5b_Fuser \
      --fusion_strength 0.5 --fuse_layers 20,21,22,23,24,25,26,27 --fuse_proportion 0.5

  # fusion during the response: the sharer keeps reading, every generated token is fused
  c2c generate "Which planet is the largest?" --fuser nics-efc/C2C_Fuser --subfolder qwen3_0.6b+qwen2.5_0.5b_Fuser \
      --include_response

  # a separate prompt for the sharer: it reads the context, the receiver only the question
  c2c generate "where does sazera live ?" --fuser c2c_demo/fuser/final \\
      --sharer_system "sazera lives in paris ." --max_new_tokens 4
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the prompt and the shared model, fuser, generation and runtime flags."""
    parser.add_argument("prompt", help="the user message")
    add_model_arguments(parser)
    add_generation_arguments(parser)
    group = parser.add_argument_group("a separate sharer prompt (docs/method.md §1.6)")
    group.add_argument(
        "--sharer_prompt", help="the sharer's user message instead of PROMPT (the receiver reads PROMPT)"
    )
    group.add_argument(
        "--sharer_system", help="a system message for the sharer only (e.g. a context the receiver never sees)"
    )
    add_fresh_fuser_arguments(parser)
    add_runtime_arguments(parser)


def sharer_messages(args: argparse.Namespace) -> list[dict[str, str]] | None:
    """The sharer's own conversation from `--sharer_system` / `--sharer_prompt`, or None (it reads the receiver's)."""
    if args.sharer_system is None and args.sharer_prompt is None:
        return None
    messages = [{"role": "system", "content": args.sharer_system}] if args.sharer_system else []
    return [*messages, {"role": "user", "content": args.sharer_prompt or args.prompt}]


def run(args: argparse.Namespace) -> int:
    """Build the model, stream the answer to stdout; returns the exit status."""
    configure_logging()
    try:
        from transformers import TextStreamer

        model = build_model(args)
        messages = [{"role": "system", "content": args.system}] if args.system else []
        messages.append({"role": "user", "content": args.prompt})
        streamer = TextStreamer(model.receiver_tokenizer, skip_prompt=True, skip_special_tokens=True)
        model.generate(
            messages,
            fuse=not args.no_fuse,
            streamer=streamer,
            sharer_messages=sharer_messages(args),
            **generation_kwargs(args),
        )
    except USER_ERRORS as err:
        return report_error("generate", err)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    return 0
