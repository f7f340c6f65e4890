"""Which libespeak-ng the English G2P loads, decided in one place: :func:`find_espeak`.

Three sources:

* ``system``: the library phonemizer itself would load (``PHONEMIZER_ESPEAK_LIBRARY`` when set,
  else ``ctypes.util.find_library("espeak-ng")``), e.g. Debian's ``libespeak-ng1`` 1.51, with its
  own data folder;
* ``espeak-english``: the espeak-ng **1.51** library and English data in the ``espeak-english``
  wheel (PyPI, Linux x86_64 only), so ``pip install`` alone gives the golden phonemes;
* ``espeakng-loader``: the espeak-ng **1.52.0** library and data in the ``espeakng-loader`` wheel
  (Linux, macOS and Windows), the fallback where no 1.51 is available.

The golden data was made with Debian's espeak-ng 1.51, and 1.52 is not interchangeable with it.
``benchmarks/espeak_compare.py`` measured both wheels against Debian's 1.51 through this G2P:

* ``espeak-english`` 0.1.1 (1.51): identical on all 118 golden English lines (phonemes and
  tokens) and on all 3,723 distinct words and 133 eight-word lines;
* ``espeakng-loader`` 0.2.4 (1.52.0): 10 of the 118 golden lines differ (8.5%; 25 golden tests
  fail with it), 65 of 3,723 words (1.75%), 13 of 133 eight-word lines (9.8%). Every difference
  is one change in 1.52's English data: the ``oːɹ`` of "floor", "four", "more", "story" became
  ``ɔːɹ`` (``ɔː|ɹ`` before a vowel), merging it with the ``ɔːɹ`` of "for", "born"; so it cannot
  be mapped back.

So ``auto`` (the default) takes, in order: the system espeak-ng if it is 1.51 (any other version
is logged); ``espeak-english``'s 1.51 where it is installed; the system espeak-ng of another
version; ``espeakng-loader``'s 1.52 (a warning then says the phonemes differ); else a
DependencyError saying how to install one. ``PHONEMIZER_ESPEAK_LIBRARY``, when set, is the system
library and is taken whatever its version (an explicit setting is never replaced).

``RHYTHMFLOW_ESPEAK`` (read at call time) overrides the choice: ``auto`` (default), ``system``,
``bundled`` (never the system library: ``espeak-english``, else ``espeakng-loader``; what a
pip-only machine gets, so ``RHYTHMFLOW_ESPEAK=bundled`` tests that install path on a machine that
has espeak-ng installed), ``espeak-english`` or ``espeakng-loader``.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rhythmflow.errors import DependencyError, UsageError

log = logging.getLogger(__name__)

CHOICE_ENV = "RHYTHMFLOW_ESPEAK"
CHOICES = ("auto", "system", "bundled", "espeak-english", "espeakng-loader")
GOLDEN_VERSION = (1, 51)  # Debian's espeak-ng, which the golden phonemes were made with
ENGLISH_PACKAGE = "espeak-english==0.1.1"  # espeak-ng 1.51, Linux x86_64 wheel only
LOADER_PACKAGE = "espeakng-loader==0.2.4"  # espeak-ng 1.52.0, every platform
INSTALL_HINT = (
    f"run `pip install {ENGLISH_PACKAGE}` (Linux x86_64: bundled espeak-ng 1.51, the golden "
    f"phonemes) or `pip install {LOADER_PACKAGE}` (any platform: bundled espeak-ng 1.52, which "
    "differs on the oːɹ vowel), or install the system espeak-ng (Debian/Ubuntu: "
    "`sudo apt-get install espeak-ng`; macOS: `brew install espeak-ng`), or point "
    "PHONEMIZER_ESPEAK_LIBRARY at a libespeak-ng"
)
# espeak-ng copies its data path into a 160-byte buffer unchecked; a longer path is cut, espeak
# then falls back to the folder compiled into the library (a build machine's, for a wheel) and
# exits the process. Longer data paths are reached through a short link (see _short_data_path).
_MAX_DATA_PATH = 120


@dataclass(frozen=True)
class EspeakLibrary:
    """A libespeak-ng to load: where it came from, the library, and its data folder.

    ``source`` is ``"system"``, ``"espeak-english"`` or ``"espeakng-loader"``; ``data_path`` is
    the ``espeak-ng-data`` folder to use, or None for the library's built-in default (the system
    install's own); ``version`` is what the library reports (empty when it could not be read)."""

    source: str
    library: str
    data_path: str | None = None
    reason: str = ""
    version: str = ""

    @property
    def bundled(self) -> bool:
        """True for a copy shipped in a Python wheel (not the system's)."""
        return self.source != "system"

    def describe(self) -> str:
        version = f" {self.version}" if self.version else ""
        data = f", data {self.data_path}" if self.data_path else ""
        return f"{self.source} espeak-ng{version} {self.library}{data} ({self.reason})"


def parse_version(text: str) -> tuple[int, ...]:
    """``"1.52.0"``, ``"1.51"``, ``"1.48.03 2014"``, ``"1.52-dev"`` → a tuple of integers."""
    match = re.match(r"\s*(\d+(?:\.\d+)*)", text)
    return tuple(int(p) for p in match.group(1).split(".")) if match else ()


@functools.lru_cache(maxsize=16)
def library_version(library: str) -> str | None:
    """The version a libespeak-ng reports (``espeak_Info``, which only returns a static string;
    nothing is initialised), or None when it cannot be loaded."""
    import ctypes

    try:
        lib = ctypes.CDLL(library)
        info = lib.espeak_Info
    except (OSError, AttributeError) as exc:
        log.debug("cannot read the version of %s: %s", library, exc)
        return None
    info.restype = ctypes.c_char_p
    info.argtypes = [ctypes.c_void_p]
    raw = info(None)
    return raw.decode("utf-8", "replace").strip().split(" ")[0] if raw else None


def _is_golden(version: str | None) -> bool:
    return parse_version(version or "")[:2] == GOLDEN_VERSION


def system_library() -> str | None:
    """The library phonemizer would load on its own, or None: ``PHONEMIZER_ESPEAK_LIBRARY`` when
    set (returned as given, even if missing: an explicit setting is never replaced), else the
    first of ``espeak-ng`` / ``espeak`` that the platform's library search finds."""
    import ctypes.util

    explicit = os.environ.get("PHONEMIZER_ESPEAK_LIBRARY")
    if explicit:
        return explicit
    return ctypes.util.find_library("espeak-ng") or ctypes.util.find_library("espeak")


def espeak_english_library() -> EspeakLibrary | None:
    """The espeak-ng 1.51 shipped in the ``espeak-english`` wheel, or None when it is not
    installed (its wheel exists for Linux x86_64 only) or its files are missing."""
    try:
        import espeak_english
    except ImportError:
        return None
    try:
        library = str(espeak_english.library_path())
        data = str(espeak_english.data_path())
    except RuntimeError as exc:  # espeak_english.EspeakError: files missing for this platform
        log.debug("espeak-english is installed but unusable: %s", exc)
        return None
    if not (Path(data) / "en_dict").is_file():
        log.debug("espeak-english is installed but %s has no en_dict", data)
        return None
    return EspeakLibrary("espeak-english", library, data, version=library_version(library) or "")


def loader_library() -> EspeakLibrary | None:
    """The espeak-ng 1.52 shipped in the ``espeakng-loader`` wheel, or None when it is not
    installed (or its files are missing)."""
    try:
        import espeakng_loader
    except ImportError:
        return None
    try:
        library = espeakng_loader.get_library_path()
        data = espeakng_loader.get_data_path()  # RuntimeError when the folder is missing
    except RuntimeError as exc:
        log.debug("espeakng-loader is installed but unusable: %s", exc)
        return None
    if not Path(library).is_file():
        log.debug("espeakng-loader is installed but %s is missing", library)
        return None
    return EspeakLibrary("espeakng-loader", library, data, version=library_version(library) or "")


def bundled_library() -> EspeakLibrary | None:
    """The best copy shipped in a wheel: ``espeak-english`` (1.51) where installed, else
    ``espeakng-loader`` (1.52), else None."""
    return espeak_english_library() or loader_library()


def _choice(choice: str | None) -> str:
    value = (choice if choice is not None else os.environ.get(CHOICE_ENV, "")).strip().lower()
    value = value or "auto"
    if value not in CHOICES:
        raise UsageError(
            f"{CHOICE_ENV}={value!r} is not one of {', '.join(CHOICES)} (auto: the system "
            "espeak-ng 1.51, else the bundled 1.51 of espeak-english, else the system one of "
            "another version, else the bundled 1.52 of espeakng-loader; bundled: never the "
            "system one)"
        )
    return value


def _system(value: str) -> EspeakLibrary | None:
    """The system library with its version, or None (also when it cannot be loaded, unless it
    was set explicitly: then loading it fails later with the library named)."""
    library = system_library()
    if not library:
        return None
    explicit = bool(os.environ.get("PHONEMIZER_ESPEAK_LIBRARY"))
    version = library_version(library)
    if version is None and not explicit:
        log.warning("the system espeak-ng %s was found but cannot be loaded; ignoring it", library)
        return None
    why = "PHONEMIZER_ESPEAK_LIBRARY" if explicit else "found on the system"
    return EspeakLibrary("system", library, None, f"{why}; {CHOICE_ENV}={value}", version or "")


def _with_reason(found: EspeakLibrary, reason: str) -> EspeakLibrary:
    return EspeakLibrary(found.source, found.library, found.data_path, reason, found.version)


def _pick(value: str) -> EspeakLibrary:
    if value == "system":
        system = _system(value)
        if system is None:
            raise DependencyError(
                f"{CHOICE_ENV}=system but no system espeak-ng library was found; install it "
                "(Debian/Ubuntu: `sudo apt-get install espeak-ng`; macOS: "
                f"`brew install espeak-ng`) or unset {CHOICE_ENV} to use a bundled one "
                f"(`pip install {ENGLISH_PACKAGE}` on Linux x86_64, else {LOADER_PACKAGE})"
            )
        return system
    if value in ("espeak-english", "espeakng-loader"):
        found = espeak_english_library() if value == "espeak-english" else loader_library()
        if found is None:
            package = ENGLISH_PACKAGE if value == "espeak-english" else LOADER_PACKAGE
            raise DependencyError(
                f"{CHOICE_ENV}={value} but the {value} package is not installed (or has no "
                f"library for this platform); run `pip install {package}` or unset {CHOICE_ENV}"
            )
        return _with_reason(found, f"{CHOICE_ENV}={value}")
    if value == "bundled":
        found = bundled_library()
        if found is None:
            raise DependencyError(
                f"{CHOICE_ENV}=bundled but neither espeak-english nor espeakng-loader is "
                f"installed; {INSTALL_HINT}"
            )
        return _with_reason(found, f"{CHOICE_ENV}=bundled")

    # auto
    system = _system(value)
    explicit = bool(os.environ.get("PHONEMIZER_ESPEAK_LIBRARY"))
    if system is not None and (explicit or _is_golden(system.version)):
        return system
    if system is not None:
        log.info(
            "the system espeak-ng is %s (%s), not %s (the golden phonemes' version); looking for "
            "a bundled %s",
            system.version or "of an unknown version",
            system.library,
            ".".join(map(str, GOLDEN_VERSION)),
            ".".join(map(str, GOLDEN_VERSION)),
        )
    english = espeak_english_library()
    if english is not None:
        why = "no system espeak-ng found" if system is None else f"system one is {system.version}"
        return _with_reason(english, f"{why}; bundled 1.51")
    if system is not None:
        return _with_reason(system, f"found on the system, {system.version}; no bundled 1.51")
    loader = loader_library()
    if loader is not None:
        return _with_reason(loader, "no system espeak-ng found and espeak-english not installed")
    raise DependencyError(
        "English lyrics need the espeak-ng speech engine: no system espeak-ng was found and "
        f"neither espeak-english nor espeakng-loader is installed; {INSTALL_HINT}"
    )


def find_espeak(choice: str | None = None) -> EspeakLibrary:
    """Decide which libespeak-ng to load and log the decision (INFO).

    ``choice`` is one of :data:`CHOICES` (default: ``RHYTHMFLOW_ESPEAK``, else ``auto``); the
    order ``auto`` follows is in the module docstring. UsageError for an unknown choice;
    DependencyError, saying how to install one, when the chosen library is not available.
    """
    found = _pick(_choice(choice))
    log.info("English G2P uses the %s", found.describe())
    return found


def _short_data_path(data_path: str) -> str:
    """``data_path``, or a short link to it when espeak-ng would cut it (the link lives until
    the process exits)."""
    if len(data_path) <= _MAX_DATA_PATH:
        return data_path
    folder = tempfile.mkdtemp(prefix="rf-espeak-")
    atexit.register(shutil.rmtree, folder, True)
    link = Path(folder) / "espeak-ng-data"
    try:
        link.symlink_to(data_path, target_is_directory=True)
    except OSError:  # no symlinks (Windows without the privilege): copy the few MB
        shutil.copytree(data_path, link)
    log.debug("espeak-ng data path %s is too long for espeak-ng; using %s", data_path, link)
    return str(link)


@contextlib.contextmanager
def espeak_library_scope(found: EspeakLibrary) -> Iterator[None]:
    """Make phonemizer load ``found`` while the block runs, then restore the process state.

    phonemizer 3.3.0 takes the library from ``EspeakWrapper.set_library`` (class-wide) and has
    no data-path setting: it initialises espeak-ng with no path, so espeak-ng reads its data
    folder from the ``ESPEAK_DATA_PATH`` environment variable, else from the folder compiled
    into the library (for a bundled library, a build machine's path: espeak-ng then prints
    an error and exits the process). Both are process-wide, so they are set only here, for the
    time it takes to create a backend, and restored afterwards: a backend keeps its own copy of
    the library, already initialised with that data. Call it with the caller's lock held (the
    environment write is not atomic with respect to other threads reading it).
    """
    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    # the raw class attribute (None by default): EspeakWrapper.library() would resolve it
    previous_library = getattr(EspeakWrapper, "_ESPEAK_LIBRARY", None)
    previous_data = os.environ.get("ESPEAK_DATA_PATH")
    EspeakWrapper.set_library(found.library)
    if found.data_path is not None:
        os.environ["ESPEAK_DATA_PATH"] = _short_data_path(found.data_path)
    try:
        yield
    finally:
        EspeakWrapper.set_library(previous_library)
        if found.data_path is not None:
            if previous_data is None:
                os.environ.pop("ESPEAK_DATA_PATH", None)
            else:
                os.environ["ESPEAK_DATA_PATH"] = previous_data
