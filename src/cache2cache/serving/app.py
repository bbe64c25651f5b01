"""The FastAPI app of `c2c serve`: OpenAI's chat-completions API over the four modes, and the page.

Routes: `POST /v1/chat/completions`, `GET /v1/models` (both behind `api_key` when set), `GET /health`
(200 once the models are loaded), `GET /metrics` (Prometheus) and `GET /` (the comparison page).

States: `loading` (the models load in a background thread; /v1 and /health answer 503), `ready`,
`draining` (after SIGTERM: new /v1 requests get 503 while in-flight ones finish) and `failed` (the
models could not load). Every error, whatever caused it, is an OpenAI error body.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..evaluation.modes import MODES, PAPER_T2T, T2TStyle
from ..model import C2CModel
from .batching import Batcher, Job, QueueFull
from .errors import APIError, error_body
from .metrics import ServerMetrics
from .schema import parse_chat_request
from .streaming import Finish

logger = logging.getLogger(__name__)

MODE_DESCRIPTIONS: dict[str, str] = {
    "c2c": "the receiver reading its cache fused with the sharer's (C2C)",
    "receiver": "the receiver alone (fusion off)",
    "sharer": "the sharer alone",
    "t2t": "text-to-text: the sharer writes background, the receiver reads it",
}


@dataclass(frozen=True)
class ServeSettings:
    """How the server batches, limits and describes itself.

    Attributes:
        api_key: When set, every /v1 route needs `Authorization: Bearer <api_key>`.
        max_batch_size: Most requests in one batch.
        batch_wait_ms: Longest wait for more requests to join a batch.
        max_queue: Most requests waiting; more get 429.
        request_timeout_s: Longest time from a request's arrival to its answer; longer gets 504.
        max_prompt_tokens: Longest prompt; longer gets 413.
        t2t: How the t2t mode asks for and reads background.
        description: One line about the pair, shown on the page.
        example_prompt: The prompt the page starts with.
    """

    api_key: str | None = None
    max_batch_size: int = 8
    batch_wait_ms: float = 10.0
    max_queue: int = 64
    request_timeout_s: float = 300.0
    max_prompt_tokens: int = 4096
    t2t: T2TStyle = PAPER_T2T
    description: str = ""
    example_prompt: str = ""

    def __post_init__(self) -> None:
        problems = [f"{name} must be > 0, got {getattr(self, name)}" for name in
                    ("max_batch_size", "max_queue", "request_timeout_s", "max_prompt_tokens") if getattr(self, name) <= 0]  # fmt: skip
        if self.batch_wait_ms < 0:
            problems.append(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}")
        if problems:
            raise ValueError("invalid server settings: " + "; ".join(problems))


@dataclass
class ServerState:
    """What the app knows about itself; `status` is loading, ready, draining or failed."""

    status: str = "loading"
    model: C2CModel | None = None
    batcher: Batcher | None = None
    error: str | None = None
    in_flight: int = 0
    metrics: ServerMetrics = field(default_factory=ServerMetrics)


def create_app(load: Callable[[], C2CModel], settings: ServeSettings | None = None) -> FastAPI:
    """The server app; `load` builds the pair in a background thread when the app starts.

    Args:
        load: Returns the `C2CModel` to serve (with both tokenizers); runs once, off the event loop.
        settings: Batching, limits, auth and the page's text.

    Returns:
        A FastAPI app; its `state.c2c` is the `ServerState`.
    """
    settings = settings or ServeSettings()
    state = ServerState()

    def load_models() -> None:
        try:
            model = load()
            if model.receiver_tokenizer is None or model.sharer_tokenizer is None:
                raise ValueError(
                    "serving chat needs both tokenizers on the C2CModel (receiver_tokenizer and sharer_tokenizer)"
                )
            for tok in {id(t): t for t in (model.receiver_tokenizer, model.sharer_tokenizer)}.values():
                tok.padding_side = "left"  # batches are left-padded; fixed once so no call has to switch it
            state.batcher = Batcher(model, state.metrics, max_batch_size=settings.max_batch_size, batch_wait_ms=settings.batch_wait_ms,
                                    max_queue=settings.max_queue, max_prompt_tokens=settings.max_prompt_tokens, t2t=settings.t2t)  # fmt: skip
            state.model = model
            if state.status != "loading":  # a shutdown began while loading
                return
            state.status = "ready"
            logger.info("models loaded; serving %s", ", ".join(MODES))
        except Exception as err:  # reported by /health and by the server runner, which then exits
            logger.exception("loading the models failed")
            state.error = f"{type(err).__name__}: {err}"
            state.status = "failed"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=load_models, name="c2c-load", daemon=True).start()
        yield
        if state.batcher is not None:
            await asyncio.to_thread(state.batcher.close, settings.request_timeout_s)

    app = FastAPI(title="cache2cache", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.c2c = state
    app.add_middleware(_Accounting, state=state)

    @app.exception_handler(APIError)
    async def api_error(request: Request, err: APIError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            error_body(400, f"invalid request: {err.errors()[0].get('msg')}", code="invalid_value"), status_code=400
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        message = f"{request.method} {request.url.path}: {err.detail}"
        return JSONResponse(
            error_body(err.status_code, message, code=None), status_code=err.status_code, headers=err.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body(500, "internal server error; the server log has the details", code="internal_error"),
            status_code=500,
        )

    def authorized_and_ready(request: Request) -> None:
        if settings.api_key:
            given = request.headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
                what = "no API key given" if not given else "the API key is wrong"
                raise APIError(
                    401,
                    f"{what}: send the header 'Authorization: Bearer <key>' with this server's --api-key",
                    code="invalid_api_key",
                )
        _require_ready(state)

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorized_and_ready)])

    @v1.get("/models")
    async def models() -> dict[str, Any]:
        created = 0
        return {"object": "list", "data": [{"id": m, "object": "model", "created": created, "owned_by": "cache2cache",
                                            "description": MODE_DESCRIPTIONS[m]} for m in MODES]}  # fmt: skip

    @v1.post("/chat/completions")
    async def chat_completions(request: Request) -> Response:
        arrived = time.perf_counter()
        req = parse_chat_request(await request.body())
        if req.mode not in MODES:
            raise APIError(
                404,
                f"the model {req.mode!r} does not exist; choose one of {', '.join(MODES)}",
                param="model",
                code="model_not_found",
            )
        if req.control.layers and state.model is not None:
            try:
                req.control.check_layers(state.model.config.fused_layers)
            except ValueError as err:
                raise APIError(400, str(err), param="fuse_layers", code="invalid_value") from None
        if req.mode == "t2t" and not any(m["role"] == "user" for m in req.messages):
            raise APIError(
                400, "t2t needs a user message to ask the sharer about", param="messages", code="invalid_value"
            )
        job = Job(req, asyncio.get_running_loop())
        try:
            state.batcher.submit(job)
        except QueueFull:
            raise APIError(
                429,
                f"the server's queue is full ({settings.max_queue} requests waiting); retry later",
                code="queue_full",
            ) from None
        stream = _Answer(job, state, settings, arrived)
        first = await stream.next_event()
        if first[0] == "error":
            state.batcher.cancel(job)
            raise first[1]
        if req.stream:
            return StreamingResponse(
                stream.sse(first), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
            )
        return JSONResponse(await stream.collect(first))

    app.include_router(v1)

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.status == "ready":
            return JSONResponse(
                {"status": "ready", "modes": list(MODES), "description": settings.description or _describe(state.model)}
            )
        return JSONResponse(_unavailable(state).body(), status_code=503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    page = _page(settings)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    return app


def _describe(model: C2CModel) -> str:
    """One line naming the pair, from the names its config records."""
    receiver = model.config.receiver.name_or_path or "the receiver"
    sharer = model.config.sharer.name_or_path or "the sharer"
    return f"Receiver {receiver} reads the KV-cache of sharer {sharer} through C2C fusers."


def _unavailable(state: ServerState) -> APIError:
    message = {
        "loading": "the models are still loading; retry in a moment (GET /health says when they are ready)",
        "draining": "the server is shutting down and takes no new requests",
        "failed": f"the models failed to load: {state.error}",
    }[state.status]
    return APIError(503, message, code=state.status)


def _require_ready(state: ServerState) -> None:
    if state.status != "ready":
        raise _unavailable(state)


def _page(settings: ServeSettings) -> str:
    text = resources.files("cache2cache.serving").joinpath("static/index.html").read_text(encoding="utf-8")
    return text.replace("__PAIR_DESCRIPTION__", html.escape(settings.description)).replace(
        "__EXAMPLE_PROMPT__", html.escape(settings.example_prompt)
    )


class _Answer:
    """One request's events turned into an OpenAI response (JSON or server-sent events)."""

    def __init__(self, job: Job, state: ServerState, settings: ServeSettings, arrived: float) -> None:
        self.job, self.state, self.settings, self.arrived = job, state, settings, arrived
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.first_text: float | None = None

    async def next_event(self) -> tuple[str, Any]:
        """The job's next event; a ("error", 504) event once the request's time is up."""
        remaining = self.arrived + self.settings.request_timeout_s - time.perf_counter()
        try:
            kind, payload = await asyncio.wait_for(self.job.events.get(), timeout=max(remaining, 0.0))
        except TimeoutError:
            self.state.batcher.cancel(self.job)
            message = (
                f"the request took longer than this server's request_timeout_s ({self.settings.request_timeout_s:g} s)"
            )
            return "error", APIError(504, message, code="timeout")
        if kind == "delta" and self.first_text is None:
            self.first_text = time.perf_counter()
            self.state.metrics.first_token.labels(mode=self.job.request.mode).observe(self.first_text - self.arrived)
        return kind, payload

    def _timing(self, finish: Finish) -> dict[str, float]:
        now = time.perf_counter()
        first = self.first_text or now
        self.state.metrics.latency.labels(mode=self.job.request.mode).observe(now - self.arrived)
        return {
            **finish.timing,
            "time_to_first_token_ms": round(1e3 * (first - self.arrived), 3),
            "total_ms": round(1e3 * (now - self.arrived), 3),
        }

    def _usage(self, finish: Finish) -> dict[str, int]:
        p, c = self.job.prompt_tokens, finish.completion_tokens
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    async def collect(self, event: tuple[str, Any]) -> dict[str, Any]:
        """The whole answer as a `chat.completion` object."""
        parts: list[str] = []
        while event[0] == "delta":
            parts.append(event[1])
            event = await self.next_event()
        if event[0] == "error":
            raise event[1]
        finish: Finish = event[1]
        return {
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.job.request.mode,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(parts)}, "logprobs": None,
                         "finish_reason": finish.reason}],
            "usage": self._usage(finish), "timing": self._timing(finish),
        }  # fmt: skip

    def _chunk(self, delta: dict[str, str], finish_reason: str | None = None, **extra: Any) -> str:
        body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.job.request.mode,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}], **extra}  # fmt: skip
        return f"data: {json.dumps(body)}\n\n"

    async def sse(self, event: tuple[str, Any]) -> AsyncIterator[str]:
        """The answer as `chat.completion.chunk` events, then `data: [DONE]`; the job is cancelled if the client goes."""
        finished = False
        try:
            yield self._chunk({"role": "assistant", "content": ""})
            while event[0] == "delta":
                yield self._chunk({"content": event[1]})
                event = await self.next_event()
            if event[0] == "finish":
                finish: Finish = event[1]
                yield self._chunk({}, finish.reason, timing=self._timing(finish))
                if self.job.request.include_usage:
                    body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                            "model": self.job.request.mode, "choices": [], "usage": self._usage(finish)}  # fmt: skip
                    yield f"data: {json.dumps(body)}\n\n"
            else:  # the status line is sent already; the error goes in the stream, as OpenAI's API does
                yield f"data: {json.dumps(event[1].body())}\n\n"
            yield "data: [DONE]\n\n"
            finished = True
        finally:
            if not finished:
                self.state.batcher.cancel(self.job)


class _Accounting:
    """ASGI middleware: counts requests by route and status, and the requests in flight (for draining)."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.state.in_flight += 1
        try:
            await self.app(scope, receive, send_and_record)
        finally:
            self.state.in_flight -= 1
            route = getattr(scope.get("route"), "path", "unmatched")
            self.state.metrics.requests.labels(route=route, status=str(status)).inc()
