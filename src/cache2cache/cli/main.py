"""Entry point of the `c2c` command.

Each verb lives in `cache2cache.cli.<verb>` (dashes become underscores) and exposes
`add_arguments(parser)` and `run(args) -> int`, or, for a verb that hands its arguments to another
program's command line (`lm-eval`), `run_argv(argv) -> int`.
The verb modules are imported only when their verb runs, so `c2c --help` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# verb -> one-line help. Order is the order `c2c --help` shows.
COMMANDS: dict[str, str] = {
    "demo": "Train a tiny sharer/receiver pair and a fuser offline, then compare receiver, sharer, T2T and C2C",
    "generate": "Generate one answer with a receiver reading a sharer's fused cache (streamed)",
    "chat": "Interactive multi-turn chat through C2C (streamed)",
    "train": "Train fusers for a receiver/sharer pair from a YAML recipe",
    "eval": "Evaluate receiver, sharer, T2T and C2C side by side (accuracy and latency)",
    "serve": "Serve a pair over an OpenAI-compatible HTTP API, with a page comparing receiver, T2T and C2C",
    "inspect": "Show a pair's shapes, layer map, fuser size and an alignment preview",
    "validate": "Check a YAML recipe and report every problem at once",
    "convert": "Convert a GGUF model into a dense safetensors checkpoint",
    "fetch": "Download, verify and convert the offline assets (models and benchmark data)",
    "lm-eval": "Run EleutherAI lm-evaluation-harness's command line with the c2c model registered",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; verb arguments are added lazily in `main`."""
    parser = argparse.ArgumentParser(
        prog="c2c",
        description="Cache-to-Cache: a receiver LLM answers from a KV-cache fused with a sharer LLM's cache.",
        epilog="Run `c2c <command> --help` for a command's options and an example.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for verb, help_text in COMMANDS.items():
        sub.add_parser(verb, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, import the chosen verb's module and run it; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            parser.print_help(sys.stderr)
            print(f"\nc2c: unknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        parser.print_help()
        return 0
    verb = argv[0]
    module = importlib.import_module(f"cache2cache.cli.{verb.replace('-', '_')}")
    if hasattr(module, "run_argv"):
        return int(module.run_argv(argv[1:]) or 0)
    verb_parser = argparse.ArgumentParser(
        prog=f"c2c {verb}",
        description=COMMANDS[verb],
        epilog=getattr(module, "EXAMPLE", None),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # a typo'd flag such as --learning_rat must not silently set --learning_rate
    )
    module.add_arguments(verb_parser)
    args = verb_parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
