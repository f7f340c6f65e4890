"""The page shows a queued job's place and plays a preview (issue 21), in Debian's Chromium
driven by Playwright against a real ``rhythmflow serve`` on 127.0.0.1. Bounded waits only."""

from __future__ import annotations

import pytest

from tests.servekit import Service, build_files, wait_for
from tests.test_serve_browser import BROWSER_ARGS, CHROMIUM, WAIT_MS, sync_api

pytestmark = pytest.mark.slow


def test_the_page_shows_the_queue_place_and_plays_a_preview(tmp_path):
    svc = Service(build_files(tmp_path / "files"), tmp_path)
    try:
        svc.serve("--no-worker")
        first = svc.submit(steps=20, seed=1)
        second = svc.submit(steps=8, seed=2, preview_every=2)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
            page = browser.new_page()
            page.set_default_timeout(WAIT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(svc.url + "/")
            page.locator(f"#history li[data-job-id='{second}'] button").click()
            text = page.locator("#progress-text")
            sync_api.expect(text).to_contain_text("position 2", timeout=WAIT_MS)
            svc.worker("w1")
            sync_api.expect(page.locator("#preview-box")).to_be_visible(timeout=WAIT_MS)
            sync_api.expect(page.locator("#preview-text")).to_contain_text("Preview at step")
            svc.done(first)
            svc.done(second)
            # the newest preview is loaded; the browser decodes and plays it
            wait_for("the preview to load", lambda: page.evaluate(
                "document.querySelector('#preview').duration > 0"), timeout=90)
            page.evaluate("document.querySelector('#preview').play()")
            wait_for("the preview to play", lambda: page.evaluate(
                "document.querySelector('#preview').currentTime > 0"), timeout=90)
            assert "step 8" in page.inner_text("#preview-text")
            browser.close()
        assert errors == [], f"JavaScript errors on the page: {errors}"
    finally:
        svc.close()
