"""The page's review of a finished job in a real browser (Debian's Chromium via Playwright)
against a real ``rhythmflow serve --asr-command`` (a scripted recogniser): each line's verdict
in the lyrics gutter, numbered as in the user's LRC; the takes side by side, best first, with
their scores; "Regenerate this line" submits an edit job on that line's span. Every wait is
bounded; nothing is timed."""

from __future__ import annotations

import re

import pytest

from tests.test_serve_browser import (
    WAIT_MS,
    Server,
    api_json,
    fill_song,
    open_page,
    serve_args,
    sync_api,
    wait_status,
)
from tests.test_serve_browser import browser as browser  # noqa: F401 (fixtures)
from tests.test_serve_browser import files as files  # noqa: F401
from tests.test_serve_review import ears, hear

pytestmark = pytest.mark.slow
# a blank line first: the user's LRC line k+1 is the song's .lrc line k (source_line maps them)
LRC = "\n[00:01.00]Hello little song\n[00:03.50]Another line of words\n[00:06.00]The end\n"


@pytest.fixture(scope="module")
def reviewing(files, tmp_path_factory):  # noqa: F811
    folder = tmp_path_factory.mktemp("review-browser")
    template, state = ears(folder / "ears")
    args = serve_args(files)
    args[args.index("--data-dir") + 1] = str(folder / "data")
    srv = Server([*args, "--asr-command", template], folder / "serve.log")
    srv.wait_ready()
    srv.state = state
    yield srv
    srv.stop()


@pytest.fixture
def page(browser, reviewing):  # noqa: F811
    yield from open_page(browser, reviewing.url)


def job_id(page) -> str:
    return page.inner_text("#job-id").removeprefix("Job ").strip()


def test_verdicts_in_the_gutter_takes_side_by_side_and_regenerate_a_line(page, files,  # noqa: F811
                                                                         reviewing):
    # take 1 (seed 11): both lines mis-heard; take 2 (seed 12): only its second line
    hear(reviewing.state, [True, True, False, True])
    fill_song(page, files, lrc=LRC, steps=3, seed=11)
    page.fill("#takes", "2")
    page.check("#check")
    page.click("#generate")
    wait_status(page, "completed")
    first = job_id(page)

    rows = page.locator("#sung-lyrics .sung-line")
    sync_api.expect(rows).to_have_count(2, timeout=WAIT_MS)
    # numbered as the user's LRC (its line 1 is blank): lines 2 and 3
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.line)") == ["2", "3"]
    sung = page.locator("#sung-lyrics .sung-line[data-line='2']")
    sync_api.expect(sung).to_have_class(re.compile(r"\bverdict-sung\b"))
    sync_api.expect(sung.locator(".ln")).to_have_text("2")
    sync_api.expect(sung.locator(".ln")).to_have_attribute("title", re.compile(r"PER 0\.00"))
    sync_api.expect(sung.locator(".verdict")).to_have_text("sung · PER 0.00")
    bad = page.locator("#sung-lyrics .sung-line[data-line='3']")
    sync_api.expect(bad).to_have_class(re.compile(r"\bverdict-(garbled|missing)\b"))
    sync_api.expect(bad.locator(".verdict")).to_contain_text(re.compile(r"(garbled|missing)"))

    takes = page.locator("#results.takes > li")
    sync_api.expect(takes).to_have_count(2)
    sync_api.expect(takes.nth(0).locator("h3")).to_contain_text("seed 12")  # the better take
    sync_api.expect(takes.nth(0).locator(".scores")).to_contain_text("Take 1 (best)")
    sync_api.expect(takes.nth(1).locator(".scores")).to_contain_text("Take 2")
    assert all(takes.nth(k).locator("audio").count() == 1 for k in range(2))  # each playable
    boxes = [takes.nth(k).bounding_box() for k in range(2)]
    assert abs(boxes[0]["y"] - boxes[1]["y"]) < 1 and boxes[0]["x"] < boxes[1]["x"]  # side by side
    done = api_json(reviewing, f"api/jobs/{first}")
    pers = [t["per"] for t in done["result"]["takes"]]
    assert pers == sorted(pers) and pers[1] > pers[0]

    bad.locator("button.regen").click()  # an edit job on that line's span, opened at once
    sync_api.expect(page.locator("#job-id")).not_to_have_text(f"Job {first}", timeout=WAIT_MS)
    wait_status(page, "completed")
    edit = api_json(reviewing, f"api/jobs/{job_id(page)}")
    line = done["result"]["lines"][1]
    assert edit["request"]["ref_job"] == first
    assert edit["request"]["edit_segments"] == [line["span"]]
    assert edit["request"]["check"] and "seed" in edit["request"]
    sync_api.expect(page.locator("#sung-lyrics .sung-line")).to_have_count(2, timeout=WAIT_MS)
    sync_api.expect(page.locator("#results > li")).to_have_count(1)
