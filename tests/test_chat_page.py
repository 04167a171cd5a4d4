"""The chat page at ``/``, opened in headless Chromium: the answer grows token by token, Stop stops the server.

Uses the operating system's Chromium through Playwright's Python API (``executable_path``), never
a browser Playwright downloads. Skipped, saying why, when Playwright or Chromium is missing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
from typing import Any

import pytest

from asynclab import LLM, Span, Streamed, at_speed, text
from asynclab.server import create_app
from asynclab.serving import BackgroundServer

CHROMIUM = os.environ.get("ASYNCLAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
#: Flags for a headless run in a container: no sandbox (root), no GPU, and nothing that phones home.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
SCREENSHOT = "/tmp/asynclab-chat-page.png"
QUESTION = "How do retries with backoff work?"
#: Slow enough to watch at speed 1: 0.25 s a token, so the answer takes several seconds.
STREAM = Streamed(first_token=0.3, per_token=0.25)

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="playwright is not installed: pip install -e '.[test]'"),
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"no Chromium at {CHROMIUM}: apt-get install chromium (or set ASYNCLAB_CHROMIUM)"),
]


class WatchedLLM(LLM):
    """An LLM that keeps the spans of its calls: the server's side of a request, seen from the test."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.spans: list[Span] = []

    def _open(self, operation: str, key: str, items: int = 1) -> Span:
        span = super()._open(operation, key, items)
        self.spans.append(span)
        return span


async def test_the_page_streams_an_answer_and_stop_stops_the_server() -> None:
    from playwright.async_api import async_playwright

    llm = WatchedLLM(stream_latency=STREAM)
    with at_speed(1):
        async with BackgroundServer(create_app(llm=llm)) as server, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 900, "height": 640})
                await page.goto(server.url + "/")
                await page.wait_for_function("document.getElementById('status').textContent === 'connected'")
                await page.fill("#question", QUESTION)
                await page.click("#send")
                answer = page.locator(".assistant").last
                # The text grows: a few tokens, then more, while the Stop button is live.
                await page.wait_for_function("document.querySelector('.assistant').textContent.length > 0")
                early = await answer.text_content() or ""
                await page.wait_for_function(
                    f"document.querySelector('.assistant').textContent.length > {len(early) + 8}")
                later = await answer.text_content() or ""
                assert later.startswith(early) and len(later) > len(early)
                assert await page.is_enabled("#stop") and not await page.is_enabled("#send")
                await page.screenshot(path=SCREENSHOT)  # mid-answer, with the Stop button live
                await page.click("#stop")
                await page.wait_for_function("document.getElementById('status').textContent.startsWith('stopped')")
                stopped = await answer.text_content() or ""
                status = await page.text_content("#status") or ""
                await asyncio.sleep(3 * STREAM.per_token)  # three tokens' time: nothing more arrives
                final = await answer.text_content() or ""
                send_enabled = await page.is_enabled("#send")
                await page.screenshot(path=SCREENSHOT.replace(".png", "-stopped.png"))
            finally:
                await browser.close()
    produced = llm.spans[-1]
    full = await LLM().chat([{"role": "user", "content": QUESTION}])
    assert final == stopped and len(stopped) < len(full.content or "")
    shown = int(status.removeprefix("stopped after ").removesuffix(" tokens"))
    assert shown == len(text.tokenize(stopped)) >= 3  # the server's count is what the page shows
    assert produced.outcome == "cancelled" and llm.in_flight == 0  # the server stopped producing
    assert produced.end is not None
    whole = STREAM.first_token + STREAM.per_token * (produced.items - 1)
    assert produced.end - produced.start < whole - 2 * STREAM.per_token
    assert send_enabled
