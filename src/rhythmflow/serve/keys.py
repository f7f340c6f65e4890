"""API keys with limits: ``--keys FILE`` (TOML, one ``[[keys]]`` table per key, stored as the
SHA-256 of the key) and ``--api-key`` (one admin key without limits).

A job belongs to the key that submitted it: a key sees and controls only its own jobs (an
``admin`` key: all), submits at most ``max_queued`` jobs waiting at once (HTTP 429 beyond), has at
most ``max_running`` running at once (the workers take its other jobs later) and its jobs are
taken before those of keys with a lower ``priority`` (FIFO within a priority). No server without
any key: every caller is the anonymous admin.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from rhythmflow.errors import UsageError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FIELDS = ("name", "key_sha256", "max_queued", "max_running", "priority", "admin")


@dataclass(frozen=True)
class ApiKey:
    """One key: who it is (``name``, the jobs' owner), its hash and its limits (None: none)."""

    name: str
    key_sha256: str
    max_queued: int | None = None
    max_running: int | None = None
    priority: int = 0
    admin: bool = False

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise UsageError(f"keys: name {self.name!r}: letters, digits, '_', '.', '-' (at most "
                             "64), starting with a letter or digit", field="name")
        if not re.fullmatch(r"[0-9a-f]{64}", self.key_sha256):
            raise UsageError(f"keys: {self.name}: key_sha256 must be 64 lowercase hex digits",
                             field="key_sha256")
        for name in ("max_queued", "max_running"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise UsageError(f"keys: {self.name}: {name} must be a whole number >= 1 (or "
                                 "left out: no limit)", field=name)
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise UsageError(f"keys: {self.name}: priority must be a whole number",
                             field="priority")
        if not isinstance(self.admin, bool):
            raise UsageError(f"keys: {self.name}: admin must be true or false", field="admin")

    def matches(self, given: str) -> bool:
        return hmac.compare_digest(hash_key(given), self.key_sha256)


#: the caller of a server without any key: sees everything, no limits
ANONYMOUS = ApiKey("anonymous", "0" * 64, admin=True)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def admin_key(key: str) -> ApiKey:
    """``--api-key``: one admin key named ``admin``, without limits."""
    return ApiKey("admin", hash_key(key), admin=True)


def load_keys(path: str | Path) -> tuple[ApiKey, ...]:
    """The ``[[keys]]`` tables of a TOML file; UsageError naming the problem."""
    import tomllib

    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"keys file {path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"keys file {path}: not valid TOML: {exc}") from None
    tables = data.get("keys")
    if not isinstance(tables, list) or not tables:
        raise UsageError(f"keys file {path}: no [[keys]] table; `rhythmflow keys add NAME` prints "
                         "one")
    keys = []
    for t in tables:
        unknown = sorted(set(t) - set(FIELDS))
        if unknown:
            raise UsageError(f"keys file {path}: unknown field {unknown[0]!r}; known: "
                             + ", ".join(FIELDS))
        if "name" not in t or "key_sha256" not in t:
            raise UsageError(f"keys file {path}: every [[keys]] needs name and key_sha256")
        keys.append(ApiKey(**t))
    names = [k.name for k in keys]
    if len(set(names)) != len(names):
        raise UsageError(f"keys file {path}: a name appears twice")
    return tuple(keys)


def new_key(name: str, *, max_queued: int | None = 10, max_running: int | None = 1,
            priority: int = 0, admin: bool = False) -> tuple[str, str]:
    """(a new random key, the TOML table to paste into the keys file)."""
    key = "rf_" + secrets.token_urlsafe(32)
    entry = ApiKey(name, hash_key(key), max_queued, max_running, priority, admin)
    lines = ["[[keys]]", f'name = "{entry.name}"', f'key_sha256 = "{entry.key_sha256}"']
    if max_queued is not None:
        lines.append(f"max_queued = {max_queued}     # jobs waiting, not counting the running")
    if max_running is not None:
        lines.append(f"max_running = {max_running}")
    lines += [f"priority = {priority}        # higher runs first; FIFO within a priority",
              f"admin = {'true' if admin else 'false'}"]
    return key, "\n".join(lines) + "\n"


def identify(keys: tuple[ApiKey, ...], given: str | None) -> ApiKey | None:
    """The key ``given`` is (every key compared, in constant time each), None when none."""
    if not given:
        return None
    found = None
    for k in keys:
        if k.matches(given):
            found = found or k
    return found
