"""`c2c serve`: an OpenAI-compatible server for a pair, with a page comparing receiver, T2T and C2C."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .common import (
    USER_ERRORS,
    add_fresh_fuser_arguments,
    add_model_arguments,
    add_runtime_arguments,
    build_model,
    configure_logging,
    report_error,
)

EXAMPLE = """examples:
  # the pair `c2c demo` trained (c2c_demo/), page at http://127.0.0.1:8000/
  c2c serve --fuser c2c_demo/fuser/final

  # a real pair after `c2c fetch`, fresh fusers, an API key, bigger batches
  C2C_API_KEY=secret c2c serve --receiver smollm2-135m-instruct --sharer gemma-3-270m --max_batch_size 16

  # then, from any OpenAI client (the model field picks the mode: c2c, receiver, sharer, t2t)
  curl -s http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
      -d '{"model": "c2c", "messages": [{"role": "user", "content": "where does sazera live ?"}], "temperature": 0}'
"""

DEMO_DESCRIPTION = (
    "The demo pair of `c2c demo`: a Qwen3-style receiver, whose vocabulary does not even contain the names of the "
    "held-out people, reads the cache of a Llama-style sharer that knows each person's city, job and favourite colour. "
    "Ask about a held-out person: the receiver alone guesses, T2T and C2C know."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the shared model flags, then the server's own."""
    add_model_arguments(parser)
    add_fresh_fuser_arguments(parser)
    add_runtime_arguments(parser)
    group = parser.add_argument_group("server")
    group.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)"
    )
    group.add_argument("--port", type=int, default=8000, help="port to listen on; 0 picks a free one (default: 8000)")
    group.add_argument("--api-key", "--api_key", dest="api_key", default=os.environ.get("C2C_API_KEY"),
                       help="require 'Authorization: Bearer KEY' on every /v1 route (default: $C2C_API_KEY; unset: no auth)")  # fmt: skip
    group.add_argument(
        "--max_batch_size", type=int, default=8, help="most requests run together in one batch (default: 8)"
    )
    group.add_argument(
        "--batch_wait_ms", type=float, default=10.0, help="longest wait for more requests to join a batch (default: 10)"
    )
    group.add_argument(
        "--max_queue", type=int, default=64, help="most requests waiting; more are refused with 429 (default: 64)"
    )
    group.add_argument(
        "--request_timeout_s",
        type=float,
        default=300.0,
        help="longest time for one request; longer gets 504 (default: 300)",
    )
    group.add_argument(
        "--max_prompt_tokens", type=int, default=4096, help="longest prompt; longer gets 413 (default: 4096)"
    )
    group.add_argument("--t2t_style", choices=("auto", "paper", "demo"), default="auto",
                       help="how t2t asks the sharer for background: the paper's prompt, or the demo pair's format "
                       "(default: auto, demo for a fuser inside a `c2c demo` folder)")  # fmt: skip
    group.add_argument(
        "--t2t_max_tokens",
        type=int,
        help="most background tokens the sharer writes in t2t (default: 256 paper, 16 demo)",
    )


def demo_folder(fuser: str | None) -> Path | None:
    """The `c2c demo` output folder a fuser checkpoint sits in (`<folder>/fuser/final`), if it does."""
    if not fuser:
        return None
    folder = Path(fuser).resolve().parent.parent
    return folder if (folder / "demo_config.json").is_file() else None


def _example_question(demo: Path) -> str:
    try:
        with open(demo / "heldout.jsonl", encoding="utf-8") as f:
            return json.loads(f.readline())["question"]
    except (OSError, ValueError, KeyError):
        return ""


def run(args: argparse.Namespace) -> int:
    """Load the pair in the background, serve until SIGTERM (draining first); returns the exit status."""
    configure_logging()
    try:
        from dataclasses import replace

        from cache2cache.demo.run import DEMO_T2T
        from cache2cache.evaluation.modes import PAPER_T2T
        from cache2cache.serving.app import ServeSettings, create_app
        from cache2cache.serving.server import run_server
    except ImportError as err:
        return report_error(
            "serve", ImportError(f"{err}; install the server's dependencies: pip install 'cache2cache[serve]'")
        )
    try:
        demo = demo_folder(args.fuser)
        t2t = DEMO_T2T if args.t2t_style == "demo" or (args.t2t_style == "auto" and demo) else PAPER_T2T
        if args.t2t_max_tokens is not None:
            t2t = replace(t2t, max_new_tokens=args.t2t_max_tokens)
        settings = ServeSettings(
            api_key=args.api_key or None,
            max_batch_size=args.max_batch_size,
            batch_wait_ms=args.batch_wait_ms,
            max_queue=args.max_queue,
            request_timeout_s=args.request_timeout_s,
            max_prompt_tokens=args.max_prompt_tokens,
            t2t=t2t,
            description=DEMO_DESCRIPTION if demo else "",
            example_prompt=_example_question(demo) if demo else "",
        )
        app = create_app(lambda: build_model(args), settings)
    except USER_ERRORS as err:
        return report_error("serve", err)

    def announce(url: str) -> None:
        print(
            f"c2c serve: listening on {url}  (OpenAI API: {url}/v1, models loading; GET {url}/health says when ready)",
            flush=True,
        )
        print(f"c2c serve: page: {url}/", flush=True)

    code = run_server(app, args.host, args.port, drain_timeout_s=args.request_timeout_s, on_ready=announce)
    if code:
        return report_error("serve", RuntimeError(f"the models failed to load: {app.state.c2c.error}"))
    print("c2c serve: stopped", file=sys.stderr)
    return 0
