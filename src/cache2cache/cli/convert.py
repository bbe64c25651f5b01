"""`c2c convert`: a GGUF model into a dense safetensors checkpoint (wraps `cache2cache.loading.convert_gguf`)."""

from __future__ import annotations

import argparse

from .common import USER_ERRORS, configure_logging, report_error

EXAMPLE = """example:
  c2c convert SmolLM2-135M-Instruct.Q4_1.gguf smollm2-dense
  c2c convert models/gemma/ gemma-dense --overwrite     # a folder holding exactly one .gguf

The output folder holds config.json, model.safetensors (float32), the tokenizer files and
generation_config.json; `c2c generate --receiver smollm2-dense ...` then loads it in seconds."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the verb's arguments to `parser`."""
    parser.add_argument("src", help="a .gguf file, or a folder holding exactly one")
    parser.add_argument("dst", help="the output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace dst if it exists and is not empty")


def run(args: argparse.Namespace) -> int:
    """Convert and print the output folder; returns the exit status."""
    from cache2cache.loading import convert_gguf

    configure_logging()
    try:
        out = convert_gguf(args.src, args.dst, overwrite=args.overwrite)
    except USER_ERRORS as error:
        return report_error("convert", error)
    print(out)
    return 0
