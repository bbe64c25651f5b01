"""The page of `c2c serve` in a real browser: headless Debian Chromium driven by Playwright.

Needs `/usr/bin/chromium` (Debian's `chromium` package; `.ci/run` installs it) and the `playwright`
Python package; Playwright's own browser download is not used. Skipped when either is missing.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cache2cache.evaluation.modes import PAPER_T2T
from cache2cache.serving.app import ServeSettings
from serve_live import LiveServer, tiny_chat_pair

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip
sync_api = pytest.importorskip("playwright.sync_api")
# .ci/run sets C2C_REQUIRE_BROWSER=1, so a broken Chromium install fails there instead of skipping
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None and not os.environ.get("C2C_REQUIRE_BROWSER"),
    reason=f"{CHROMIUM} is missing (apt-get install chromium)",
)


@pytest.fixture(scope="module")
def live():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    settings = ServeSettings(batch_wait_ms=5, t2t=replace(PAPER_T2T, max_new_tokens=4), description="A tiny random pair for the test.",
                             example_prompt="What is the capital of France?")  # fmt: skip
    server = LiveServer(lambda: tiny_chat_pair(receiver_words=True), settings)
    yield server
    server.stop()
    torch.set_num_threads(threads)


def test_the_page_streams_three_columns_without_console_errors(live, tmp_path: Path):
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.goto(live.url + "/")
            assert page.locator("#pair").inner_text() == "A tiny random pair for the test."
            page.fill("#prompt", "Hello world, how are you today?")
            page.fill("#max-tokens", "6")
            page.click("#send")
            page.wait_for_function(
                "() => [...document.querySelectorAll('.col')].every(c => !c.classList.contains('busy')"
                " && c.querySelector('.out').textContent.trim() && c.querySelector('.total').textContent !== '\\u2013')",
                timeout=60_000,
            )
            for mode in ("receiver", "t2t", "c2c"):
                column = page.locator(f"#{mode}")
                assert column.locator(".out").inner_text().strip()
                assert "error" not in (column.locator(".out").get_attribute("class") or "")
                assert column.locator(".ttft").inner_text().endswith("s")
                float(column.locator(".rate").inner_text())
            page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
            print(f"screenshot: {tmp_path / 'serve.png'}")
            assert (tmp_path / "serve.png").stat().st_size > 10_000
            # every external resource would be a request to another host: there are none
            assert all(
                u.startswith(live.url)
                for u in page.evaluate("performance.getEntries().map(e => e.name)")
                if u.startswith("http")
            )
            assert problems == []
        finally:
            browser.close()
