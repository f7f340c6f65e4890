"""Files written safely: atomically, with stale temporaries cleaned and disk errors explained.

* :func:`atomic_writer` / :func:`atomic_write_bytes` write through a temporary file in the target
  folder and a rename: a failed write leaves neither a partial file nor the temporary one, and
  the old file (if any) is kept. Files are created with mode ``0o666`` less the umask, like any
  other program's files. Every atomic write in rhythmflow goes through here.
* Temporary files are named ``.<name>.<pid>-<random>.rhythmflow-part``. A run killed with SIGKILL
  cannot remove its own; :func:`clean_stale_temps` (called before every atomic write and when the
  plan checks its output folder) deletes those whose process is gone, or that are older than a
  day.

Where a run writes and in which format is decided by the plan (:mod:`rhythmflow.planner.outputs`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from rhythmflow.errors import ResourceError, UsageError

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".rhythmflow-part"
_TEMP = re.compile(r"^\..+\.(\d+)-[A-Za-z0-9_-]+" + re.escape(TEMP_SUFFIX) + "$")
STALE_SECONDS = 24 * 3600.0
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def os_error(path: Path, exc: OSError, what: str = "write") -> Exception:
    """The typed error for an OSError while writing ``path``: ResourceError when the disk (or
    quota, or file-size limit) is full, UsageError otherwise; both name the path and the fix."""
    why = exc.strerror or str(exc)
    if exc.errno in _NO_SPACE:
        return ResourceError(f"cannot {what} {path}: {why}; free disk space or choose another "
                             "folder")
    return UsageError(f"cannot {what} {path}: {why}; choose a folder you can write to")


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process: leave its files alone
    return True


def clean_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete our own temporary files in ``folder`` left by a killed run (their process is gone,
    or they are older than a day); returns what was removed. Never raises."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or not entry.is_file(follow_symlinks=False):
            continue
        try:
            old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_SECONDS
            if old or not _process_alive(int(m.group(1))):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    for p in removed:
        log.warning("removed %s, an unfinished file left by an interrupted run", p)
    return removed


def _open_temp(path: Path) -> tuple[int, Path]:
    """A new temporary file beside ``path`` opened for writing (mode 0o666 less the umask)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, what: str = "write") -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; on a clean exit it is flushed, synced and renamed
    to ``path``; on any exception (including KeyboardInterrupt) it is deleted and ``path`` is
    untouched. OSErrors become UsageError / ResourceError (:func:`os_error`)."""
    path = Path(path).expanduser()
    if not path.parent.is_dir():
        raise UsageError(f"cannot {what} {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise UsageError(f"cannot {what} {path}: it is a folder")
    clean_stale_temps(path.parent)
    tmp: Path | None = None
    try:
        fd, tmp = _open_temp(path)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise os_error(path, exc, what) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`); returns the path."""
    path = Path(path).expanduser()
    with atomic_writer(path) as fh:
        fh.write(data)
    return path


def check_writable_folder(folder: Path) -> None:
    """UsageError unless ``folder`` exists, is a folder, and a file can be created in it (tried
    for real: permissions, read-only mounts and root all answer truthfully). Cleans our stale
    temporary files there."""
    if not folder.exists():
        raise UsageError(f"output folder {folder} does not exist; create it first")
    if not folder.is_dir():
        raise UsageError(f"output folder {folder} is not a folder")
    try:
        fd, probe = _open_temp(folder / "probe")
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise UsageError(f"cannot write to the output folder {folder}: {why}; choose a folder "
                         "you can write to (-o DIR/song.wav)") from None
    clean_stale_temps(folder)
