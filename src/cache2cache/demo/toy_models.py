"""The demo's two small language models, each with its own word-level tokenizer and chat template.

- The **sharer** is a Llama-style model (4 KV heads of dim 32) with template `<s> [ user ] ... [ bot ]`.
- The **receiver** is a Qwen3-style model (2 KV heads of dim 32, tied embeddings) with template
  `<bos> Q : ... A :`.

Different architectures, head layouts, vocabularies, special tokens and templates: the library's
token alignment maps the two 1:1. Both are trained from scratch here by `pretrain`, a plain
next-token loop (these are the frozen LLMs of C2C; the fuser is trained by the library's own loop).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable, Sequence

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from tqdm.auto import tqdm
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
)

logger = logging.getLogger(__name__)

RECEIVER_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %} {{ m['content'] }}"
    "{% elif m['role'] == 'user' %} Q : {{ m['content'] }}"
    "{% else %} A : {{ m['content'] }} {{ eos_token }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %} A :{% endif %}"
)
SHARER_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %} [ info ] {{ m['content'] }}"
    "{% elif m['role'] == 'user' %} [ user ] {{ m['content'] }}"
    "{% else %} [ bot ] {{ m['content'] }} {{ eos_token }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %} [ bot ]{% endif %}"
)
_TEMPLATE_WORDS = {"receiver": "Q : A :", "sharer": "[ user ] [ bot ] [ info ]"}
_RECEIVER_SPECIALS = {"pad": "<pad>", "unk": "<unk>", "bos": "<bos>", "eos": "<eos>"}
_SHARER_SPECIALS = {"bos": "<s>", "eos": "</s>", "unk": "<unk>", "pad": "<pad>"}


def word_tokenizer(texts: Iterable[str], *, role: str, exclude: Iterable[str] = ()) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary is every word of `texts` minus `exclude`.

    Args:
        texts: The corpus the vocabulary is built from.
        role: "receiver" or "sharer": picks the special tokens (in a different order, so ids
            differ) and the chat template.
        exclude: Words kept out of the vocabulary; they encode as `<unk>`.
    """
    specials = _RECEIVER_SPECIALS if role == "receiver" else _SHARER_SPECIALS
    splitter = pre_tokenizers.Whitespace()
    banned = set(exclude)
    all_texts = [*texts, _TEMPLATE_WORDS[role]]
    words = sorted(
        {w for text in all_texts for w, _ in splitter.pre_tokenize_str(text)} - banned - set(specials.values())
    )
    vocab = {tok: i for i, tok in enumerate(list(specials.values()) + words)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials["unk"]))
    backend.pre_tokenizer = splitter
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **{f"{k}_token": v for k, v in specials.items()})
    tokenizer.chat_template = RECEIVER_TEMPLATE if role == "receiver" else SHARER_TEMPLATE
    return tokenizer


def sharer_model(vocab_size: int, seed: int) -> LlamaForCausalLM:
    """Llama-style sharer: hidden 128 (MLP 256), 3 layers, 4 heads, 4 KV heads of dim 32."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=32,
        max_position_embeddings=256,
        pad_token_id=3,
        bos_token_id=0,
        eos_token_id=1,
    )
    return LlamaForCausalLM(config)


def receiver_model(vocab_size: int, seed: int) -> Qwen3ForCausalLM:
    """Qwen3-style receiver: hidden 128 (MLP 256), 3 layers, 4 heads, 2 KV heads of dim 32, tied embeddings."""
    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        tie_word_embeddings=True,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    return Qwen3ForCausalLM(config)


def pack_rows(
    docs: Sequence[Sequence[int]], width: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pack tokenized documents into rows of `width` tokens, each document whole and in order.

    Every document restarts its position ids at 0, which is how transformers recognises packed
    sequences: with `attention_mask=None` and no cache, its causal mask is block-diagonal, so no
    token attends across a document boundary and each document is computed exactly as if alone.

    Args:
        docs: Token ids of each document (each at most `width` long).
        width: Tokens per row.
        pad_id: Fills the end of each row.

    Returns:
        `input_ids`, `position_ids` and `labels`, each `[rows, width]`. Labels are -100 on padding
        and on each document's first token (nothing before it in its document predicts it).
    """
    rows: list[list[Sequence[int]]] = [[]]
    used = 0
    for doc in docs:
        if len(doc) > width:
            raise ValueError(
                f"a {len(doc)}-token document does not fit a packed row of {width} tokens; raise the row width"
            )
        if used + len(doc) > width:
            rows.append([])
            used = 0
        rows[-1].append(doc)
        used += len(doc)
    ids, positions, labels = [], [], []
    for row in rows:
        fill = width - sum(map(len, row))
        ids.append([t for doc in row for t in doc] + [pad_id] * fill)
        positions.append(
            [i for doc in row for i in range(len(doc))] + list(range(fill))
        )  # padding: one more "document"
        labels.append([t for doc in row for t in (-100, *doc[1:])] + [-100] * fill)
    return torch.tensor(ids), torch.tensor(positions), torch.tensor(labels)


def pretrain(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    texts: Sequence[str],
    *,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    desc: str,
    progress: bool = True,
) -> list[float]:
    """Train `model` from scratch on `texts` with next-token loss (AdamW, warmup + cosine decay).

    Each step draws `batch_size` random texts and packs them into rows (`pack_rows`) instead of
    padding each to the longest: the loss is the same as that of the padded batch, at less than half
    the compute. (Grouping batches by length would also cut padding, but length-uniform batches are
    type-uniform here, and they broke the receiver's reading skill: T2T fell from 81 % to 12 %.)

    Returns:
        The loss of every step.
    """
    rng = random.Random(seed)
    torch.manual_seed(seed)
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(map(len, encoded))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup)))
        ),
    )
    model.train()
    losses: list[float] = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    for _ in bar:
        ids, positions, labels = pack_rows(
            [encoded[rng.randrange(len(encoded))] for _ in range(batch_size)], width, tokenizer.pad_token_id
        )
        loss = model(input_ids=ids, position_ids=positions, labels=labels, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if len(losses) % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / 50:.3f}")
    model.eval()
    logger.info("%s: final loss %.4f after %d steps", desc, sum(losses[-50:]) / min(50, len(losses)), steps)
    return losses
