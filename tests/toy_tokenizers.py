"""Tiny in-memory tokenizers for offline tests: two different vocabularies, each with its own chat template.

- `bpe_tokenizer()`: ByteLevel BPE (GPT-2/Qwen style), a ChatML template that reads `enable_thinking`
  like Qwen3's does. Specials: pad `<|endoftext|>`, eos `<|im_end|>`, bos `<|startoftext|>`, unk `<unk>`,
  plus `<|im_start|>`.
- `wordlevel_tokenizer()`: WordLevel over whitespace/punctuation words (unknown words become `<unk>`),
  a `[role] content </s>` template that starts with the bos token and trims message content.
  Specials: pad `<pad>`, eos `</s>`, bos `<s>`, unk `<unk>`.
- `no_template_tokenizer()`: the BPE tokenizer without a chat template (a base model's tokenizer).

Both are trained on `CORPUS` (deterministic, a few milliseconds); each call returns a fresh
`PreTrainedTokenizerFast`, so a test may change one without affecting others.
"""

from __future__ import annotations

from functools import cache

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

CORPUS: list[str] = [
    "Hello world, how are you today?",
    "I am fine, thank you. How can I help you?",
    "You are a helpful assistant.",
    "What is the capital of France? The capital of France is Paris.",
    "The correct answer is A.",
    "The correct answer is B, because the sky is blue.",
    "Accurately answer the following question.",
    "Choices: A. red B. green C. blue D. yellow",
    "Let's think step by step and explain your reasoning briefly.",
    "Two plus two is four, and three times three is nine.",
    "The numbers are 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10.",
    "A cat sat on the mat while the dog slept in the sun.",
    "Water boils at 100 degrees at sea level.",
    "Please write a short poem about the sea and the moon.",
    "The quick brown fox jumps over the lazy dog.",
    "Large language models can share their memory through caches.",
    "The receiver reads the cache of the sharer and answers the question.",
    "Translate the sentence into French: the weather is nice today.",
    "Summarize the text in one sentence, please.",
    "Where is the nearest train station? It is two streets away.",
    "Unbelievable! Nobody expected the results to be that good.",
    "system user assistant [ ] : think",
]

BPE_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)

WORDLEVEL_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "[{{ message['role'] }}] {{ message['content'] | trim }} {{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}[assistant]{% endif %}"
)


@cache
def _trained_bpe() -> str:
    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,  # well above the 256-byte alphabet, or no merges are learned
        special_tokens=["<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<|startoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(CORPUS, trainer)
    return tk.to_str()


@cache
def _trained_wordlevel() -> str:
    tk = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces, none before punctuation
    trainer = trainers.WordLevelTrainer(
        vocab_size=1000, min_frequency=1, special_tokens=["<pad>", "<unk>", "<s>", "</s>"], show_progress=False
    )
    tk.train_from_iterator(CORPUS, trainer)
    return tk.to_str()


def bpe_tokenizer(chat_template: bool = True) -> PreTrainedTokenizerFast:
    """A ByteLevel BPE tokenizer (vocab 400) with a ChatML chat template.

    Args:
        chat_template: False gives the same tokenizer without a chat template.
    """
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_trained_bpe()),
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        bos_token="<|startoftext|>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>"],
    )
    tok.chat_template = BPE_CHAT_TEMPLATE if chat_template else None
    return tok


def wordlevel_tokenizer(chat_template: bool = True) -> PreTrainedTokenizerFast:
    """A WordLevel tokenizer over the corpus words with a `[role] content </s>` chat template.

    Args:
        chat_template: False gives the same tokenizer without a chat template.
    """
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_trained_wordlevel()),
        pad_token="<pad>",
        eos_token="</s>",
        bos_token="<s>",
        unk_token="<unk>",
    )
    tok.chat_template = WORDLEVEL_CHAT_TEMPLATE if chat_template else None
    return tok


def no_template_tokenizer() -> PreTrainedTokenizerFast:
    """The BPE tokenizer without a chat template, as a base model ships it."""
    return bpe_tokenizer(chat_template=False)
