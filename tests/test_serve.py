"""`c2c serve` against live servers on 127.0.0.1: the official `openai` client in every mode, dynamic
batching, every error status with OpenAI's error body, disconnects, and SIGTERM draining."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import openai
import pytest

from cache2cache import C2CModel, FuserConfig
from cache2cache.evaluation.modes import PAPER_T2T
from cache2cache.serving.app import ServeSettings
from serve_live import LiveServer, tiny_chat_pair
from tiny import tiny_receiver, tiny_sharer
from toy_tokenizers import bpe_tokenizer, wordlevel_tokenizer

T2T = replace(PAPER_T2T, max_new_tokens=6)
HELLO = [{"role": "user", "content": "Hello world, how are you today?"}]
PROMPTS = [
    "Hello world, how are you today?",
    "What is the capital of France?",
    "The quick brown fox jumps over the lazy dog.",
    "Two plus two is four.",
    "Please write a short poem about the sea.",
    "Where is the nearest train station?",
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return tiny_chat_pair()


@pytest.fixture(scope="module")
def live(model):
    server = LiveServer(
        lambda: model, ServeSettings(max_batch_size=8, batch_wait_ms=150, t2t=T2T, max_prompt_tokens=200)
    )
    yield server
    server.stop()


def client(server: LiveServer, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=60)


def chat(server: LiveServer, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(server.url + "/v1/chat/completions", json=body, headers=headers, timeout=60)


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


# ------------------------------------------------------------------------------ the openai client


@pytest.mark.parametrize("mode", ["c2c", "receiver", "sharer", "t2t"])
def test_openai_client_streaming_and_not_in_every_mode(live, model, mode):
    api = client(live)
    reply = api.chat.completions.create(model=mode, messages=HELLO, max_tokens=6, temperature=0)
    text = reply.choices[0].message.content
    assert reply.model == mode and reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= 6 and reply.usage.prompt_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert {"prefill_ms", "sharer_ms", "fuse_ms", "decode_ms"} <= set(reply.timing)
    if mode in ("c2c", "receiver"):  # what the library itself generates
        assert text == model.generate(HELLO, max_new_tokens=6, do_sample=False, fuse=mode == "c2c")
    if mode == "c2c":
        assert reply.timing["sharer_ms"] > 0 and reply.timing["fuse_ms"] > 0
    chunks = list(api.chat.completions.create(model=mode, messages=HELLO, max_tokens=6, temperature=0, stream=True,
                                              stream_options={"include_usage": True}))  # fmt: skip
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == reply.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens


def test_the_stream_ends_with_done_and_a_stop_string_ends_the_reply(live):
    body = {"model": "sharer", "messages": HELLO, "max_tokens": 8, "temperature": 0}
    full = chat(live, body).json()["choices"][0]["message"]["content"]
    assert len(full) > 3
    stop = full[2:4]
    cut = chat(live, {**body, "stop": [stop]}).json()["choices"][0]
    assert cut["message"]["content"] == full[: full.index(stop)] and cut["finish_reason"] == "stop"
    with httpx.stream("POST", live.url + "/v1/chat/completions", json={**body, "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"


def test_models_health_metrics_and_seeded_sampling(live):
    assert [m.id for m in client(live).models.list()] == ["c2c", "receiver", "sharer", "t2t"]
    assert httpx.get(live.url + "/health").json()["status"] == "ready"
    body = {"model": "receiver", "messages": HELLO, "max_tokens": 6, "temperature": 1.5, "top_p": 0.9, "seed": 7}
    assert (
        chat(live, body).json()["choices"][0]["message"]["content"]
        == chat(live, body).json()["choices"][0]["message"]["content"]
    )
    text = httpx.get(live.url + "/metrics").text
    for name in ("c2c_requests_total", "c2c_queue_depth", "c2c_batch_size_bucket", "c2c_request_latency_seconds_bucket",
                 "c2c_time_to_first_token_seconds_bucket", "c2c_generated_tokens_total"):  # fmt: skip
        assert name in text
    assert 'route="/v1/chat/completions",status="200"' in text


def test_auth_on_needs_the_bearer_key_on_every_v1_route(model):
    server = LiveServer(lambda: model, ServeSettings(api_key="s3cret", batch_wait_ms=0, t2t=T2T))
    try:
        good = client(server, "s3cret")
        assert good.chat.completions.create(model="receiver", messages=HELLO, max_tokens=3, temperature=0).choices
        assert "".join(c.choices[0].delta.content or "" for c in good.chat.completions.create(
            model="c2c", messages=HELLO, max_tokens=3, temperature=0, stream=True))  is not None  # fmt: skip
        with pytest.raises(openai.AuthenticationError):
            client(server, "wrong").chat.completions.create(model="c2c", messages=HELLO, max_tokens=3)
        with pytest.raises(openai.AuthenticationError):
            client(server, "wrong").models.list()
        assert_openai_error(chat(server, {"messages": HELLO}), 401, "invalid_api_key")
        assert_openai_error(httpx.get(server.url + "/v1/models"), 401, "invalid_api_key")
        assert httpx.get(server.url + "/health").status_code == 200  # outside /v1: no key needed
    finally:
        server.stop()


# ------------------------------------------------------------------------------ batching


def test_concurrent_greedy_requests_batch_and_give_the_texts_each_gives_alone(live):
    bodies = [{"model": "c2c", "messages": [{"role": "user", "content": p}], "max_tokens": 3 + i, "temperature": 0}
              for i, p in enumerate(PROMPTS)]  # fmt: skip
    alone = [chat(live, b).json()["choices"][0]["message"]["content"] for b in bodies]
    before = live.metric("c2c_batch_size_sum") - live.metric('c2c_batch_size_bucket{le="1.0"}')
    with ThreadPoolExecutor(len(bodies)) as pool:
        together = list(pool.map(lambda b: chat(live, b).json(), bodies))
    assert [r["choices"][0]["message"]["content"] for r in together] == alone
    assert max(r["timing"]["batch_size"] for r in together) > 1
    text = httpx.get(live.url + "/metrics").text
    count = float(next(line.split()[-1] for line in text.splitlines() if line.startswith("c2c_batch_size_count")))
    ones = float(
        next(line.split()[-1] for line in text.splitlines() if line.startswith('c2c_batch_size_bucket{le="1.0"}'))
    )
    assert count > ones  # some batch held more than one request
    assert live.metric("c2c_batch_size_sum") - live.metric('c2c_batch_size_bucket{le="1.0"}') > before


def test_a_client_that_disconnects_mid_stream_frees_its_batch_slot(live):
    tokens_before = live.metric("c2c_generated_tokens_total")
    body = {"model": "receiver", "messages": HELLO, "max_tokens": 400, "temperature": 0, "stream": True}
    with httpx.stream("POST", live.url + "/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                break  # the first real text: hang up
    deadline = time.monotonic() + 20
    while live.metric("c2c_active_rows") > 0:
        assert time.monotonic() < deadline, "the abandoned row kept generating"
        time.sleep(0.05)
    assert live.metric("c2c_generated_tokens_total") - tokens_before < 400


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "controls, equals",
    [
        ({"fusion_strength": 0}, "receiver"),
        ({"fuse_layers": []}, "receiver"),
        ({"fuse_proportion": 0}, "receiver"),
        ({"fusion_strength": 1, "fuse_proportion": 1}, "c2c"),
        ({"fusion_strength": 0.5, "fuse_layers": [0, 2]}, None),
    ],
)
def test_the_request_body_carries_the_fusion_controls(live, model, controls, equals):
    body = {"model": "c2c", "messages": HELLO, "max_tokens": 6, "temperature": 0, **controls}
    response = chat(live, body)
    assert response.status_code == 200, response.text
    if equals is not None:
        assert response.json()["choices"][0]["message"]["content"] == model.generate(
            HELLO, max_new_tokens=6, do_sample=False, fuse=equals == "c2c"
        )
    else:  # an interior point: exactly what the library gives with the same controls
        expected = model.generate(HELLO, max_new_tokens=6, do_sample=False, fusion_strength=0.5, fuse_layers=[0, 2])
        assert response.json()["choices"][0]["message"]["content"] == expected


def varied_pair() -> C2CModel:
    """Word-level receiver <- BPE sharer with weights drawn wide (initializer_range 0.2), open gates:
    its greedy answers vary from token to token, so fusing the response changes them."""
    rt, st = wordlevel_tokenizer(), bpe_tokenizer()
    receiver = tiny_receiver(vocab_size=len(rt), initializer_range=0.2)
    receiver.generation_config.pad_token_id, receiver.generation_config.eos_token_id = rt.pad_token_id, rt.eos_token_id
    fuser = FuserConfig(hidden_dim=16, intermediate_dim=16, num_layers=3, dropout=0.0, gate_init=3.0)
    return C2CModel.from_models(receiver, tiny_sharer(vocab_size=len(st), initializer_range=0.2), fuser=fuser,
                                receiver_tokenizer=rt, sharer_tokenizer=st, seed=0).eval()  # fmt: skip


@pytest.fixture(scope="module")
def varied():
    """A live server on `varied_pair()`; yields (server, model)."""
    model = varied_pair()
    server = LiveServer(lambda: model, ServeSettings(max_batch_size=4, batch_wait_ms=150, t2t=T2T))
    yield server, model
    server.stop()


def test_the_request_body_carries_include_response(varied):
    server, model = varied
    body = {"model": "c2c", "messages": HELLO, "max_tokens": 6, "temperature": 0, "include_response": True}
    response = chat(server, body)
    assert response.status_code == 200, response.text
    text = response.json()["choices"][0]["message"]["content"]
    assert text == model.generate(HELLO, max_new_tokens=6, do_sample=False, include_response=True)
    assert text != model.generate(HELLO, max_new_tokens=6, do_sample=False)  # the field was not ignored
    chunks = client(server).chat.completions.create(
        model="c2c", messages=HELLO, max_tokens=6, temperature=0, stream=True, extra_body={"include_response": True}
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    error = assert_openai_error(chat(server, {**body, "include_response": "sometimes"}), 400)
    assert error["param"] == "include_response"


CONTEXT = [{"role": "system", "content": "the quick brown fox jumps over the lazy dog ."}, *HELLO]


def test_the_request_body_carries_sharer_messages_and_batches_with_plain_requests(varied):
    server, model = varied
    body = {"model": "c2c", "messages": HELLO, "max_tokens": 6, "temperature": 0}
    with ThreadPoolExecutor(2) as pool:  # arriving together they usually share a batch
        two, plain = pool.map(lambda b: chat(server, b), [{**body, "sharer_messages": CONTEXT}, body])
    assert two.status_code == 200 and plain.status_code == 200, (two.text, plain.text)
    text = two.json()["choices"][0]["message"]["content"]
    assert text == model.generate(HELLO, sharer_messages=CONTEXT, max_new_tokens=6, do_sample=False)
    assert plain.json()["choices"][0]["message"]["content"] == model.generate(HELLO, max_new_tokens=6, do_sample=False)
    assert two.json()["usage"]["prompt_tokens"] == int(
        model.encode([HELLO], sharer_conversations=[CONTEXT]).attention_mask.sum()
    )
    both = chat(server, {**body, "sharer_messages": CONTEXT, "include_response": True})
    assert both.json()["choices"][0]["message"]["content"] == model.generate(
        HELLO, sharer_messages=CONTEXT, include_response=True, max_new_tokens=6, do_sample=False
    )
    for bad in ({"model": "receiver"}, {"sharer_messages": []}):
        error = assert_openai_error(chat(server, {**body, "sharer_messages": CONTEXT, **bad}), 400)
        assert error["param"].startswith("sharer_messages"), error


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": HELLO, "temperature": 3}, "temperature"),
        ({"messages": HELLO, "top_p": 0}, "top_p"),
        ({"messages": HELLO, "n": 2}, "n"),
        ({"messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": HELLO, "stream": "sometimes"}, "stream"),
        ({"model": "t2t", "messages": [{"role": "system", "content": "no question"}]}, "messages"),
        ({"messages": HELLO, "fusion_strength": -1}, "fusion_strength"),
        ({"messages": HELLO, "fuse_proportion": 1.5}, "fuse_proportion"),
        ({"messages": HELLO, "fuse_layers": [99]}, "fuse_layers"),
        ({"messages": HELLO, "fuse_layers": "all"}, "fuse_layers"),
        ({"model": "receiver", "messages": HELLO, "fusion_strength": 0.5}, "fusion_strength"),
    ],
)
def test_invalid_parameters_are_400_with_the_field_named(live, body, param):
    error = assert_openai_error(chat(live, body), 400)
    assert error["type"] == "invalid_request_error" and (error["param"] or "").startswith(param.split(".")[0])


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"", b"\xff\xfe", b'"text"', b"null"])
def test_malformed_json_is_400_not_422(live, raw):
    response = httpx.post(live.url + "/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    assert_openai_error(response, 400)


def test_unknown_model_is_404_and_unknown_routes_keep_the_error_shape(live):
    assert_openai_error(chat(live, {"model": "gpt-5", "messages": HELLO}), 404, "model_not_found")
    assert_openai_error(httpx.get(live.url + "/v1/nothing"), 404)
    assert_openai_error(httpx.get(live.url + "/v1/chat/completions"), 405)


def test_a_prompt_over_max_prompt_tokens_is_413(live):
    long = [{"role": "user", "content": "Hello world " * 300}]
    assert_openai_error(chat(live, {"messages": long, "max_tokens": 2}), 413, "context_length_exceeded")
    with httpx.stream("POST", live.url + "/v1/chat/completions", json={"messages": long, "stream": True}) as response:
        assert response.status_code == 413


def test_a_full_queue_is_429_and_a_slow_request_is_504(model):
    server = LiveServer(
        lambda: model, ServeSettings(max_batch_size=1, batch_wait_ms=0, max_queue=1, request_timeout_s=2.0, t2t=T2T)
    )
    try:
        # 5000 tokens take far longer than 2 s (HF generate alone costs over 1 ms a step)
        long = {"model": "receiver", "messages": HELLO, "max_tokens": 5000, "temperature": 0}
        first = httpx.stream("POST", server.url + "/v1/chat/completions", json={**long, "stream": True}, timeout=30)
        lines = first.__enter__().iter_lines()  # kept: a dropped line iterator closes the connection
        next(lines)  # running: the worker is busy
        waiting = threading.Thread(target=lambda: chat(server, long), daemon=True)
        waiting.start()
        deadline = time.monotonic() + 10
        while server.metric("c2c_queue_depth") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert_openai_error(chat(server, {"messages": HELLO, "max_tokens": 2}), 429, "queue_full")
        first.__exit__(None, None, None)
        waiting.join(30)
        assert_openai_error(chat(server, long), 504, "timeout")
        assert server.metric('c2c_requests_total{route="/v1/chat/completions",status="504"}') >= 1
    finally:
        server.stop()


def test_503_while_loading_then_ready(model):
    loaded = threading.Event()

    def slow_load():
        loaded.wait(30)
        return model

    server = LiveServer(slow_load, ServeSettings(t2t=T2T), wait_ready=False)
    try:
        assert_openai_error(httpx.get(server.url + "/health"), 503, "loading")
        assert_openai_error(chat(server, {"messages": HELLO}), 503, "loading")
        assert httpx.get(server.url + "/metrics").status_code == 200
        loaded.set()
        server.wait_ready()
        assert chat(server, {"messages": HELLO, "max_tokens": 2}).status_code == 200
    finally:
        server.stop()


def test_no_request_gets_a_500_or_a_traceback(live):
    bodies = [{"messages": HELLO, "max_tokens": 10**9, "stop": "\n"}, {"messages": [{"role": "user", "content": ""}], "max_tokens": 2},
              {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "max_tokens": 2},
              {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, {"messages": HELLO, "max_tokens": "many"},
              {"model": None, "messages": HELLO}, {"messages": HELLO, "seed": "x"}, {"messages": "hello"}]  # fmt: skip
    for body in bodies:
        response = chat(live, body)
        assert response.status_code in (200, 400, 404), (body, response.text)
        assert "Traceback" not in response.text
    assert httpx.get(live.url + "/health").status_code == 200


# ------------------------------------------------------------------------------ the CLI and SIGTERM


@pytest.fixture(scope="module")
def saved_pair(tmp_path_factory, model) -> Path:
    root = tmp_path_factory.mktemp("serve")
    for name, lm, tok in (
        ("receiver", model.receiver, model.receiver_tokenizer),
        ("sharer", model.sharer, model.sharer_tokenizer),
    ):
        lm.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    model.save_pretrained(root / "fuser")
    return root


def test_the_cli_prints_its_urls_and_sigterm_drains_in_flight_requests(saved_pair):
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [sys.executable, "-m", "cache2cache.cli.main", "serve", "--fuser", str(saved_pair / "fuser"), "--receiver", str(saved_pair / "receiver"),
            "--sharer", str(saved_pair / "sharer"), "--port", "0", "--t2t_max_tokens", "4", "--api-key", "k"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = proc.stdout.readline().split("listening on ")[1].split()[0]
        assert proc.stdout.readline().strip() == f"c2c serve: page: {url}/"
        deadline = time.monotonic() + 60
        while httpx.get(url + "/health").status_code != 200:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        headers = {"Authorization": "Bearer k"}
        body = {"model": "receiver", "messages": HELLO, "max_tokens": 300, "temperature": 0, "stream": True}
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, headers=headers, timeout=60) as response:
            lines = response.iter_lines()
            next(lines)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            assert_openai_error(httpx.post(url + "/v1/chat/completions", json=body, headers=headers), 503, "draining")
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]"
        assert json.loads(rest[-2][6:])["choices"][0]["finish_reason"] in ("stop", "length")
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
