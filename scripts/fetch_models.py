"""Fetch the offline models and data: `python scripts/fetch_models.py [names...] [--cache_dir DIR] [--force]`."""

import sys

from cache2cache.cli.main import main

raise SystemExit(main(["fetch", *sys.argv[1:]]))
