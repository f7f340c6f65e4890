"""`rhythmflow lrc` and `generate --lyrics` (issue 15) through the real `python -m rhythmflow`,
on a tiny checkpoint in the official format and a tiny TorchScript VAE, with real espeak-ng."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from rhythmflow import errors
from rhythmflow.lyrics import parse_lrc, time_lyrics
from rhythmflow.testing import TINY

CFG = dataclasses.replace(TINY, depth=1, dim=32 * 2)
LYRICS = ("[Verse]\nHello little song\nAnother line of words\n\n[Chorus]\n我爱你中国\n"
          "Sing it again tonight\n[Outro]\n")
SUNG = ["Hello little song", "Another line of words", "我爱你中国", "Sing it again tonight"]


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "rhythmflow", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def files(tiny_files, tmp_path_factory):
    lyrics = tmp_path_factory.mktemp("cli-lyrics") / "words.txt"
    lyrics.write_text(LYRICS, encoding="utf-8")
    return {**tiny_files, "lyrics": lyrics}


@pytest.mark.slow
def test_lrc_prints_the_timed_lyrics_and_notes_the_last_line_rule(files) -> None:
    proc = run_cli("lrc", files["lyrics"], "--duration", "95")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == time_lyrics(LYRICS, 95).lrc
    assert [x.text for x in parse_lrc(proc.stdout)] == SUNG
    assert "--keep-last-line" in proc.stderr  # the 95 s model's rule is not silent


@pytest.mark.slow
def test_lrc_writes_the_output_file_with_options(files, tmp_path) -> None:
    out = tmp_path / "song.lrc"
    proc = run_cli("lrc", files["lyrics"], "--duration", "150", "--language", "zh", "--intro",
                   "10", "--outro", "0", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and "--keep-last-line" not in proc.stderr
    expected = time_lyrics(LYRICS, 150, language="zh", intro=10, outro=0)
    assert out.read_text(encoding="utf-8") == expected.lrc
    assert parse_lrc(expected.lrc)[0].start == 10.0
    assert not list(tmp_path.glob(".*.part"))


@pytest.mark.slow
def test_lrc_too_many_lyrics_warns_naming_the_dropped_lines(tmp_path) -> None:
    lines = [f"Line {w} of a song that goes on and on forever" for w in (
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")] * 4
    plain = tmp_path / "long.txt"
    plain.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = run_cli("lrc", plain, "--duration", "95")
    assert proc.returncode == 0, proc.stderr
    kept = [x.text for x in parse_lrc(proc.stdout)]
    assert 0 < len(kept) < len(lines) and kept == lines[: len(kept)]
    assert f"line {len(kept) + 1} " in proc.stderr and f"line {len(lines)} " in proc.stderr
    suggested = int(re.search(r"set --duration (\d+)", proc.stderr).group(1))
    assert "were dropped" in proc.stderr and 95 < suggested <= 285


@pytest.mark.slow
@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [("\n \n", [], "lyrics are empty"),
     ("Hello\n\n...\n", [], r"line 3 \('...'\)"),
     ("[00:01.00]Hello\n", [], "already timed LRC"),
     ("Hello\n", ["--duration", "500"], "longer than the model's 6144 frames"),
     (None, [], "does not exist"),
     ("Hello\n", ["-o", "no/such/dir/x.lrc"], "does not exist")],
)
def test_lrc_bad_input_exits_2_and_writes_nothing(tmp_path, content, extra, message) -> None:
    plain = tmp_path / "in.txt"
    if content is not None:
        plain.write_text(content, encoding="utf-8")
    args = ["lrc", plain, *extra] if "--duration" in extra else ["lrc", plain, "--duration",
                                                                   "95", *extra]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == errors.EXIT_USAGE, proc.stderr
    assert re.search(message, proc.stderr), proc.stderr
    assert proc.stdout == "" and sorted(p.name for p in tmp_path.iterdir()) == (
        ["in.txt"] if content is not None else [])


def _generate(files, out: Path, *extra: str) -> list[str]:
    return ["generate", "--lyrics", str(files["lyrics"]), "--style-embedding",
            str(files["style"]), "--checkpoint", str(files["ckpt"]), "--vae", str(files["vae"]),
            "--steps", "2", "--seed", "3", "--skip-estimate", "--progress", "none", "-o",
            str(out), *extra]


@pytest.mark.slow
def test_generate_with_plain_lyrics_writes_the_lrc_beside_the_song(files, tmp_path) -> None:
    out = tmp_path / "song.wav"
    proc = run_cli(*_generate(files, out, "--duration", "95"))
    assert proc.returncode == 0, proc.stderr
    assert sf.info(out).frames == 2048 * 2048
    lrc = (tmp_path / "song.lrc").read_text(encoding="utf-8")
    assert lrc == time_lyrics(LYRICS, 95, max_frames=2048).lrc
    meta = json.loads((tmp_path / "song.json").read_text(encoding="utf-8"))
    assert meta["autotime"]["lrc"] == lrc and meta["autotime"]["lrc_file"] == str(
        tmp_path / "song.lrc")
    assert meta["autotime"]["lyrics_file"] == str(files["lyrics"])
    assert meta["lyrics"]["placed"] == len(SUNG) and meta["lyrics"]["dropped"] == []
    assert meta["settings"]["keep_last_line"] is True  # every timed line is sung


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "message"),
    [(["--lrc", "x.lrc"], "not allowed with argument"),
     (["--same-name"], "would overwrite the --lyrics file")],
)
def test_generate_lyrics_errors_before_loading(files, tmp_path, change, message) -> None:
    out = tmp_path / "song.wav"
    args = _generate(files, out) + ["--duration", "95"]
    if change == ["--same-name"]:
        plain = tmp_path / "song.lrc"  # the LRC beside song.wav would replace it
        plain.write_text(LYRICS, encoding="utf-8")
        args[args.index("--lyrics") + 1] = str(plain)
    elif change[0] == "--lrc":
        args += change
    proc = run_cli(*args)
    assert proc.returncode == errors.EXIT_USAGE, proc.stderr
    assert message in proc.stderr
    assert not out.exists() and not (tmp_path / "song.json").exists()


@pytest.mark.parametrize(("model", "duration", "max_frames"),
                         [("base", 95.0, 2048), ("v1.2-full", 285.0, 6144), ("full", 150.0, 6144)])
def test_plan_times_plain_lyrics_for_the_model_and_duration(files, tmp_path, model, duration,
                                                           max_frames) -> None:
    from rhythmflow.cli.lrc import write_autotimed
    from rhythmflow.planner.core import Machine, plan
    from rhythmflow.request import GenerationRequest

    given = None if duration in (95.0, 285.0) else duration
    p = plan(GenerationRequest(lyrics=LYRICS, model=model, duration=given, style_prompt="pop"),
             Machine(cores=1, memory_available=1 << 40))
    expected = time_lyrics(LYRICS, duration, max_frames=max_frames).lrc
    assert (p.duration, p.config.max_frames) == (duration, max_frames)
    assert p.lrc == p.autotime["lrc"] == expected and p.keep_last_line
    entry = write_autotimed(tmp_path / "a.wav", p.autotime, files["lyrics"])
    assert (tmp_path / "a.lrc").read_text(encoding="utf-8") == expected == entry["lrc"]
    assert entry["dropped"] == [] and entry["lrc_file"] == str(tmp_path / "a.lrc")


def test_plain_lyrics_that_cannot_be_timed_fail_in_the_plan_naming_the_field() -> None:
    from rhythmflow.errors import UsageError
    from rhythmflow.planner.core import Machine, plan
    from rhythmflow.request import GenerationRequest

    with pytest.raises(UsageError) as info:
        plan(GenerationRequest(lyrics="[00:01.00]already timed\n", style_prompt="pop"),
             Machine(cores=1, memory_available=1 << 40))
    assert info.value.field == "lyrics" and str(info.value).startswith("lyrics:")
