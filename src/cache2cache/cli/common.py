"""Flags shared by the C2C verbs, and the one function that builds a `C2CModel` from them.

Shared flags (the same name means the same thing in every verb):

    --receiver, --sharer     a hub id, a local folder, a `.gguf` file or an alias fetched by `c2c fetch`
    --fuser, --subfolder     a checkpoint folder (`save_pretrained`), a published-layout folder or a hub id
    --layer_map, --hidden_dim, --intermediate_dim, --num_layers
                             shape of *fresh* fusers, used only without --fuser
    --device, --dtype, --seed

Where a flag is also a recipe field, its help text is the field's (`cache2cache.recipe.field_docs`),
and `add_recipe_arguments` turns every field of a recipe schema into a `--<field>` flag.

With `--fuser`, `build_model` loads the checkpoint (`C2CModel.from_pretrained`); the receiver and
sharer default to the ones it records. Without it, `build_model` wraps the two models with freshly
initialised, untrained fusers (`C2CModel.from_models`) and logs a warning saying so.

This module imports nothing heavy at import time, so `c2c <verb> --help` stays quick.
"""

from __future__ import annotations

import argparse
import logging
import sys
import typing
from typing import TYPE_CHECKING, Any

from cache2cache import recipe
from cache2cache.config import FuserConfig
from cache2cache.control import PROPORTION_RANGE, STRENGTH_RANGE, valid_proportion, valid_strength
from cache2cache.evaluation.config import EvalConfig
from cache2cache.layer_map import LAYER_MAPS
from cache2cache.training.schema import ModelOptions

if TYPE_CHECKING:
    import torch

    from cache2cache import C2CModel

logger = logging.getLogger(__name__)

DTYPES: tuple[str, ...] = typing.get_args(typing.get_type_hints(EvalConfig)["dtype"])
FRESH_FUSER_FLAGS: tuple[str, ...] = ("layer_map", "hidden_dim", "intermediate_dim", "num_layers")
# What a user can cause with wrong flags or files: reported in one line, without a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, ImportError)


def add_recipe_arguments(group: argparse._ArgumentGroup, schema: type, dest_prefix: str) -> None:
    """One `--<name>` per override name of the recipe `schema` (`cache2cache.recipe.override_paths`).

    Each flag's help is the field's documentation; a leaf name that stands for a dotted path works
    but is listed only beside that path. A bool field also works bare (`--overwrite` = `--overwrite
    true`). Values land in `args` as `<dest_prefix><name>` text, only when given.
    """
    docs = recipe.field_docs(schema)
    annotations = recipe.field_annotations(schema)
    names = recipe.override_paths(schema)
    aliases = {path: name for name, path in names.items() if name != path}
    for name, path in names.items():
        if name != path:
            text = argparse.SUPPRESS
        else:
            text = docs.get(path, "").replace("%", "%%")
            if path in aliases:
                text += f" (also --{aliases[path]})"
        bare: dict[str, Any] = {"nargs": "?", "const": "true"} if annotations[path] is bool else {}
        group.add_argument(f"--{name}", dest=dest_prefix + name, default=argparse.SUPPRESS, metavar="VALUE",
                           help=text or None, **bare)  # fmt: skip


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--receiver`, `--sharer`, `--fuser` and `--subfolder` (the help of `--receiver` and
    `--subfolder` is the `EvalConfig` field's; `--sharer` and `--fuser` mean more there)."""
    docs = recipe.field_docs(EvalConfig)
    group = parser.add_argument_group("models")
    group.add_argument("--receiver", metavar="MODEL", help=docs["receiver"])
    group.add_argument("--sharer", metavar="MODEL", help="sharer: hub id, local folder, .gguf file or fetched alias "
                       "(default with --fuser: the sharer the checkpoint records; a,b for a checkpoint with several)")  # fmt: skip
    group.add_argument("--fuser", metavar="PATH_OR_ID", help="fuser checkpoint: a save_pretrained folder, a published-layout "
                       "folder or a hub repo id (default: fresh, untrained fusers)")  # fmt: skip
    group.add_argument("--subfolder", help=docs["subfolder"])


def add_fresh_fuser_arguments(
    parser: argparse.ArgumentParser, *, title: str = "fresh fusers (only without --fuser)"
) -> None:
    """Add the shape flags of freshly initialised fusers (help: the `FuserConfig` fields'; published
    defaults when omitted)."""
    docs = recipe.field_docs(FuserConfig)
    group = parser.add_argument_group(title)
    group.add_argument("--layer_map", choices=LAYER_MAPS, help=recipe.field_docs(ModelOptions)["layer_map"])
    for name in ("hidden_dim", "intermediate_dim", "num_layers"):
        group.add_argument(f"--{name}", type=int, help=docs[name])


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--max_new_tokens`, `--do_sample`, `--temperature`, `--top_p`, `--system`, `--no_fuse`, the
    fusion control flags `--fusion_strength`, `--fuse_layers`, `--fuse_proportion` and `--include_response`."""
    group = parser.add_argument_group("generation")
    group.add_argument("--max_new_tokens", type=int, default=256, help="most tokens to generate (default: 256)")
    group.add_argument("--do_sample", action="store_true", help="sample instead of greedy decoding")
    group.add_argument(
        "--temperature",
        type=float,
        help="sampling temperature (with --do_sample; default: the receiver's generation config)",
    )
    group.add_argument(
        "--top_p",
        type=float,
        help="nucleus sampling mass (with --do_sample; default: the receiver's generation config)",
    )
    group.add_argument("--system", help="a system message put before the conversation")
    group.add_argument(
        "--no_fuse",
        action="store_true",
        help="receiver alone through the same code path (no sharer, no fusion), for comparison",
    )
    group = parser.add_argument_group("fusion control (each runs from the receiver alone to plain C2C)")
    group.add_argument("--fusion_strength", type=_strength, default=1.0, metavar="ALPHA",
                       help="scale every fused delta by ALPHA >= 0 (0: receiver alone; default 1: C2C)")  # fmt: skip
    group.add_argument("--fuse_layers", type=_layers, metavar="L,L,...",
                       help="fuse only these receiver layers, comma-separated; '' fuses none (default: every mapped layer)")  # fmt: skip
    group.add_argument("--fuse_proportion", type=_proportion, default=1.0, metavar="P",
                       help="fuse only the last P in [0, 1] of the prompt's tokens (0: receiver alone; default 1: C2C)")  # fmt: skip
    group.add_argument("--include_response", action="store_true",
                       help="also fuse every generated token: the sharer keeps reading the answer (slower per token)")  # fmt: skip


def _strength(text: str) -> float:
    value = _float(text)
    if not valid_strength(value):
        raise argparse.ArgumentTypeError(f"expected {STRENGTH_RANGE}, got {text!r}")
    return value


def _proportion(text: str) -> float:
    value = _float(text)
    if not valid_proportion(value):
        raise argparse.ArgumentTypeError(f"expected {PROPORTION_RANGE}, got {text!r}")
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")  # not a number: refused by the range check, which names the range


def _layers(text: str) -> list[int]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(
            f"expected receiver layer indices separated by commas (e.g. 0,1,2; '' for none), got {text!r}"
        )
    return [int(part) for part in parts]


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--device`, `--dtype` and `--seed`."""
    group = parser.add_argument_group("runtime")
    group.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda when available, else cpu)")
    group.add_argument(
        "--dtype",
        choices=DTYPES,
        default="auto",
        help=recipe.field_docs(EvalConfig)["dtype"] + "; the fusers follow the receiver",
    )
    group.add_argument("--seed", type=int, help="seed for fresh fusers and for sampling")


def resolve_device(name: str | None) -> torch.device:
    """The device called `name` (`loading.parse_device`; None is "auto"), its error naming the flag."""
    from cache2cache.loading import parse_device

    try:
        return parse_device(name or "auto")
    except ValueError as err:
        raise ValueError(f"--{err}") from err


def fresh_fuser_config(args: argparse.Namespace) -> FuserConfig:
    """Published fuser hyperparameters, with the shape flags the user gave."""
    given = {
        name: getattr(args, name)
        for name in ("hidden_dim", "intermediate_dim", "num_layers")
        if getattr(args, name) is not None
    }
    return FuserConfig(**given)


def build_model(args: argparse.Namespace) -> C2CModel:
    """Build the `C2CModel` the shared flags describe, in eval mode.

    Args:
        args: Parsed flags from `add_model_arguments`, `add_fresh_fuser_arguments` and
            `add_runtime_arguments`.

    Returns:
        With `--fuser`: the checkpoint's fusers (cast to the receiver's dtype) on the given or
        recorded receiver and sharer. Without: fresh fusers of the receiver's dtype, with a warning.

    Raises:
        ValueError: Conflicting or missing flags, or a checkpoint that does not fit the models.
        OSError: A model, tokenizer or checkpoint that cannot be found.
    """
    import transformers

    from cache2cache import C2CModel
    from cache2cache.sharers import sharer_names

    device, dtype = resolve_device(args.device), args.dtype
    if args.seed is not None:
        transformers.set_seed(args.seed)
    if args.fuser:
        given = [f"--{name}" for name in FRESH_FUSER_FLAGS if getattr(args, name, None) is not None]
        if given:
            raise ValueError(
                f"{', '.join(given)} shape fresh fusers only; the checkpoint {args.fuser!r} fixes them. Drop them, or drop --fuser"
            )
        model = C2CModel.from_pretrained(
            args.fuser,
            receiver=args.receiver,
            sharer=sharer_names(args.sharer),
            subfolder=args.subfolder,
            dtype=dtype,
            device=device,
        )
        return model.eval()
    missing = [flag for flag, value in (("--receiver", args.receiver), ("--sharer", args.sharer)) if not value]
    if missing:
        raise ValueError(
            f"without --fuser, {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required (fresh fusers need both models)"
        )
    if args.subfolder:
        raise ValueError("--subfolder is a folder inside --fuser; pass --fuser too")
    from cache2cache.loading import load_model, load_tokenizer

    receiver = load_model(args.receiver, dtype=dtype, device=device)
    sharer = load_model(args.sharer, dtype=dtype, device=device)
    logger.warning(
        "no --fuser given: using freshly initialised, UNTRAINED fusers (%s layer map). The pipeline runs end to end, "
        "but the answers are not C2C's; with the published gate init the gates are closed, so they equal the receiver "
        "alone. Pass --fuser with a trained checkpoint for real use.",
        args.layer_map or "terminal",
    )
    model = C2CModel.from_models(
        receiver,
        sharer,
        fuser=fresh_fuser_config(args),
        layer_map=args.layer_map or "terminal",
        receiver_tokenizer=load_tokenizer(args.receiver),
        sharer_tokenizer=load_tokenizer(args.sharer),
        seed=args.seed,
    )
    # from_models keeps fresh fusers in fp32; run them in the receiver's dtype, as from_pretrained does.
    model.fusers.to(dtype=model.receiver.dtype)
    return model.eval()


def generation_kwargs(args: argparse.Namespace) -> dict[str, object]:
    """`C2CModel.generate` kwargs from `--max_new_tokens`, `--do_sample`, `--temperature`, `--top_p` and the
    fusion control flags (`fusion_strength`, `fuse_layers`, `fuse_proportion`, `include_response`)."""
    kwargs: dict[str, object] = {
        "max_new_tokens": args.max_new_tokens,
        "do_sample": args.do_sample,
        "fusion_strength": args.fusion_strength,
        "fuse_layers": args.fuse_layers,
        "fuse_proportion": args.fuse_proportion,
        "include_response": args.include_response,
    }
    sampling = {k: getattr(args, k) for k in ("temperature", "top_p") if getattr(args, k) is not None}
    if args.do_sample:
        kwargs.update(sampling)
    elif sampling:
        logger.warning(
            "%s only apply with --do_sample; decoding greedily without them", " and ".join(f"--{k}" for k in sampling)
        )
    return kwargs


def configure_logging() -> None:
    """Show the library's info messages and every warning on stderr."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("cache2cache").setLevel(logging.INFO)


def report_error(verb: str, err: BaseException) -> int:
    """Print a user error as one `c2c <verb>: error: ...` message on stderr; returns exit status 1."""
    print(f"c2c {verb}: error: {err}", file=sys.stderr)
    return 1
