"""The chat-completion request of OpenAI's API, validated into what one generation needs.

Supported fields: `model` (the mode: c2c, receiver, sharer, t2t), `messages` (string content, or a
list of `{"type": "text"}` parts), `max_tokens` / `max_completion_tokens`, `temperature`, `top_p`,
`stop`, `seed`, `stream`, `stream_options.include_usage` and `n` (1 only); and, beyond OpenAI's
schema, C2C's fusion controls `fusion_strength`, `fuse_layers`, `fuse_proportion` and
`include_response` (model `c2c` only; see `cache2cache.control`), and `sharer_messages`, a separate
conversation for the sharer (model `c2c` only; docs/method.md §1.6). Other OpenAI fields are accepted and ignored. As in OpenAI's API,
`temperature` defaults to 1 (sampling); 0 means greedy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..control import FusionControl
from .errors import APIError

DEFAULT_MAX_TOKENS = 256


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]]

    @field_validator("content")
    @classmethod
    def _text_parts_only(cls, value: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
        if isinstance(value, list):
            for part in value:
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ValueError("only text content parts ({'type': 'text', 'text': ...}) are supported")
        return value

    def text(self) -> str:
        """The content as one string (text parts joined)."""
        return self.content if isinstance(self.content, str) else "".join(p["text"] for p in self.content)


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class _ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = "c2c"
    messages: list[_Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: _StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    fusion_strength: float | None = None
    fuse_layers: list[int] | None = None
    fuse_proportion: float | None = None
    include_response: bool | None = None
    sharer_messages: list[_Message] | None = Field(default=None, min_length=1)

    @field_validator("stop")
    @classmethod
    def _at_most_four(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and (len(value) > 4 or any(not s for s in value)):
            raise ValueError("stop takes at most 4 non-empty strings")
        if value == "":
            raise ValueError("stop must not be empty")
        return value


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat-completion request.

    Attributes:
        mode: What the `model` field names (checked against the modes by the app: 404 if unknown).
        messages: The conversation as `{"role", "content"}` dicts ("developer" becomes "system").
        max_tokens: Most tokens to generate.
        do_sample: False for greedy decoding (temperature 0).
        temperature: Sampling temperature (with `do_sample`).
        top_p: Nucleus mass (with `do_sample`).
        stop: Strings that end the reply (not included in it).
        seed: Seed for sampling.
        stream: Answer with server-sent events.
        include_usage: Streaming: send a last chunk with `usage`.
        control: Fusion strength, layer subset, proportion and `include_response` (plain C2C by default).
        sharer_messages: The sharer's own conversation (model c2c), or None: it reads `messages`.
    """

    mode: str
    messages: list[dict[str, str]]
    max_tokens: int
    do_sample: bool
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None
    stream: bool
    include_usage: bool
    control: FusionControl = FusionControl()
    sharer_messages: list[dict[str, str]] | None = None

    def batch_key(self) -> tuple[Any, ...]:
        """Requests with equal keys can share one batch (same mode, same decoding settings)."""
        if not self.do_sample:
            return (self.mode, self.control, False)
        return (self.mode, self.control, True, self.temperature, self.top_p, self.seed)


def parse_chat_request(raw: bytes) -> ChatRequest:
    """Validate a request body.

    Raises:
        APIError: 400 for malformed JSON or an invalid field, naming the field in `param`.
    """
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise APIError(400, f"the request body is not valid JSON: {err}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    try:
        req = _ChatRequest.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        message = first["msg"].removeprefix("Value error, ")
        raise APIError(400, f"invalid value for {param!r}: {message}", param=param, code="invalid_value") from None
    if (
        req.max_tokens is not None
        and req.max_completion_tokens is not None
        and req.max_tokens != req.max_completion_tokens
    ):
        raise APIError(
            400,
            "max_tokens and max_completion_tokens disagree; give one of them",
            param="max_tokens",
            code="invalid_value",
        )
    controls = {
        k: v
        for k in ("fusion_strength", "fuse_layers", "fuse_proportion", "include_response")
        if (v := getattr(req, k)) is not None
    }
    try:
        control = FusionControl.from_kwargs(**controls)
    except ValueError as err:
        raise APIError(400, str(err), param=next(iter(controls)), code="invalid_value") from None
    if controls and req.model != "c2c":
        raise APIError(
            400,
            f"{', '.join(controls)} only apply to model 'c2c', not {req.model!r}",
            param=next(iter(controls)),
            code="invalid_value",
        )
    if req.sharer_messages is not None and req.model != "c2c":
        raise APIError(
            400,
            f"sharer_messages only apply to model 'c2c', not {req.model!r}; drop it or use model 'c2c'",
            param="sharer_messages",
            code="invalid_value",
        )
    temperature = 1.0 if req.temperature is None else req.temperature
    stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    messages = _plain_messages(req.messages)
    return ChatRequest(
        mode=req.model,
        messages=messages,
        max_tokens=req.max_completion_tokens or req.max_tokens or DEFAULT_MAX_TOKENS,
        do_sample=temperature > 0,
        temperature=temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        stop=stop,
        seed=req.seed,
        stream=req.stream,
        include_usage=bool(req.stream_options and req.stream_options.include_usage),
        control=control,
        sharer_messages=None if req.sharer_messages is None else _plain_messages(req.sharer_messages),
    )


def _plain_messages(messages: list[_Message]) -> list[dict[str, str]]:
    """`{"role", "content"}` dicts, "developer" read as "system"."""
    return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in messages]
