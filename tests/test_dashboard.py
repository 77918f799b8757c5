"""The dashboard in headless Chromium (Debian's ``chromium``, driven by playwright):
an alert raised by the real worker pipeline appears through the live stream, and a
screenshot shows it.

Without ``/usr/bin/chromium`` (or ``$WIREWATCH_CHROMIUM``) the test fails and says so,
unless ``WIREWATCH_SKIP_BROWSER=1``. Playwright never downloads a browser here.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from apiserver import ApiThread
from test_api import api_config, raise_seed_alert

CHROMIUM = os.environ.get("WIREWATCH_CHROMIUM", "/usr/bin/chromium")


def _browser_path() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("WIREWATCH_SKIP_BROWSER") == "1":
        pytest.skip("WIREWATCH_SKIP_BROWSER=1 and no Chromium")
    pytest.fail(
        f"no Chromium at {CHROMIUM}: install Debian's 'chromium' (make test does), set"
        " WIREWATCH_CHROMIUM, or WIREWATCH_SKIP_BROWSER=1 to skip the browser tests"
    )


def png_pixels(data: bytes) -> tuple[int, int, list[list[tuple[int, ...]]]]:
    """Width, height and rows of RGB(A) pixels of an 8-bit, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        chunks += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0
    size = 3 if colour == 2 else 4
    raw, stride, rows, prev = zlib.decompress(chunks), width * size, [], bytearray(width * size)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - size] if i >= size else 0
            b, c = prev[i], prev[i - size] if i >= size else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, [[tuple(row[i : i + 3]) for i in range(0, stride, size)] for row in rows]


@pytest.fixture
def browser() -> Iterator[object]:
    path = _browser_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, headless=True)
        yield chromium
        chromium.close()


def test_live_alert_appears_and_renders(
    browser: object, prefix: str, tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    config = api_config(prefix, tmp_path)
    with ApiThread(config, redis_url) as api:
        page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{api.url}/")
        page.wait_for_selector("body[data-stream='open']", timeout=10_000)
        assert page.inner_text("#no-alerts") == "No alerts yet."

        raise_seed_alert(config, redis_url, redis_client)  # while the page watches

        row = page.wait_for_selector(
            "#alert-rows tr[data-rule='china-military-aid']", timeout=15_000
        )
        assert "Russia sought China military aid" in row.inner_text()
        page.wait_for_function(
            "document.querySelector('#alert-rows td.channels')"
            ".textContent.includes('console: delivered')",
            timeout=10_000,
        )
        page.wait_for_selector("#hits-chart polyline[data-rule='china-military-aid']")
        page.wait_for_selector("#feed-rows tr")
        assert "Seed wire" in page.inner_text("#feed-rows")

        page.click("#alert-rows tr button.link")  # the story view
        page.wait_for_selector("#story-view ol.outlets li")
        assert "Russia sought China military aid" in page.inner_text("#story-view")

        page.wait_for_timeout(2100)  # the new row's highlight has faded
        shot = page.screenshot(full_page=False)
        box = row.bounding_box()
        page.close()
    assert not errors, errors
    width, height, pixels = png_pixels(shot)
    assert (width, height) == (1280, 900)
    assert len({pixel for line in pixels[::20] for pixel in line[::20]}) > 5  # not blank
    top, bottom = int(box["y"]) + 2, int(box["y"] + box["height"]) - 2
    region = {
        line[x]
        for line in pixels[top:bottom]
        for x in range(int(box["x"]), int(box["x"] + box["width"]))
    }
    white = (255, 255, 255)
    assert white not in region or len(region) > 3  # the row is drawn: not page background
    assert any(pixel != white for pixel in region) and len(region) > 3  # text on the row
