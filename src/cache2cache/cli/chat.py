"""`c2c chat`: an interactive multi-turn conversation through C2C, answers streamed.

Each line read from stdin is a user turn; the answer streams to stdout and joins the history, so
later turns see the whole conversation. Each turn reuses the caches of the previous turn's prompt
(`cache2cache.prefix`): only the columns a new prompt does not share with the last one (the last
answer, the new user turn) are prefilled and fused, and the answers are those of fusing the whole
prompt anew. `--no_prefix_reuse` prefills everything each turn; with `--fuse_proportion` < 1 or
`--include_response` (which depend on the whole prompt) every turn is prefilled anew. Commands: `/reset` clears the history (the `--system` message stays), `/exit` (or end
of input) quits. Prompts and notices go to stderr, so piping stdin gives only the answers on stdout:

    printf 'Hello!\\nAnd again?\\n' | c2c chat --receiver ... --sharer ...
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from cache2cache import C2CModel

EXAMPLE = """examples:
  # the published Qwen3-0.6B <- Qwen2.5-0.5B fuser (hub access needed)
  c2c chat --fuser nics-efc/C2C_Fuser --subfolder qwen3_0.6b+qwen2.5_0.5b_Fuser \\
      --receiver Qwen/Qwen3-0.6B --sharer Qwen/Qwen2.5-0.5B-Instruct

  # offline, after `c2c fetch`, scripted through a pipe (fresh, untrained fusers)
  printf 'Hi, who are you?\\n/reset\\nName a colour.\\n/exit\\n' | \\
      c2c chat --receiver smollm2-135m-instruct --sharer gemma-3-270m --max_new_tokens 32

in the chat: /reset clears the history, /exit quits (so does Ctrl-D).
"""

RESET, EXIT = "/reset", "/exit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the shared model, fuser, generation and runtime flags, and `--no_prefix_reuse`."""
    add_model_arguments(parser)
    add_generation_arguments(parser)
    add_fresh_fuser_arguments(parser)
    add_runtime_arguments(parser)
    parser.add_argument(
        "--no_prefix_reuse",
        action="store_true",
        help="prefill and fuse the whole conversation anew each turn instead of reusing the previous turn's caches "
        "(the same answers, slower; for comparison)",
    )


def _notice(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _read_line(interactive: bool) -> str | None:
    """The next user line without its newline, or None at end of input.

    On a terminal, `input` gives line editing (readline); on a pipe, lines are read as they come.
    """
    if not interactive:
        line = sys.stdin.readline()
        return line.rstrip("\n") if line else None
    import readline  # noqa: F401  (importing it is what turns on line editing for input())

    try:
        return input("you> ")
    except EOFError:
        print(file=sys.stderr)
        return None


def converse(model: C2CModel, args: argparse.Namespace) -> None:
    """Answer user lines until `/exit` or end of input, keeping the conversation history (and, unless
    `--no_prefix_reuse`, the caches of the last prompt, which the next turn reuses)."""
    from transformers import TextStreamer

    from cache2cache import prefix

    streamer = TextStreamer(model.receiver_tokenizer, skip_prompt=True, skip_special_tokens=True)
    start = [{"role": "system", "content": args.system}] if args.system else []
    history = list(start)
    interactive = sys.stdin.isatty()
    kwargs = generation_kwargs(args)
    proportion, include_response = kwargs.pop("fuse_proportion"), kwargs.pop("include_response")
    reuse = not args.no_prefix_reuse and proportion == 1 and not include_response
    if not reuse and not args.no_prefix_reuse:
        _notice(
            "(--fuse_proportion < 1 and --include_response depend on the whole prompt: each turn is prefilled anew)"
        )
    cached: prefix.PrefixCache | None = None
    _notice(f"c2c chat ({'receiver alone' if args.no_fuse else 'C2C'}): {RESET} clears the history, {EXIT} quits")
    while (line := _read_line(interactive)) is not None:
        text = line.strip()
        if text == EXIT:
            break
        if text == RESET:
            history = list(start)
            _notice("(history cleared)")
            continue
        if not text:
            continue
        if text.startswith("/"):
            _notice(f"unknown command {text!r}: use {RESET} or {EXIT}")
            continue
        history.append({"role": "user", "content": text})
        if interactive:
            print("c2c> ", end="", file=sys.stderr, flush=True)
        try:
            if reuse:
                reply, cached = prefix.generate(
                    model, history, prefix=cached, fuse=not args.no_fuse, streamer=streamer, recompute=True, **kwargs
                )
            else:
                reply = model.generate(history, fuse=not args.no_fuse, streamer=streamer, **generation_kwargs(args))
        except USER_ERRORS as err:  # one bad turn (e.g. a prompt the models cannot take) need not end the chat
            history.pop()
            _notice(f"error: {err}")
            continue
        history.append({"role": "assistant", "content": reply})


def run(args: argparse.Namespace) -> int:
    """Build the model, then chat on stdin/stdout; returns the exit status."""
    configure_logging()
    try:
        converse(build_model(args), args)
    except USER_ERRORS as err:
        return report_error("chat", err)
    except KeyboardInterrupt:
        _notice("")
        return 130
    return 0
