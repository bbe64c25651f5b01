"""`c2c inspect`: what a receiver/sharer pair looks like to C2C, without loading any weights.

It reads both configs and tokenizers and prints:

1. the two models' shapes side by side (layers, KV heads, head_dim, sliding windows, vocab, chat template);
2. the layer map that would be used (`--layer_map`);
3. the fusers' parameter count (`--hidden_dim`, `--intermediate_dim`, `--num_layers`), counted on
   the meta device, so even the published 478M-parameter stack costs no memory;
4. with `--prompt`, when the tokenizers differ: the token alignment of that prompt, position by
   position (receiver token, sharer token, fused or not);
5. with `--task`, when the tokenizers differ: over that benchmark's prompts, as `c2c eval` renders
   them, how often the sharer reads its own tokenization of the question and how often the 1:1
   mapping loses characters (`TokenAligner.fidelity`).

`--sharer a,b` shows a receiver reading several sharers (docs/method.md §7): one column, layer map,
fuser count and alignment per sharer, and how they combine (`--sharer_mode`).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, get_args

from ..config import SHARER_MODES, AlignmentStrategy
from ..tasks.prompts import PromptStyle
from .common import USER_ERRORS, add_fresh_fuser_arguments, configure_logging, fresh_fuser_config, report_error

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

EXAMPLE = """examples:
  # the fetched heterogeneous pair (run `c2c fetch` first), with an alignment preview
  c2c inspect --receiver smollm2-135m-instruct --sharer gemma-3-270m --prompt "What is 2 + 2?"

  # how faithfully Gemma-3 reads ARC-Easy questions through the receiver's tokens
  c2c inspect --receiver smollm2-135m-instruct --sharer gemma-3-270m --task arc_easy --split test --sample 400

  # the published pair's shapes and the size of its fusers (hub access needed for the configs)
  c2c inspect --receiver Qwen/Qwen3-0.6B --sharer Qwen/Qwen2.5-0.5B-Instruct --layer_map depth --hidden_dim 512

  # one receiver reading two sharers, each with its own fusers
  c2c inspect --receiver smollm2-135m-instruct --sharer gemma-3-270m,smollm2-135m-instruct --sharer_mode sequential
"""

_TOKEN_WIDTH = 24  # characters of a token's repr shown in the alignment preview


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the pair, the layer map and fuser shape, and the optional prompt to align."""
    group = parser.add_argument_group("models")
    group.add_argument(
        "--receiver", required=True, metavar="MODEL", help="receiver: hub id, local folder, .gguf file or fetched alias"
    )
    group.add_argument(
        "--sharer",
        required=True,
        metavar="MODEL",
        help="sharer: hub id, local folder, .gguf file or fetched alias; a,b for several sharers",
    )
    group.add_argument("--sharer_mode", choices=SHARER_MODES, default="parallel",
                       help="how several sharers combine: parallel (deltas summed) or sequential (default: parallel)")  # fmt: skip
    add_fresh_fuser_arguments(parser, title="fusers (published sizes when omitted)")
    group = parser.add_argument_group("alignment preview")
    group.add_argument("--prompt", help="a user message to tokenize and align for both models")
    group.add_argument("--system", help="a system message put before --prompt")
    group.add_argument("--strategy", choices=get_args(AlignmentStrategy), default="longest",
                       help="how one sharer token is chosen when a receiver token needs several (default: longest)")  # fmt: skip
    group = parser.add_argument_group("alignment over a benchmark's prompts")
    group.add_argument("--task", help="a task name or file, as for c2c eval: measure the alignment over its prompts")
    group.add_argument("--split", help="the task's split (default: its own default, as in c2c eval)")
    group.add_argument("--sample", type=int, help="measure N prompts drawn with --seed (default: all of them)")
    group.add_argument("--seed", type=int, default=0, help="seed of --sample (default: 0)")
    group.add_argument("--prompt_style", choices=get_args(PromptStyle), default="paper",
                       help="the question turn as c2c eval --prompt_style renders it (default: paper)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Print the pair report; returns the exit status."""
    configure_logging()
    try:
        print(report(args))
    except USER_ERRORS as err:
        return report_error("inspect", err)
    return 0


def report(args: argparse.Namespace) -> str:
    """The whole report as text (see the module docstring)."""
    from cache2cache import C2CConfig, C2CFuser, count_parameters
    from cache2cache.loading import load_tokenizer

    names = [name.strip() for name in args.sharer.split(",")]
    receiver, sharers = _meta_model(args.receiver), [_meta_model(name) for name in names]
    receiver_tok, sharer_toks = load_tokenizer(args.receiver), [load_tokenizer(name) for name in names]
    config = C2CConfig.for_pair(
        receiver,
        sharers[0],
        fuser=fresh_fuser_config(args),
        layer_map=args.layer_map or "terminal",
        alignment_strategy=args.strategy,
        more_sharers=sharers[1:],
        sharer_mode=args.sharer_mode,
    )
    several = len(sharers) > 1
    labels = [f"sharer {i + 1}" if several else "sharer" for i in range(len(sharers))]
    columns = [("receiver", receiver, receiver_tok), *zip(labels, sharers, sharer_toks, strict=True)]
    lines = ["shapes", *_shape_table(columns), ""]
    if several:
        how = (
            "deltas summed on the clean receiver cache"
            if args.sharer_mode == "parallel"
            else "each fuses into the previous one's cache"
        )
        lines += [f"sharers: {len(sharers)}, combined {args.sharer_mode} ({how})", ""]  # fmt: skip

    import torch

    f, total = config.fuser, 0
    for i, (label, link) in enumerate(zip(labels, config.sharers, strict=True)):
        lines.append(
            f"layer map{f' ({label})' if several else ''}: {link.layer_map_name} "
            f"({len(link.layer_map)} fusers; receiver layers <- {label} layers)"
        )
        lines += [f"  {run}" for run in _layer_runs(link.layer_map)]
        with torch.device("meta"):
            per_fuser = count_parameters(C2CFuser(**config.fuser_kwargs(i)))
        count = per_fuser * len(link.layer_map)
        total += count
        shapes = (
            f"in {link.sharer.num_key_value_heads}x{link.sharer.head_dim} + {config.receiver.num_key_value_heads}x{config.receiver.head_dim} "
            f"-> out {config.receiver.num_key_value_heads}x{config.receiver.head_dim}"
        )
        lines += [
            "",
            f"fusers{f' ({label})' if several else ''}: C2CFuser h={f.hidden_dim} i={f.intermediate_dim} L={f.num_layers}, {shapes}",
            f"  {per_fuser:,} parameters per fuser x {len(link.layer_map)} = {count:,} ({_size(count * 2)} in bf16, {_size(count * 4)} in fp32)",
            "",
        ]
    if several:
        lines += [f"all fusers: {total:,} parameters ({_size(total * 2)} in bf16, {_size(total * 4)} in fp32)", ""]
    for label, sharer_tok in zip(labels, sharer_toks, strict=True):
        lines += _alignment_section(args, receiver_tok, sharer_tok, label)
    return "\n".join(lines)


def _meta_model(name: str) -> PreTrainedModel:
    """The model `name` names, built on the meta device from its config: shapes only, no weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from cache2cache.loading import resolve

    location, gguf_file = resolve(name)
    config = AutoConfig.from_pretrained(location, **({"gguf_file": gguf_file} if gguf_file else {}))
    config.name_or_path = name  # show the name the user gave, not the folder it resolved to
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def _shape_table(columns_in: list[tuple[str, PreTrainedModel, PreTrainedTokenizerBase]]) -> list[str]:
    """Rows `field | receiver | sharer ...`, aligned in columns, from `(label, model, tokenizer)` triples."""
    from cache2cache import ModelFingerprint

    columns = []
    for _, model, tok in columns_in:
        fp, cfg = ModelFingerprint.from_model(model), model.config.get_text_config()
        layer_types = getattr(cfg, "layer_types", None) or []
        n_sliding = sum(t == "sliding_attention" for t in layer_types)
        columns.append({
            "model": fp.name_or_path or "?",
            "model_type": fp.model_type,
            "layers": str(fp.num_hidden_layers),
            "hidden_size": str(cfg.hidden_size),
            "attention heads": str(cfg.num_attention_heads),
            "KV heads": str(fp.num_key_value_heads),
            "head_dim": str(fp.head_dim),
            "KV width (heads x dim)": str(fp.num_key_value_heads * fp.head_dim),
            "sliding windows": f"{fp.sliding_window} tokens on {n_sliding}/{fp.num_hidden_layers} layers" if n_sliding else "none",
            "vocab (config / tokenizer)": f"{fp.vocab_size} / {len(tok)}",
            "chat template": "yes" if getattr(tok, "chat_template", None) else "no (plain-text fallback)",
            "tokenizer": type(tok).__name__,
        })  # fmt: skip
    width = max(len(k) for k in columns[0])
    widths = [
        max(max(len(v) for v in col.values()), len(label))
        for col, (label, _, _) in zip(columns, columns_in, strict=True)
    ]
    labels = [label for label, _, _ in columns_in]

    def row(key: str, cells: list[str]) -> str:
        return f"  {key:<{width}}  " + "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)).rstrip()

    return [row("", labels), *(row(k, [col[k] for col in columns]) for k in columns[0])]


def _layer_runs(layer_map: dict[int, int]) -> list[str]:
    """Compress a layer map into runs: `0-4 <- 0` (one sharer layer) or `5-27 <- 1-23` (one to one)."""
    runs: list[list[tuple[int, int]]] = []
    for t, s in sorted(layer_map.items()):
        if runs:
            run = runs[-1]
            (_, s0), (tp, sp) = run[0], run[-1]
            step = None if len(run) == 1 else run[1][1] - s0
            if t == tp + 1 and s - sp in (0, 1) and step in (None, s - sp):
                run.append((t, s))
                continue
        runs.append([(t, s)])

    def span(a: int, b: int) -> str:
        return str(a) if a == b else f"{a}-{b}"

    return [f"{span(run[0][0], run[-1][0])} <- {span(run[0][1], run[-1][1])}" for run in runs]


def _alignment_section(
    args: argparse.Namespace, receiver_tok: PreTrainedTokenizerBase, sharer_tok: PreTrainedTokenizerBase, label: str
) -> list[str]:
    """The tokenizer relation of the receiver and `label` (a sharer) and, with `--prompt`, the prompt's
    alignment, position by position."""
    same = receiver_tok.get_vocab() == sharer_tok.get_vocab()
    tokenizers = "tokenizers" if label == "sharer" else f"tokenizers (receiver, {label})"
    if same:
        head = f"{tokenizers}: identical vocabularies; the {label} reads the receiver's token ids, every prompt token but the last is fused"
    else:
        head = f"{tokenizers}: different; prompts are token-aligned (strategy {args.strategy}), only message tokens are fused"
    if not args.prompt:
        if same:
            return [head]
        if args.task:
            return [head, *_task_fidelity(args, receiver_tok, sharer_tok, label)]
        return [head, "  (pass --prompt to preview the alignment of a prompt, --task to measure it over a benchmark)"]
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": args.prompt})
    if same:
        from cache2cache.chat import render_chat

        n = len(
            receiver_tok(render_chat(receiver_tok, messages, enable_thinking=False), add_special_tokens=False)[
                "input_ids"
            ]
        )
        return [head, f"  the prompt renders to {n} tokens; {n - 1} are fused"]
    from cache2cache.alignment import TokenAligner

    rows = TokenAligner(receiver_tok, sharer_tok, strategy=args.strategy).preview(messages)
    fused = sum(f for _, _, f in rows)
    lines = [head, f"alignment of the prompt: {len(rows)} positions, {fused} fused ('' = template padding on that side)",
             f"  {'#':>4}  {'receiver':<{_TOKEN_WIDTH}}  {'sharer':<{_TOKEN_WIDTH}}  fused"]  # fmt: skip
    for i, (r, s, f) in enumerate(rows):
        lines.append(f"  {i:>4}  {_shown(r):<{_TOKEN_WIDTH}}  {_shown(s):<{_TOKEN_WIDTH}}  {'yes' if f else ''}")
    return lines


def _task_fidelity(
    args: argparse.Namespace, receiver_tok: PreTrainedTokenizerBase, sharer_tok: PreTrainedTokenizerBase, label: str
) -> list[str]:
    """Lines on how faithfully the `label` sharer reads `--task`'s prompts through the 1:1 alignment."""
    from cache2cache.alignment import TokenAligner
    from cache2cache.evaluation.runner import answer_messages
    from cache2cache.tasks import load_task

    items = load_task(args.task, split=args.split, sample=args.sample, seed=args.seed)
    fid = TokenAligner(receiver_tok, sharer_tok, strategy=args.strategy).fidelity(
        answer_messages(item, args.prompt_style) for item in items
    )
    n = fid.conversations

    def share(count: int) -> str:
        return f"{count:,} of {n:,} ({100 * count / n:.1f} %)"

    return [
        f"alignment over {n:,} prompts of {args.task} (--prompt_style {args.prompt_style}):",
        f"  message tokens: {fid.message_tokens:,} fused positions; the {label}'s own encoding of the same texts: {fid.native_tokens:,} tokens",
        f"  prompts the {label} reads in exactly its own tokenization: {share(fid.native_conversations)}",
        f"  prompts whose {label} tokens lose or replace characters: {share(fid.lossy_conversations)}",
    ]


def _shown(token: str) -> str:
    """A token's repr (whitespace visible), cut to the preview's column width."""
    text = repr(token)
    return text if len(text) <= _TOKEN_WIDTH else text[: _TOKEN_WIDTH - 3] + "..."


def _size(num_bytes: int) -> str:
    """`num_bytes` in MiB or GiB."""
    return f"{num_bytes / 2**30:.2f} GiB" if num_bytes >= 2**30 else f"{num_bytes / 2**20:.1f} MiB"
