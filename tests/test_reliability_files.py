"""Output files (issue 14): every output-path problem is refused before any work, writes are
atomic, honour the umask, clean up after a SIGKILLed run, and a state that cannot be saved on
Ctrl-C is reported clearly (exit 130, nothing partial). Real processes, signals and limits."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rhythmflow import errors
from rhythmflow.cli.main import main
from rhythmflow.errors import UsageError
from rhythmflow.files import TEMP_SUFFIX, clean_stale_temps
from rhythmflow.planner.outputs import resolve_outputs
from tests.reliability_support import make_files
from tests.test_cli import base_args

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("files-cli"))


@pytest.mark.parametrize(("output", "fmt", "sample", "batch", "expected"), [
    ("song.wav", None, "int16", 1, ["song.wav"]),
    ("song", None, "float32", 1, ["song.wav"]),
    ("song", "flac", "int24", 2, ["song_0.flac", "song_1.flac"]),
    ("song.ogg", None, "int16", 1, ["song.ogg"]),
    ("Song.MP3", "mp3", "int16", 1, ["Song.mp3"]),
])
def test_resolve_outputs_names(tmp_path, output, fmt, sample, batch, expected):
    got = resolve_outputs(tmp_path / output, fmt, sample, batch)
    assert got == [tmp_path / name for name in expected]
    assert list(tmp_path.iterdir()) == []  # the writability probe leaves nothing


@pytest.mark.parametrize(("output", "fmt", "sample", "batch", "message"), [
    ("song.wav", "flac", "int16", 1, "names a wav file but format is flac"),
    ("song.flac", None, "float32", 1, "float32 cannot be stored in flac"),
    ("song.mp3", None, "int24", 1, "int24 cannot be stored in mp3"),
    ("song.m4a", None, "int16", 1, r"\.m4a is not an audio format"),
    ("take.2", None, "int16", 1, r"\.2 is not an audio format"),
    ("song.wav", None, "int16", 0, "batch must be"),
    ("missing/song.wav", None, "int16", 1, "does not exist"),
    (".", None, "int16", 1, "is a folder"),
])
def test_resolve_outputs_refuses(tmp_path, output, fmt, sample, batch, message):
    with pytest.raises(UsageError, match=message):
        resolve_outputs(tmp_path / output, fmt, sample, batch)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sysfs refuses new files")
def test_resolve_outputs_tries_the_folder_for_real():
    with pytest.raises(UsageError, match="cannot write to the output folder /sys"):
        resolve_outputs(Path("/sys/song.wav"), None, "int16", 1)


@pytest.mark.parametrize(("output", "extra", "message"), [
    ("x.ogg", ["--sample-format", "float32"], "float32 cannot be stored in ogg"),
    ("x.wav", ["--format", "flac"], "names a wav file but format is flac"),
    ("x.flac", ["--sample-format", "float32"], "float32 cannot be stored in flac"),
    ("sub", [], "is a folder"),
    ("x.wav", ["--save-state", "/sys/state.pt"], "cannot write to the output folder /sys"),
    ("x.wav", ["--save-state", "SUB"], "is a folder; give a file name"),
])
def test_cli_refuses_bad_outputs_before_loading(files, tmp_path, capsys, output, extra, message):
    (tmp_path / "sub").mkdir()
    extra = [str(tmp_path / "sub") if x == "SUB" else x for x in extra]
    assert main(base_args(files, tmp_path / output, "--progress", "log", *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "load" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


def test_cli_ogg_output_is_ogg_not_ogg_wav(files, tmp_path):
    import soundfile as sf

    out = tmp_path / "x.ogg"
    assert main(base_args(files, out, "--progress", "none")) == 0
    assert sf.info(out).format == "OGG" and not (tmp_path / "x.ogg.wav").exists()


def _run(args, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "rhythmflow", *args], capture_output=True,
                          text=True, env=env, timeout=300, **kw)


@pytest.mark.slow
def test_cli_files_honour_the_umask(files, tmp_path):
    out = tmp_path / "u.wav"
    proc = _run(base_args(files, out, "--progress", "none"), preexec_fn=lambda: os.umask(0o027))
    assert proc.returncode == 0, proc.stderr
    assert oct(out.stat().st_mode & 0o777) == oct(0o640)
    assert oct(out.with_suffix(".json").stat().st_mode & 0o777) == oct(0o640)


@pytest.mark.slow
def test_state_file_honours_the_umask(files, tmp_path):
    proc = _run(base_args(files, tmp_path / "t.wav", "--timeout", "0.001"),
                preexec_fn=lambda: os.umask(0o002))
    assert proc.returncode == errors.EXIT_TIMEOUT, proc.stderr
    assert oct((tmp_path / "t.resume.pt").stat().st_mode & 0o777) == oct(0o664)


@pytest.mark.slow
def test_sigkill_mid_write_leaves_a_temp_that_the_next_run_removes(files, tmp_path):
    code = textwrap.dedent(f"""
        import time
        from rhythmflow.files import atomic_writer
        with atomic_writer({str(tmp_path / "song.wav")!r}) as fh:
            fh.write(b"half a song" * 10000)
            fh.flush()
            print("writing", flush=True)
            time.sleep(120)
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env=env)
    assert child.stdout.readline().strip() == "writing"
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=60) == -signal.SIGKILL
    stale = [p for p in tmp_path.iterdir() if p.name.endswith(TEMP_SUFFIX)]
    assert len(stale) == 1 and stale[0].stat().st_size > 0 and not (tmp_path / "song.wav").exists()
    alive = tmp_path / f".other.wav.{os.getpid()}-abcd{TEMP_SUFFIX}"  # a running writer's temp
    alive.write_bytes(b"in progress")
    assert main(base_args(files, tmp_path / "next.wav", "--progress", "none")) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name, "next.json", "next.lrc", "next.wav"]


def test_old_temp_of_a_live_pid_is_stale_too(tmp_path):
    old = tmp_path / f".a.wav.{os.getpid()}-ffff{TEMP_SUFFIX}"
    old.write_bytes(b"x")
    os.utime(old, (1, 1))  # 1970: no write lasts that long, whoever holds the pid now
    mine = tmp_path / ".a.wav.part"  # not our naming: never touched
    mine.write_bytes(b"x")
    assert clean_stale_temps(tmp_path) == [old]
    assert [p.name for p in tmp_path.iterdir()] == [".a.wav.part"]


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.RLIM_INFINITY))


@pytest.mark.slow
def test_ctrl_c_when_the_state_cannot_be_saved_is_clear_and_leaves_nothing(files, tmp_path):
    # The file-size limit makes the kernel refuse the 512 KB state (EFBIG), as a full disk would.
    # An instrumental: espeak-ng's loader copies its library to a temp file, over the limit.
    out, state = tmp_path / "song.wav", tmp_path / "st.pt"
    args = base_args(files, out, "--progress", "json", "--save-state", str(state))
    del args[args.index("--lrc"):args.index("--lrc") + 2]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "rhythmflow", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_limit_file_size)
    for line in proc.stdout:
        if '"sampling_step"' in line:
            proc.send_signal(signal.SIGINT)
            break
    proc.stdout.read()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == errors.EXIT_CANCELLED, stderr
    assert "could NOT be saved" in stderr and "free disk space" in stderr
    assert "Traceback" not in stderr and "--resume" not in stderr
    assert list(tmp_path.iterdir()) == []  # no state, no temp, no song
