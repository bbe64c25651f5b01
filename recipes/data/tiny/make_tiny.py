"""Regenerate the tiny-pair fixture of `recipes/tiny.yaml` (deterministic; commit what it writes).

    python recipes/data/tiny/make_tiny.py

Writes, next to this file:
    receiver/   config.json of a Qwen3 receiver (3 layers, 2 KV heads x 16) and the tokenizer files
    sharer/     config.json of a Llama sharer (2 layers, 3 KV heads x 8); it shares the tokenizer
    train.jsonl, eval.jsonl   chat conversations: "What colour is the <thing>?" -> "The <thing> is <colour>."

No weights are stored: the recipe says `init: random`, so `c2c train` builds both models from these
configs with seeded random weights (initializer_range 0.2, so the fuser can move the receiver's
logits a long way). The tokenizer is a byte-level BPE (any text encodes) with a
ChatML chat template.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, PreTrainedTokenizerFast, Qwen3Config

HERE = Path(__file__).resolve().parent
THINGS = (
    "apple banana cherry grape lemon lime mango olive peach pear plum berry sky sea grass snow coal "
    "ash rose tulip violet daisy fox crow swan frog bear wolf owl cat dog mouse ink chalk brick rust "
    "cloud sun moon leaf bark"
).split()
COLOURS = "red yellow green blue white black grey purple orange brown pink gold".split()
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def conversations(seed: int = 0) -> list[list[dict[str, str]]]:
    """One question per thing, with a fixed random colour per thing."""
    rng = random.Random(seed)
    out = []
    for thing in THINGS:
        colour = rng.choice(COLOURS)
        for question in (f"What colour is the {thing}?", f"Which colour does the {thing} have?"):
            out.append(
                [{"role": "user", "content": question}, {"role": "assistant", "content": f"The {thing} is {colour}."}]
            )
    return out


def tokenizer(corpus: list[str]) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on `corpus`, with ChatML specials and template."""
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<|endoftext|>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def main() -> None:
    data = conversations()
    random.Random(1).shuffle(data)
    held_out = len(data) // 8
    for name, rows in (("eval.jsonl", data[:held_out]), ("train.jsonl", data[held_out:])):
        (HERE / name).write_text("".join(json.dumps({"messages": m}) + "\n" for m in rows))
    corpus = [m["content"] for conv in data for m in conv] + ["user assistant system"]
    tok = tokenizer(corpus)
    # initializer_range 0.2 (instead of 0.02): random embeddings large enough that the receiver's logits
    # can become confident, so what the fuser writes into its cache visibly lowers the loss.
    ids = dict(
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
        initializer_range=0.2,
    )
    receiver = Qwen3Config(
        hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, tie_word_embeddings=True, max_position_embeddings=512, **ids,
    )  # fmt: skip
    sharer = LlamaConfig(
        hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=3,
        max_position_embeddings=512, **ids,
    )  # fmt: skip
    for role, config in (("receiver", receiver), ("sharer", sharer)):
        (HERE / role).mkdir(exist_ok=True)
        config.save_pretrained(HERE / role)
    tok.save_pretrained(HERE / "receiver")


if __name__ == "__main__":
    main()
