"""Typed errors. Every user-facing failure is one of these; the CLI maps each to an exit code.

Exit codes (documented in the README):
    0 success, 1 unexpected internal error, 2 usage / bad input, 3 missing or corrupt asset,
    4 not enough memory or time budget, 5 timeout (resume state saved), 6 numerical failure,
    130 cancelled (Ctrl-C / SIGTERM; resume state saved).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_ASSET = 3
EXIT_RESOURCES = 4
EXIT_TIMEOUT = 5
EXIT_NUMERICAL = 6
EXIT_CANCELLED = 130


class RhythmflowError(Exception):
    """Base class of all errors the user can act on; the message says what to do.

    ``field`` names the request field at fault (``steps``, ``lrc`` …) when there is one, so each
    front end can point at it in its own words (the CLI as ``--steps``, the API as JSON);
    ``line`` is the 1-based line of the lyrics at fault, when known.
    """

    exit_code = EXIT_INTERNAL

    def __init__(self, *args: object, field: str | None = None, line: int | None = None) -> None:
        super().__init__(*args)
        self.field = field
        self.line = line


class UsageError(RhythmflowError, ValueError):
    """Bad arguments or bad input data (a file, a setting, a combination of options)."""

    exit_code = EXIT_USAGE


class LrcError(UsageError):
    """Malformed LRC lyrics; the message names the file line."""


class LyricsError(UsageError):
    """A lyric line that cannot be turned into phonemes (the message names the line)."""


class CheckpointError(UsageError):
    """A checkpoint file that is not a DiffRhythm checkpoint, is truncated, or does not match."""


class AssetError(RhythmflowError):
    """A model asset is missing or corrupt; the message names the file, the repo and the fix."""

    exit_code = EXIT_ASSET


class DependencyError(AssetError):
    """An optional dependency or system package (espeak-ng, onnxruntime, muq) is missing."""


class ResourceError(RhythmflowError):
    """The job does not fit in the available memory or the given time budget."""

    exit_code = EXIT_RESOURCES


class NumericalError(RhythmflowError):
    """NaN or Inf appeared in the sampler state."""

    exit_code = EXIT_NUMERICAL


class Interrupted(RhythmflowError):
    """Sampling stopped before the end; ``state`` (a SamplerState) can resume it."""

    def __init__(self, message: str, state=None, state_path=None) -> None:
        super().__init__(message, field=None)
        self.state = state
        self.state_path = state_path


class SamplingTimeout(Interrupted):
    """The --timeout deadline passed during sampling."""

    exit_code = EXIT_TIMEOUT


class SamplingCancelled(Interrupted):
    """Ctrl-C / SIGTERM (or a cancel token) stopped sampling."""

    exit_code = EXIT_CANCELLED


_PLAIN = (  # (text or class-name fragment, plain words); first match wins
    ("PytorchStreamReader", "the file is damaged or truncated (not a complete zip archive)"),
    ("central directory", "the file is damaged or truncated (not a complete zip archive)"),
    ("legacy .tar format", "it is not a PyTorch zip checkpoint"),
    ("invalid load key", "it is not a PyTorch checkpoint"),
    ("Timeout", "the connection timed out"),
    ("ConnectError", "could not connect to the server"),
    ("GatedRepo", "the repository needs a login (set HF_TOKEN or run `hf auth login`)"),
    ("RepositoryNotFound", "the repository was not found"),
    ("EntryNotFound", "the file was not found in the repository"),
    ("RevisionNotFound", "the revision was not found"),
)


def plain_reason(exc: BaseException) -> str:
    """A short reason a user can read for an exception raised inside a library: the operating
    system's words when an OSError is in the chain ("Connection refused", "No space left on
    device"), plain words for known library failures, else "unexpected <Type>". Never the
    library's own message (internal codes like ``(101)``, ``pop from empty list``...); callers
    log that at debug level."""
    chain, e = [], exc
    while e is not None and all(e is not c for c in chain) and len(chain) < 20:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in chain:
        if isinstance(e, OSError) and e.strerror and not isinstance(e.errno, str):
            return e.strerror
        status = getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(status, int):
            what = {401: "login needed: set HF_TOKEN", 403: "access refused: set HF_TOKEN",
                    404: "not found", 429: "too many requests: wait and retry"}.get(status)
            return f"the server answered HTTP {status}" + (f" ({what})" if what else "")
    for e in chain:
        text = f"{type(e).__name__} {e}"
        for fragment, words in _PLAIN:
            if fragment in text:
                return words
    return f"unexpected {type(exc).__name__}"
