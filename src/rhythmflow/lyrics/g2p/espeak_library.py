"""Which libespeak-ng the English G2P loads, decided in one place: :func:`find_espeak`.

Two sources:

* **system**: the library phonemizer itself would load (``PHONEMIZER_ESPEAK_LIBRARY`` when set,
  else ``ctypes.util.find_library("espeak-ng")``), e.g. Debian's ``libespeak-ng1`` 1.51, with its
  own data folder;
* **bundled**: the copy in the ``espeakng-loader`` wheel (espeak-ng 1.52.0, library and
  ``espeak-ng-data`` inside the package), so ``pip install`` alone is enough.

The golden data was made with espeak-ng 1.51, and the two are not interchangeable:
``benchmarks/espeak_compare.py`` measured the bundled 1.52.0 against Debian's 1.51 on the 118
golden English lines (10 differ, 8.5%, all ``oːɹ`` → ``ɔːɹ``, e.g. "floor", "four") and on
ordinary words (see that script). So ``auto`` (the default) takes the system library when one is
found and the bundled one only when none is; a warning says the phonemes may then differ.

``RHYTHMFLOW_ESPEAK`` (read at call time) overrides the choice: ``auto`` (default), ``system``
or ``bundled``.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rhythmflow.errors import DependencyError, UsageError

log = logging.getLogger(__name__)

CHOICE_ENV = "RHYTHMFLOW_ESPEAK"
CHOICES = ("auto", "system", "bundled")
LOADER_PACKAGE = "espeakng-loader==0.2.4"
INSTALL_HINT = (
    f"run `pip install {LOADER_PACKAGE}` (bundled espeak-ng, no system package needed), or "
    "install the system espeak-ng, which the golden phonemes were made with (Debian/Ubuntu: "
    "`sudo apt-get install espeak-ng`; macOS: `brew install espeak-ng`), or point "
    "PHONEMIZER_ESPEAK_LIBRARY at a libespeak-ng"
)


@dataclass(frozen=True)
class EspeakLibrary:
    """A libespeak-ng to load: where it came from, the library, and its data folder.

    ``source`` is ``"system"`` or ``"bundled"``; ``data_path`` is the ``espeak-ng-data``
    folder to use, or None for the library's built-in default (the system install's own)."""

    source: str
    library: str
    data_path: str | None = None
    reason: str = ""

    def describe(self) -> str:
        data = f", data {self.data_path}" if self.data_path else ""
        return f"{self.source} espeak-ng {self.library}{data} ({self.reason})"


def system_library() -> str | None:
    """The library phonemizer would load on its own, or None: ``PHONEMIZER_ESPEAK_LIBRARY`` when
    set (returned as given, even if missing: an explicit setting is never replaced), else the
    first of ``espeak-ng`` / ``espeak`` that the platform's library search finds."""
    explicit = os.environ.get("PHONEMIZER_ESPEAK_LIBRARY")
    if explicit:
        return explicit
    return ctypes.util.find_library("espeak-ng") or ctypes.util.find_library("espeak")


def bundled_library() -> EspeakLibrary | None:
    """The espeak-ng shipped in the ``espeakng-loader`` wheel, or None when it is not installed
    (or its files are missing)."""
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
    return EspeakLibrary("bundled", library, data)


def _choice(choice: str | None) -> str:
    value = (choice if choice is not None else os.environ.get(CHOICE_ENV, "")).strip().lower()
    value = value or "auto"
    if value not in CHOICES:
        raise UsageError(
            f"{CHOICE_ENV}={value!r} is not one of {', '.join(CHOICES)} (auto: the system "
            "espeak-ng when found, else the one bundled in espeakng-loader)"
        )
    return value


def find_espeak(choice: str | None = None) -> EspeakLibrary:
    """Decide which libespeak-ng to load and log the decision (INFO).

    ``choice`` is ``auto``, ``system`` or ``bundled`` (default: ``RHYTHMFLOW_ESPEAK``, else
    ``auto``). ``auto`` takes the system library when one is found (its phonemes are the golden
    ones when it is 1.51) and the bundled one otherwise. UsageError for an unknown choice;
    DependencyError, saying how to install one, when the chosen library is not available.
    """
    value = _choice(choice)
    system = system_library() if value != "bundled" else None
    if system:
        why = (
            "PHONEMIZER_ESPEAK_LIBRARY"
            if os.environ.get("PHONEMIZER_ESPEAK_LIBRARY")
            else "found on the system"
        )
        found = EspeakLibrary("system", system, None, f"{why}; {CHOICE_ENV}={value}")
    elif value == "system":
        raise DependencyError(
            f"{CHOICE_ENV}=system but no system espeak-ng library was found; install it "
            "(Debian/Ubuntu: `sudo apt-get install espeak-ng`; macOS: `brew install espeak-ng`) "
            f"or unset {CHOICE_ENV} to use the bundled one (`pip install {LOADER_PACKAGE}`)"
        )
    else:
        bundled = bundled_library()
        if bundled is None:
            where = "no system espeak-ng was found and " if value == "auto" else ""
            raise DependencyError(
                f"English lyrics need the espeak-ng speech engine: {where}the espeakng-loader "
                f"package is not installed; {INSTALL_HINT}"
            )
        why = "no system espeak-ng found" if value == "auto" else f"{CHOICE_ENV}=bundled"
        found = EspeakLibrary(bundled.source, bundled.library, bundled.data_path, why)
    log.info("English G2P uses the %s", found.describe())
    return found


@contextlib.contextmanager
def espeak_library_scope(found: EspeakLibrary) -> Iterator[None]:
    """Make phonemizer load ``found`` while the block runs, then restore the process state.

    phonemizer 3.3.0 takes the library from ``EspeakWrapper.set_library`` (class-wide) and has
    no data-path setting: it initialises espeak-ng with no path, so espeak-ng reads its data
    folder from the ``ESPEAK_DATA_PATH`` environment variable, else from the folder compiled
    into the library (for the bundled library, a build machine's path: espeak-ng then prints
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
        os.environ["ESPEAK_DATA_PATH"] = found.data_path
    try:
        yield
    finally:
        EspeakWrapper.set_library(previous_library)
        if found.data_path is not None:
            if previous_data is None:
                os.environ.pop("ESPEAK_DATA_PATH", None)
            else:
                os.environ["ESPEAK_DATA_PATH"] = previous_data
