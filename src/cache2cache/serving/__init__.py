"""`c2c serve`: an OpenAI-compatible HTTP server for a C2C pair, and its comparison page.

Translation only: HTTP requests become calls of `cache2cache.evaluation.modes.generate_mode`, run in dynamic
batches by one worker thread; no model logic lives here. Needs the `serve` extra (FastAPI, uvicorn,
prometheus_client).

    errors.py     OpenAI-shaped error bodies and the exception that carries them
    schema.py     the chat-completion request, validated into generation settings
    streaming.py  a Hugging Face streamer that splits a batch into per-request text streams
    batching.py   the queue and the worker thread that runs left-padded batches
    metrics.py    the Prometheus metrics of one app
    app.py        the FastAPI app: routes, auth, loading and draining states
    server.py     running the app under uvicorn, with SIGTERM draining
    static/       the comparison page (no external scripts or fonts)
"""
