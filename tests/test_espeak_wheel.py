"""espeak-ng from a wheel: which library the English G2P loads, the bundled libraries' phonemes
against the golden data, and the errors when no library is available.

Measured (benchmarks/espeak_compare.py, against Debian's 1.51 which made the golden data):

* ``espeak-english`` 0.1.1 (espeak-ng 1.51, Linux x86_64 wheel): identical on every golden
  English line (phonemes and tokens), on 3,723 distinct words and 133 eight-word lines;
* ``espeakng-loader`` 0.2.4 (espeak-ng 1.52.0, every platform): identical except the 10 golden
  lines whose golden phonemes hold ``oːɹ``, which 1.52 writes ``ɔːɹ`` (``ɔː|ɹ`` before a vowel).

The tests below pin exactly that, and the finder's order (module docstring of
``rhythmflow.lyrics.g2p.espeak_library``). ``RHYTHMFLOW_ESPEAK=bundled`` is the documented switch
that hides the system espeak-ng: the whole lyrics suite passes with it (see
test_golden_suite_passes_with_the_system_library_hidden).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import rhythmflow.lyrics.g2p as g2p
from rhythmflow.errors import DependencyError, UsageError
from rhythmflow.lyrics import g2p_phonemes, g2p_tokens
from rhythmflow.lyrics.g2p import english, espeak_library
from rhythmflow.lyrics.g2p.espeak_library import (
    CHOICE_ENV,
    EspeakLibrary,
    bundled_library,
    espeak_english_library,
    espeak_library_scope,
    find_espeak,
    loader_library,
)

REPO = Path(__file__).resolve().parents[1]
LOADER_VERSION = (1, 52, 0)  # espeakng-loader 0.2.4
GOLDEN_VERSION = (1, 51)  # Debian's, and espeak-english 0.1.1's
LINUX_X86_64 = sys.platform == "linux" and platform.machine() == "x86_64"
needs_espeak_english = pytest.mark.skipif(
    not LINUX_X86_64, reason="espeak-english has a Linux x86_64 wheel only"
)
# what a machine with no espeak variables of its own gives a subprocess
_CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in {CHOICE_ENV, "PHONEMIZER_ESPEAK_LIBRARY", "ESPEAK_DATA_PATH"}
}


def _golden_english(golden_lyrics_dir: Path) -> list[dict]:
    path = golden_lyrics_dir / "english_lines.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [r for r in records if "error" not in r]


def _merge_or(phones: str) -> str:
    """The one difference measured between 1.51 and 1.52: ``oːɹ`` became ``ɔːɹ``."""
    return phones.replace("oːɹ", "ɔːɹ").replace("ɔː|ɹ", "ɔːɹ")


@pytest.fixture
def fresh(monkeypatch):
    """A clean backend and line cache, and no outside choice (restored afterwards)."""
    monkeypatch.delenv(CHOICE_ENV, raising=False)
    monkeypatch.delenv("PHONEMIZER_ESPEAK_LIBRARY", raising=False)
    english.espeak_backend.cache_clear()
    g2p.clear_cache()
    yield
    english.espeak_backend.cache_clear()
    g2p.clear_cache()


@pytest.fixture
def no_system(monkeypatch):
    """A machine without a system espeak-ng (as after a plain `pip install`)."""
    monkeypatch.delenv("PHONEMIZER_ESPEAK_LIBRARY", raising=False)
    monkeypatch.setattr(espeak_library, "system_library", lambda: None)


def _fake(source: str, version: str) -> EspeakLibrary:
    data = None if source == "system" else f"/{source}/espeak-ng-data"
    return EspeakLibrary(source, f"/{source}/libespeak-ng.so", data, version=version)


@pytest.fixture
def machine(monkeypatch):
    """Set which libraries exist: ``machine(system="1.52", english=True, loader=True)``."""
    monkeypatch.delenv(CHOICE_ENV, raising=False)
    monkeypatch.delenv("PHONEMIZER_ESPEAK_LIBRARY", raising=False)

    def make(system: str | None = None, english: bool = True, loader: bool = True) -> None:
        lib = "/system/libespeak-ng.so.1"
        monkeypatch.setattr(
            espeak_library,
            "system_library",
            lambda: os.environ.get("PHONEMIZER_ESPEAK_LIBRARY") or (lib if system else None),
        )
        monkeypatch.setattr(espeak_library, "library_version", lambda path: system)
        monkeypatch.setattr(
            espeak_library,
            "espeak_english_library",
            lambda: _fake("espeak-english", "1.51") if english else None,
        )
        monkeypatch.setattr(
            espeak_library,
            "loader_library",
            lambda: _fake("espeakng-loader", "1.52.0") if loader else None,
        )

    return make


# ---------------------------------------------------------------- the bundled libraries


@needs_espeak_english
def test_espeak_english_is_installed() -> None:
    found = espeak_english_library()
    assert found is not None, "a dependency on Linux x86_64: pip install espeak-english==0.1.1"
    assert found.source == "espeak-english" and found.bundled
    assert found.version == "1.51"
    assert Path(found.library).is_file()
    assert (Path(found.data_path) / "en_dict").is_file()


def test_loader_is_installed() -> None:
    found = loader_library()
    assert found is not None, "espeakng-loader is a dependency: pip install espeakng-loader"
    assert found.source == "espeakng-loader" and found.bundled
    assert found.version == "1.52.0"
    assert Path(found.library).is_file()
    assert (Path(found.data_path) / "en_dict").is_file()


@needs_espeak_english
def test_espeak_english_phonemes_equal_golden(fresh, monkeypatch, golden_lyrics_dir) -> None:
    monkeypatch.setenv(CHOICE_ENV, "espeak-english")
    info = english.espeak_info()
    assert info.library.source == "espeak-english"
    assert info.version[:2] == GOLDEN_VERSION
    for rec in _golden_english(golden_lyrics_dir):
        assert g2p_phonemes(rec["text"]) == rec["phonemes"], rec["text"]
        assert g2p_tokens(rec["text"]) == rec["tokens"], rec["text"]


def test_loader_phonemes_match_golden_except_measured_or_merge(
    fresh, monkeypatch, golden_lyrics_dir
) -> None:
    monkeypatch.setenv(CHOICE_ENV, "espeakng-loader")
    info = english.espeak_info()
    assert info.library.source == "espeakng-loader"
    assert info.version == LOADER_VERSION
    differ = []
    for rec in _golden_english(golden_lyrics_dir):
        got = g2p_phonemes(rec["text"])
        if "oːɹ" not in rec["phonemes"]:
            assert got == rec["phonemes"], rec["text"]
            assert g2p_tokens(rec["text"]) == rec["tokens"], rec["text"]
        else:
            differ.append(rec["text"])
            assert got != rec["phonemes"]
            assert _merge_or(got) == _merge_or(rec["phonemes"]), rec["text"]
    assert len(differ) == 10


def _run_g2p(tmp_path: Path, texts: list[str], env: dict, hide_find_library: bool) -> dict:
    """English G2P in a fresh process; ``hide_find_library`` makes the platform's library
    search find no espeak (a machine without the system package)."""
    script = tmp_path / "g2p_child.py"
    script.write_text(
        "import ctypes.util, json, logging, sys\n"
        "logging.basicConfig(level=logging.INFO)\n"
        f"if {hide_find_library}:\n"
        "    real = ctypes.util.find_library\n"
        "    ctypes.util.find_library = lambda n: None if 'espeak' in n else real(n)\n"
        "from rhythmflow.lyrics import g2p_phonemes, g2p_tokens\n"
        "from rhythmflow.lyrics.g2p import english\n"
        "texts = json.loads(sys.argv[1])\n"
        "info = english.espeak_info()\n"
        "print(json.dumps({'source': info.library.source, 'version': info.version,\n"
        "                  'phonemes': [g2p_phonemes(t) for t in texts],\n"
        "                  'tokens': [g2p_tokens(t) for t in texts]}))\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, str(script), json.dumps(texts)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return {**json.loads(done.stdout), "log": done.stderr}


@pytest.mark.slow
@needs_espeak_english
def test_switch_hides_the_system_library_in_a_subprocess(golden_lyrics_dir, tmp_path) -> None:
    """RHYTHMFLOW_ESPEAK=bundled in a fresh process: the system espeak-ng (installed here) is
    not used, and the bundled 1.51 gives every golden line's phonemes and tokens."""
    records = _golden_english(golden_lyrics_dir)
    texts = [r["text"] for r in records]
    out = _run_g2p(tmp_path, texts, {**_CLEAN_ENV, CHOICE_ENV: "bundled"}, False)
    assert out["source"] == "espeak-english"
    assert tuple(out["version"][:2]) == GOLDEN_VERSION
    assert out["phonemes"] == [r["phonemes"] for r in records]
    assert out["tokens"] == [r["tokens"] for r in records]
    assert "uses the espeak-english espeak-ng 1.51" in out["log"]
    assert f"{CHOICE_ENV}=bundled" in out["log"]


@pytest.mark.slow
@needs_espeak_english
def test_pip_only_machine_picks_espeak_english_by_itself(golden_lyrics_dir, tmp_path) -> None:
    """No espeak variables, and a library search that finds no espeak: ``auto`` loads the
    bundled 1.51, not espeakng-loader's 1.52, and the oːɹ line is the golden one."""
    lines = {r["source"]: r for r in _golden_english(golden_lyrics_dir)}
    plain, with_or = lines["eg_en.lrc:1"], lines["eg_en.lrc:2"]
    assert "oːɹ" in with_or["phonemes"]
    out = _run_g2p(tmp_path, [plain["text"], with_or["text"]], _CLEAN_ENV, True)
    assert out["source"] == "espeak-english"
    assert out["phonemes"] == [plain["phonemes"], with_or["phonemes"]]
    assert "no system espeak-ng found; bundled 1.51" in out["log"]


@pytest.mark.slow
@pytest.mark.parametrize("guarded", [True, False])
def test_long_data_path_is_reached_through_a_short_link(tmp_path, guarded) -> None:
    """espeak-ng cuts a data path over 159 characters and then exits the process (it falls
    back to the build machine's folder): a long path is handed over through a short link."""
    found = bundled_library()
    assert found is not None
    deep = tmp_path.joinpath(*["a-rather-long-folder-name-for-a-virtualenv"] * 4)
    deep.mkdir(parents=True)
    (deep / "espeak-ng-data").symlink_to(found.data_path, target_is_directory=True)
    data = str(deep / "espeak-ng-data")
    assert len(data) > 170
    code = (
        "import sys\n"
        "from rhythmflow.lyrics.g2p import english, espeak_library\n"
        f"if not {guarded}:\n"
        "    espeak_library._MAX_DATA_PATH = 10_000\n"
        "found = espeak_library.EspeakLibrary(*sys.argv[1:4])\n"
        "english.find_espeak = lambda: found\n"
        "print(english.english_phonemes('dance with me tonight'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, found.source, found.library, data],
        capture_output=True,
        text=True,
        env=_CLEAN_ENV,
        timeout=120,
        check=False,
    )
    if guarded:
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "d|æ|n|s|_|w|ɪ|ð|_|m|iː|_|t|ə|n|aɪ|t|_"
    else:  # what the guard prevents: espeak-ng ends the whole process
        assert done.returncode != 0 and "espeak-ng-data" in done.stdout + done.stderr


@pytest.mark.slow
@needs_espeak_english
def test_golden_suite_passes_with_the_system_library_hidden() -> None:
    """Issue 22: the golden lyrics tests pass on the pip-only install path."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not slow",
            "tests/test_golden_lyrics.py",
            "tests/test_lyrics_g2p.py",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**_CLEAN_ENV, CHOICE_ENV: "bundled"},
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


# ---------------------------------------------------------------- the order


def test_auto_takes_a_system_151_first(machine, caplog) -> None:
    machine(system="1.51")
    with caplog.at_level(logging.INFO, logger=espeak_library.__name__):
        found = find_espeak()
    assert (found.source, found.data_path, found.version) == ("system", None, "1.51")
    assert "uses the system espeak-ng 1.51 /system/libespeak-ng.so.1" in caplog.text


def test_auto_prefers_bundled_151_to_another_system_version(machine, caplog) -> None:
    machine(system="1.52.0")
    with caplog.at_level(logging.INFO, logger=espeak_library.__name__):
        found = find_espeak()
    assert found.source == "espeak-english"
    assert "the system espeak-ng is 1.52.0 (/system/libespeak-ng.so.1), not 1.51" in caplog.text
    assert "system one is 1.52.0; bundled 1.51" in found.reason


def test_auto_takes_another_system_version_before_the_loader(machine) -> None:
    machine(system="1.50", english=False)
    found = find_espeak()
    assert (found.source, found.version) == ("system", "1.50")
    assert "no bundled 1.51" in found.reason


def test_auto_falls_back_to_the_loader(machine, caplog) -> None:
    machine(system=None, english=False)
    with caplog.at_level(logging.INFO, logger=espeak_library.__name__):
        found = find_espeak()
    assert (found.source, found.version) == ("espeakng-loader", "1.52.0")
    assert "uses the espeakng-loader espeak-ng 1.52.0" in caplog.text
    assert "espeak-english not installed" in caplog.text


def test_auto_without_a_system_library_takes_espeak_english(machine) -> None:
    machine(system=None)
    found = find_espeak()
    assert found.source == "espeak-english" and found.data_path
    assert found.reason == "no system espeak-ng found; bundled 1.51"


def test_explicit_library_is_taken_whatever_its_version(machine, monkeypatch) -> None:
    machine(system="1.52.0")
    monkeypatch.setenv("PHONEMIZER_ESPEAK_LIBRARY", "/opt/libespeak-ng.so")
    found = find_espeak()
    assert (found.source, found.library) == ("system", "/opt/libespeak-ng.so")
    assert found.reason.startswith("PHONEMIZER_ESPEAK_LIBRARY")


@pytest.mark.parametrize(
    ("choice", "english_installed", "source"),
    [
        ("bundled", True, "espeak-english"),
        ("bundled", False, "espeakng-loader"),
        ("espeak-english", True, "espeak-english"),
        ("espeakng-loader", True, "espeakng-loader"),
        ("system", True, "system"),
        ("  BUNDLED ", True, "espeak-english"),
    ],
)
def test_choice_overrides(machine, monkeypatch, choice, english_installed, source) -> None:
    machine(system="1.51", english=english_installed)
    monkeypatch.setenv("PHONEMIZER_ESPEAK_LIBRARY", "/opt/libespeak-ng.so")  # bundled: ignored
    monkeypatch.setenv(CHOICE_ENV, choice)
    found = find_espeak()
    assert found.source == source
    assert f"{CHOICE_ENV}=" in found.reason


def test_unknown_choice_is_a_usage_error(monkeypatch) -> None:
    monkeypatch.setenv(CHOICE_ENV, "wheel")
    with pytest.raises(UsageError, match=CHOICE_ENV):
        find_espeak()


def test_unloadable_system_library_is_skipped(machine, monkeypatch, caplog) -> None:
    machine(system=None)  # library_version → None: found, but cannot be loaded
    monkeypatch.setattr(espeak_library, "system_library", lambda: "/broken/libespeak-ng.so.1")
    found = find_espeak()
    assert found.source == "espeak-english"
    assert "cannot be loaded; ignoring it" in caplog.text


def test_real_system_library_version_is_read() -> None:
    system = espeak_library.system_library()
    if system is None:
        pytest.skip("no system espeak-ng here")
    version = espeak_library.library_version(system)
    assert version and espeak_library.parse_version(version)[:1] == (1,)


def test_parse_version() -> None:
    parse = espeak_library.parse_version
    assert parse("1.51") == (1, 51) and parse("1.52.0") == (1, 52, 0)
    assert parse("1.48.03  2014-03-11") == (1, 48, 3) and parse("1.52-dev") == (1, 52)
    assert parse("") == ()


def test_hidden_system_end_to_end_restores_process_state(fresh, no_system, caplog) -> None:
    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    data_before = os.environ.get("ESPEAK_DATA_PATH")
    with caplog.at_level(logging.INFO):
        phones = english.english_phonemes("dance with me tonight")
    assert phones == "d|æ|n|s|_|w|ɪ|ð|_|m|iː|_|t|ə|n|aɪ|t|_"
    info = english.espeak_info()
    assert info.library.bundled
    if info.library.source == "espeakng-loader":  # a machine without the espeak-english wheel
        assert info.version == LOADER_VERSION
        assert "validated against espeak-ng 1.51" in caplog.text  # the version warning
    else:
        assert info.version[:2] == GOLDEN_VERSION
        assert "validated against" not in caplog.text
    # the library and data path were handed to phonemizer only while the backend was created
    assert os.environ.get("ESPEAK_DATA_PATH") == data_before
    assert getattr(EspeakWrapper, "_ESPEAK_LIBRARY", None) is None


def test_loader_warns_about_the_version(fresh, monkeypatch, caplog) -> None:
    monkeypatch.setenv(CHOICE_ENV, "espeakng-loader")
    with caplog.at_level(logging.WARNING):
        english.espeak_backend()
    assert "validated against espeak-ng 1.51" in caplog.text
    assert "pip install espeak-english==0.1.1" in caplog.text


def test_scope_restores_on_error(monkeypatch) -> None:
    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    monkeypatch.setenv("ESPEAK_DATA_PATH", "/somewhere/else")
    found = EspeakLibrary("espeakng-loader", "/lib/libespeak-ng.so", "/data/espeak-ng-data")
    with pytest.raises(RuntimeError), espeak_library_scope(found):
        assert os.environ["ESPEAK_DATA_PATH"] == "/data/espeak-ng-data"
        assert EspeakWrapper.library() == "/lib/libespeak-ng.so"
        raise RuntimeError("backend creation failed")
    assert os.environ["ESPEAK_DATA_PATH"] == "/somewhere/else"
    assert getattr(EspeakWrapper, "_ESPEAK_LIBRARY", None) is None


@pytest.mark.slow
def test_import_sets_nothing() -> None:
    code = (
        "import os, sys\n"
        "before = dict(os.environ)\n"
        "import rhythmflow.lyrics.g2p.english\n"
        "assert dict(os.environ) == before\n"
        "assert 'phonemizer' not in sys.modules and 'espeakng_loader' not in sys.modules\n"
        "assert 'espeak_english' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- nothing available


def test_missing_everything_says_how_to_fix(fresh, monkeypatch, no_system) -> None:
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # not installed
    monkeypatch.setitem(sys.modules, "espeak_english", None)
    assert bundled_library() is None
    with pytest.raises(DependencyError) as info:
        g2p_tokens("hello nobody")
    message = str(info.value)
    assert "no system espeak-ng was found" in message
    assert "pip install espeak-english==0.1.1" in message
    assert "pip install espeakng-loader==0.2.4" in message
    assert "apt-get install espeak-ng" in message


def test_bundled_choice_with_nothing_bundled(monkeypatch, no_system) -> None:
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    monkeypatch.setitem(sys.modules, "espeak_english", None)
    monkeypatch.setenv(CHOICE_ENV, "bundled")
    with pytest.raises(DependencyError, match=r"bundled but neither espeak-english nor"):
        find_espeak()


def test_named_package_missing(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "espeak_english", None)
    monkeypatch.setenv(CHOICE_ENV, "espeak-english")
    with pytest.raises(DependencyError, match=r"pip install espeak-english==0.1.1"):
        find_espeak()


def test_system_choice_without_system_library(monkeypatch, no_system) -> None:
    monkeypatch.setenv(CHOICE_ENV, "system")
    with pytest.raises(DependencyError, match=r"apt-get install espeak-ng.*pip install espeak"):
        find_espeak()


def test_broken_explicit_library_is_not_replaced(fresh, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PHONEMIZER_ESPEAK_LIBRARY", str(tmp_path / "libespeak-ng.so.1"))
    assert find_espeak().source == "system"
    with pytest.raises(DependencyError, match=r"pip install espeak-english"):
        g2p_tokens("hello explicit")
