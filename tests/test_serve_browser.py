"""The page in a real browser: Debian's Chromium driven by Playwright, against a real
``rhythmflow serve`` process on 127.0.0.1 (tiny random checkpoint in the official format, tiny
TorchScript VAE, a style embedding file the page reads). Every wait is bounded; nothing is timed.

Needs ``/usr/bin/chromium`` (apt ``chromium``) and the ``playwright`` package (no browser
download): ``bash scripts/setup.sh test`` installs both.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rhythmflow.testing import TINY, build_tiny_vae, random_dit, save_checkpoint

pytestmark = pytest.mark.slow

try:
    from playwright import sync_api
except ImportError:  # a failure, never a skip: the README's test command installs it
    pytest.fail("playwright is missing: pip install -e '.[serve-test]' (scripts/setup.sh test)",
                pytrace=False)
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.fail("Debian chromium is missing: apt-get install chromium (scripts/setup.sh test)",
                pytrace=False)

CFG = dataclasses.replace(TINY, depth=1, dim=32 * 2)
LRC = "[00:01.00]Hello little song\n[00:03.50]Another line of words\n[00:06.00]The end\n"
BAD_LRC = "[00:01.00]Hello little song\n[00:75.00]bad seconds\n[00:06.00]The end\n"
LONG_STEPS = 400  # a job that is still running when the test cancels it
WAIT_MS = 90_000  # upper bound of any single wait in the browser (a busy CI machine)
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--autoplay-policy=no-user-gesture-required"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``rhythmflow serve`` as a child process; :meth:`stop` sends SIGTERM, then SIGKILL."""

    def __init__(self, args: list[str], log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = log
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rhythmflow", "serve", "--host", "127.0.0.1",
                 "--port", str(self.port), *args],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"serve exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "api/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"serve did not answer within {timeout:.0f} s:\n{self.log.read_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        return self.proc.returncode


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve-browser")
    style = d / "style.npy"
    np.save(style, np.random.default_rng(0).standard_normal((1, 512)).astype(np.float32))
    return {
        "ckpt": save_checkpoint(random_dit(CFG, seed=7), d / "cfm_model.pt"),
        "vae": build_tiny_vae(d / "vae_model.pt"),
        "style": style,
        "data": d / "data",
        "dir": d,
    }


def serve_args(files) -> list[str]:
    return ["--data-dir", str(files["data"]), "--checkpoint", str(files["ckpt"]),
            "--vae", str(files["vae"]), "--offline",
            "--assets-dir", os.environ["RHYTHMFLOW_ASSETS_DIR"]]


@pytest.fixture(scope="module")
def server(files):
    srv = Server(serve_args(files), files["dir"] / "serve.log")
    srv.wait_ready()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        yield b
        b.close()


def open_page(browser, url: str):
    """A page at ``url`` (1100 × 900, every wait bounded by WAIT_MS); on the way out, no
    JavaScript error may have happened on it."""
    ctx = browser.new_context(viewport={"width": 1100, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(url)
    yield pg
    ctx.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(browser, server):
    yield from open_page(browser, server.url)


def choose_style(page, files) -> None:
    """The style embedding file (the page reads the .npy and sends its 512 numbers)."""
    page.check("input[name=style-mode][value=embedding]")
    page.set_input_files("#style-embedding", str(files["style"]))
    sync_api.expect(page.locator("#embedding-info")).to_contain_text("512 numbers read")


def fill_song(page, files, *, lrc: str = LRC, steps: int = 3, seed: int = 11) -> None:
    """LRC, the style embedding file, steps and seed; waits for the plan's estimate."""
    choose_style(page, files)
    page.fill("#lyrics-input", lrc)
    page.fill("#steps", str(steps))
    page.fill("#seed", str(seed))
    plan = page.locator("#plan")  # the plan of these very settings (a chosen seed is shown)
    sync_api.expect(plan).to_contain_text(f"{steps} steps", timeout=WAIT_MS)
    sync_api.expect(plan).to_contain_text(f"seed {seed}", timeout=WAIT_MS)
    expect_plan(page)


def expect_plan(page) -> str:
    plan = page.locator("#plan")
    sync_api.expect(plan).to_contain_text("Estimated time", timeout=WAIT_MS)
    return plan.inner_text()


def wait_js(page, expression: str) -> None:
    """Until ``expression`` is truthy in the page, polled with ``page.evaluate`` (Playwright's
    ``wait_for_function`` evaluates a string in the page, which its Content-Security-Policy
    refuses: no 'unsafe-eval'). Bounded by WAIT_MS."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {WAIT_MS / 1000:.0f} s: {expression}")
        time.sleep(0.05)


def progress_step(page) -> tuple[int, int] | None:
    m = re.search(r"Step (\d+)/(\d+)", page.inner_text("#progress-text"))
    return (int(m[1]), int(m[2])) if m else None


def wait_status(page, status: str) -> None:
    sync_api.expect(page.locator("#job-status")).to_have_text(status, timeout=WAIT_MS)


def wait_audio_decoded(page) -> None:
    """Until the first result's player knows its duration (the browser decoded the file)."""
    wait_js(page, "(document.querySelector('#results audio') || {}).duration > 0")


def api_json(server, path: str) -> dict:
    with urllib.request.urlopen(server.url + path, timeout=30) as r:
        return json.loads(r.read())


def test_lrc_errors_are_shown_on_their_line_and_the_plan_once_fixed(page, files):
    choose_style(page, files)
    page.fill("#lyrics-input", BAD_LRC)
    issue = page.locator("#lyrics-issues .error-line")
    sync_api.expect(issue).to_contain_text(re.compile(r"\bline 2\b", re.I), timeout=WAIT_MS)
    sync_api.expect(page.locator("#lyrics-input")).to_have_attribute("aria-invalid", "true")
    sync_api.expect(page.locator("#gutter .bad")).to_have_text("2")
    sync_api.expect(page.locator("#line-notes .note.bad[data-line='2']")).to_contain_text(
        "impossible timestamp")
    sync_api.expect(page.locator("#plan")).not_to_contain_text("Estimated")
    page.click("#lyrics-issues button")  # "Go to line 2" selects that line in the editor
    selected = page.evaluate("(() => { const t = document.querySelector('#lyrics-input');"
                             " return t.value.slice(t.selectionStart, t.selectionEnd); })()")
    assert selected == "[00:75.00]bad seconds"
    fill_song(page, files, steps=7)
    sync_api.expect(page.locator("#lyrics-issues .error-line")).to_have_count(0)
    assert page.locator("#gutter .bad").count() == 0
    sync_api.expect(page.locator("#plan")).to_contain_text("7 steps", timeout=WAIT_MS)
    page.fill("#steps", "0")  # a settings field's error is shown at that field, never the lyrics
    sync_api.expect(page.locator("#steps-issue")).to_contain_text("steps", timeout=WAIT_MS)
    sync_api.expect(page.locator("#steps")).to_have_attribute("aria-invalid", "true")
    sync_api.expect(page.locator("#lyrics-issues .error-line")).to_have_count(0)
    page.fill("#steps", "7")
    expect_plan(page)
    sync_api.expect(page.locator("#steps")).not_to_have_attribute("aria-invalid", "true")
    sync_api.expect(page.locator("#steps-issue")).to_be_empty()


def test_every_problem_is_shown_at_its_own_field(page, files):
    """A bad LRC line typed while the style is still empty: the line's error in the gutter at
    that line (marker and note) and in the list under the editor, the style's error at the
    style field — neither under the other; fixing both clears both."""
    page.fill("#lyrics-input", BAD_LRC)
    row = page.locator("#gutter .ln[data-line='2']")
    sync_api.expect(row).to_have_class(re.compile(r"\bbad\b"), timeout=WAIT_MS)
    sync_api.expect(row).to_have_attribute("title", re.compile(r"LRC line 2: .*00:75"))
    sync_api.expect(page.locator("#gutter .bad")).to_have_count(1)
    note = page.locator("#line-notes .note.bad")
    sync_api.expect(note).to_have_count(1)
    sync_api.expect(note).to_have_attribute("data-line", "2")
    sync_api.expect(note).to_contain_text("impossible timestamp [00:75.00]")
    assert note.is_visible()
    style = page.locator("#style-issues")
    sync_api.expect(style).to_contain_text("give exactly one style")
    sync_api.expect(page.locator("#style-prompt")).to_have_attribute("aria-invalid", "true")
    lyrics = page.locator("#lyrics-issues")
    sync_api.expect(lyrics.locator(".error-line")).to_have_count(1)
    sync_api.expect(lyrics).to_contain_text("LRC line 2")
    sync_api.expect(lyrics).not_to_contain_text("style")  # never one field's message under another
    sync_api.expect(style).not_to_contain_text("LRC")
    sync_api.expect(page.locator("#plan")).to_contain_text("Fix the 2 problems")
    # a second bad line is marked too, at its own line
    page.fill("#lyrics-input", BAD_LRC + "[00:0x]bad stamp\n")
    sync_api.expect(page.locator("#gutter .bad")).to_have_count(2, timeout=WAIT_MS)
    sync_api.expect(page.locator("#gutter .ln[data-line='4']")).to_have_class(
        re.compile(r"\bbad\b"))
    sync_api.expect(page.locator("#line-notes .note.bad[data-line='4']")).to_contain_text(
        "malformed timestamp")
    # fix both: every mark goes, the plan comes
    page.fill("#lyrics-input", LRC)
    page.fill("#style-prompt", "upbeat indie pop")  # a valid request (planned, never generated)
    sync_api.expect(page.locator("#gutter .bad")).to_have_count(0, timeout=WAIT_MS)
    sync_api.expect(page.locator("#line-notes .note.bad")).to_have_count(0)
    sync_api.expect(style).to_be_empty()
    sync_api.expect(page.locator("#style-prompt")).not_to_have_attribute("aria-invalid", "true")
    sync_api.expect(page.locator("#lyrics-issues .error-line")).to_have_count(0)
    sync_api.expect(page.locator("#lyrics-input")).not_to_have_attribute("aria-invalid", "true")


def test_lint_warnings_are_marked_in_the_gutter_apart_from_errors(page, files):
    """The plan's lint findings (warnings, not errors) are marked by line, in their own style;
    the request stays valid and the plan is shown."""
    choose_style(page, files)
    lint_lrc = "[00:01.00]Hello little song\n[00:01.00]Same time again\n[00:06.00]The end\n"
    page.fill("#lyrics-input", lint_lrc)
    expect_plan(page)
    warn = page.locator("#gutter .warn")
    sync_api.expect(warn.first).to_be_visible(timeout=WAIT_MS)
    sync_api.expect(page.locator("#gutter .ln[data-line='2']")).to_have_class(
        re.compile(r"\bwarn\b"))
    sync_api.expect(page.locator("#gutter .bad")).to_have_count(0)
    note = page.locator("#line-notes .note.warn[data-line='2']")
    sync_api.expect(note).to_contain_text("duplicate")
    sync_api.expect(page.locator("#lyrics-issues .warn-line").first).to_contain_text("Lint")
    sync_api.expect(page.locator("#lyrics-issues .error-line")).to_have_count(0)
    sync_api.expect(page.locator("#lyrics-input")).not_to_have_attribute("aria-invalid", "true")
    colors = page.evaluate("""() => {
        const probe = document.createElement('span');
        probe.style.color = 'var(--error)';
        document.body.append(probe);
        const error = getComputedStyle(probe).color;
        probe.remove();
        return [error, ...['#gutter .warn', '#line-notes .note.warn']
            .map((s) => getComputedStyle(document.querySelector(s)).color)];
    }""")
    assert colors[0] not in colors[1:]  # a warning is not drawn as an error
    page.fill("#lyrics-input", LRC)  # (its last line may still be marked: the 95 s model drops it)
    sync_api.expect(page.locator("#gutter .ln[data-line='2']")).not_to_have_class(
        re.compile(r"\bwarn\b"), timeout=WAIT_MS)
    sync_api.expect(page.locator("#line-notes .note[data-line='2']")).to_have_count(0)


def test_plain_lyrics_and_reference_audio_are_planned(page, files, tmp_path):
    """Plain (untimed) lyrics go as ``lyrics``; a reference audio file goes as multipart
    (``request`` JSON + ``style_audio``). Both are planned by the server without an error."""
    choose_style(page, files)
    page.check("input[name=lyrics-mode][value=lyrics]")
    sync_api.expect(page.locator("#lyrics-label")).to_contain_text("Plain lyrics")
    page.fill("#lyrics-input", "Hello little song\nAnother line of words\nThe end\n")
    assert "Estimated time" in expect_plan(page)
    sync_api.expect(page.locator("#lyrics-issues .error-line")).to_have_count(0)
    ref = tmp_path / "reference.wav"
    t = np.arange(12 * 44100) / 44100
    sf.write(ref, np.stack([np.sin(2 * np.pi * 220 * t)] * 2, axis=1) * 0.3, 44100)
    page.check("input[name=style-mode][value=audio]")
    sync_api.expect(page.locator("#style-audio")).to_be_visible()
    sync_api.expect(page.locator("#style-embedding")).to_be_hidden()
    with page.expect_request(lambda r: r.url.endswith("/api/validate")
                             and "multipart/form-data" in (r.headers.get("content-type") or "")):
        page.set_input_files("#style-audio", str(ref))
    page.fill("#steps", "9")
    sync_api.expect(page.locator("#plan")).to_contain_text("9 steps", timeout=WAIT_MS)
    sync_api.expect(page.locator("#lyrics-issues .error-line")).to_have_count(0)


def test_cancel_resume_finish_play_and_history_after_reload(page, files, server):
    # a long job: watch its progress change, then cancel it
    fill_song(page, files, steps=LONG_STEPS, seed=5)
    page.click("#generate")
    wait_js(page,
        "/Step [1-9]\\d*\\/\\d+/.test(document.querySelector('#progress-text').textContent)")
    first = progress_step(page)
    assert first is not None and first[1] == LONG_STEPS
    wait_js(page,
        f"(() => {{ const m = /Step (\\d+)\\//.exec(document.querySelector('#progress-text')"
        f".textContent); return m && Number(m[1]) > {first[0]}; }})()")
    long_id = page.inner_text("#job-id").removeprefix("Job ").strip()
    page.click("#cancel")
    wait_status(page, "cancelled")
    sync_api.expect(page.locator("#resume")).to_be_enabled()
    sync_api.expect(page.locator("#cancel")).to_be_disabled()
    stopped = api_json(server, f"api/jobs/{long_id}")
    assert stopped["status"] == "cancelled" and 0 < stopped["progress"]["step"] < LONG_STEPS

    # resume it: it goes on from where it stopped (never backwards), then cancel it again
    page.click("#resume")
    wait_js(page,
        f"(() => {{ const m = /Step (\\d+)\\//.exec(document.querySelector('#progress-text')"
        f".textContent); return m && Number(m[1]) > {stopped['progress']['step']}; }})()")
    page.click("#cancel")
    wait_status(page, "cancelled")

    # a short job that finishes: player, download link, waveform
    fill_song(page, files, steps=3, seed=11)
    page.click("#generate")
    wait_js(page, "document.querySelector('#job-id').textContent !== "
                           f"'Job {long_id}'")
    wait_status(page, "completed")
    done_id = page.inner_text("#job-id").removeprefix("Job ").strip()
    sync_api.expect(page.locator("#progress-text")).to_contain_text("Step 3/3")
    audio = page.locator("#results audio").first
    wait_audio_decoded(page)
    duration = audio.evaluate("a => a.duration")
    assert 90 < duration < 100  # the browser decoded the 95 s song
    canvas = page.locator("#results canvas").first
    sync_api.expect(canvas).to_have_attribute("data-duration", re.compile(r"^9\d\.\d+$"))
    assert canvas.evaluate(  # min/max peaks were drawn: some pixels are not transparent
        "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
        ".some((v, i) => i % 4 === 3 && v > 0)")
    href = page.locator("#results a[download]").first.get_attribute("href")
    assert href and f"/api/jobs/{done_id}/audio" in href
    audio.evaluate("a => { a.muted = true; return a.play(); }")
    wait_js(page, "(document.querySelector('#results audio') || {}).currentTime > 0")

    # history comes from the server: both jobs are there after a reload, newest first
    page.reload()
    rows = page.locator("#history li[data-job-id]")
    sync_api.expect(rows.first).to_have_attribute("data-job-id", done_id, timeout=WAIT_MS)
    ids = rows.evaluate_all("rs => rs.map(r => r.dataset.jobId)")
    assert ids.index(done_id) < ids.index(long_id)
    row = page.locator(f"#history li[data-job-id='{long_id}']")
    sync_api.expect(row.locator(".badge")).to_have_text("cancelled")
    sync_api.expect(page.locator(f"#history li[data-job-id='{done_id}'] .badge")).to_have_text(
        "completed")
    row.locator("button").click()  # open the cancelled job from the history
    wait_status(page, "cancelled")
    sync_api.expect(page.locator("#resume")).to_be_enabled()


def test_narrow_screen_has_no_sideways_scroll(browser, server, files, tmp_path):
    ctx = browser.new_context(viewport={"width": 375, "height": 740}, device_scale_factor=2,
                              is_mobile=True, has_touch=True)
    page = ctx.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(server.url)
        fill_song(page, files, steps=3)
        page.click("#generate")
        wait_status(page, "completed")
        page.wait_for_selector("#results canvas[data-duration]")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        for sel in ("#generate", "#lyrics-input", "#cancel", "#results audio", "#history"):
            box = page.locator(sel).first.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, sel
        shot = Path(os.environ.get("RHYTHMFLOW_SCREENSHOT_DIR", tmp_path)) / "page-375.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 0
    finally:
        ctx.close()


def test_keyboard_only_submit(page, files):
    # the native file chooser is outside the page: the file is set directly, the rest by keys
    choose_style(page, files)
    for _ in range(40):  # bounded: Tab through the page to the editor
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "lyrics-input":
            break
    assert page.evaluate("document.activeElement.id") == "lyrics-input"
    page.keyboard.type(LRC)
    seen: list[str] = []
    for _ in range(40):  # on to the steps field, the seed field and the Generate button
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.id")
        seen.append(focused)
        if focused in ("steps", "seed"):
            page.keyboard.press("Control+A")
            page.keyboard.type("3" if focused == "steps" else "21")
        if focused == "generate":
            break
    assert seen[-1] == "generate", seen
    assert {"steps", "seed"} <= set(seen)
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")  # the focused button is visibly marked
    expect_plan(page)
    page.keyboard.press("Enter")
    wait_status(page, "completed")
    job = page.inner_text("#job-id").removeprefix("Job ").strip()
    assert job and page.locator("#results audio").count() == 1
    sync_api.expect(page.locator("#progress-text")).to_contain_text("Step 3/3")


def test_api_key_is_asked_for_and_sent_and_history_survives_a_restart(browser, files, tmp_path):
    """A server with --api-key: the page asks for the key on the first 401, then sends it on
    every call (events read as a stream, audio fetched and played from a local copy). The
    server is then stopped and started again on the same data: the reloaded page lists the
    job (the key is remembered for the tab)."""
    key = "page-test-key"
    data = dict(files, data=tmp_path / "data")
    srv = Server([*serve_args(data), "--api-key", key], tmp_path / "serve-key.log")
    ctx = browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        srv.wait_ready()
        page = ctx.new_page()
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(srv.url)
        dialog = page.locator("#key-dialog")
        sync_api.expect(dialog).to_be_visible()
        sync_api.expect(page.locator("#key-input")).to_be_focused()
        page.keyboard.type("wrong-key")
        page.keyboard.press("Enter")
        sync_api.expect(dialog).to_be_visible()  # 401 again: asked again
        page.fill("#key-input", key)
        page.keyboard.press("Enter")
        sync_api.expect(dialog).to_be_hidden()
        sync_api.expect(page.locator("#history")).to_contain_text("No jobs yet")
        fill_song(page, files, steps=2, seed=3)
        page.click("#generate")
        wait_status(page, "completed")
        sync_api.expect(page.locator("#progress-text")).to_contain_text("Step 2/2")
        wait_audio_decoded(page)
        src = page.locator("#results audio").first.get_attribute("src")
        assert src and src.startswith("blob:")  # <audio> cannot send the key itself
        job_id = page.inner_text("#job-id").removeprefix("Job ").strip()

        srv.stop()
        srv = Server([*serve_args(data), "--api-key", key], tmp_path / "serve-key.log",
                     port=srv.port)
        srv.wait_ready()
        page.reload()
        row = page.locator(f"#history li[data-job-id='{job_id}']")
        sync_api.expect(row.locator(".badge")).to_have_text("completed", timeout=WAIT_MS)
        sync_api.expect(dialog).to_be_hidden()
        row.locator("button").click()
        wait_audio_decoded(page)
        assert errors == [], errors
    finally:
        ctx.close()
        srv.stop()


def test_progress_falls_back_to_polling_without_event_stream(page, files):
    """With the event stream refused (a proxy that drops SSE, say), progress and the result
    still arrive by polling GET /api/jobs/{id}."""
    refused: list[str] = []

    def refuse(route):
        refused.append(route.request.url)
        route.abort()

    page.route("**/api/jobs/*/events", refuse)
    fill_song(page, files, steps=4, seed=8)
    page.click("#generate")
    wait_status(page, "completed")
    sync_api.expect(page.locator("#progress-text")).to_contain_text("Step 4/4")
    wait_audio_decoded(page)
    assert refused  # the page did try the stream first
