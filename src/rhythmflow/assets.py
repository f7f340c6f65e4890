"""Declarative table of model-release assets and their resolution to local files.

Order: explicit path → local asset root (``assets_dir`` / ``RHYTHMFLOW_ASSETS_DIR``, laid out as
``<root>/<repo_id>/<path in repo>``; Space files may also sit at ``<root>/<path in repo>``, as in
../shared/assets) → Hugging Face cache → download. Offline (``offline=True`` / ``HF_HUB_OFFLINE``)
never opens a connection. Known sha256 sums are checked once per file — the table's pinned sum,
else, for a file ``hf_hub_download`` put in the cache, the Hub's own record (the blob's name: the
sha256 of a Git LFS file, the git blob sha1 of a small one); a marker keyed by (real path, size,
mtime) under :func:`cache_root` avoids re-hashing; ``fetch`` always re-hashes. A corrupt file
raises AssetError and is never returned. Nothing is written relative to the cwd.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rhythmflow import specs
from rhythmflow.errors import EXIT_ASSET, EXIT_OK, AssetError, RhythmflowError, UsageError
from rhythmflow.files import atomic_write_bytes

log = logging.getLogger(__name__)

SPACE = "ASLP-lab/DiffRhythm"


@dataclass(frozen=True)
class Asset:
    name: str
    repo_id: str
    repo_type: str  # "model" | "space"
    path: str  # path inside the repo (and inside a local asset root)
    sha256: str | None = None
    size: str = ""


def _space(name: str, path: str, sha256: str | None = None, size: str = "small") -> Asset:
    return Asset(name, SPACE, "space", path, sha256, size)


_G2P = "diffrhythm/g2p/sources/g2p_chinese_model/"
#: the lyric check's default recogniser (rhythmflow.asr.whisper): multilingual (English and
#: Chinese), 74 M parameters — base rather than tiny, as sung words are hard to recognise
ASR_REPO = "openai/whisper-base"
_ASR_FILES = {"model.safetensors": "290 MB", "tokenizer.json": "2 MB", "vocab.json": "1 MB"}
_MULAN, _MUQ, _XLMR = "OpenMuQ/MuQ-MuLan-large", "OpenMuQ/MuQ-large-msd-iter", "xlm-roberta-base"

# fmt: off
ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        *(Asset(f"dit-{s.name}", s.repo, "model", s.file, None, "2.2 GB")
          for s in specs.MODELS.values()),
        Asset("vae", specs.VAE_REPO, "model", specs.VAE_FILE,
              "cbf5e34d649b48fae7e5c5c2266bbbce97b647d52e7dcd584325a28a8338c81a", "625 MB"),
        # MuQ-MuLan (rhythmflow.style.mulan): the five files MuQMuLanEncoder reads. The towers'
        # own weights (MuQ's model.safetensors, XLM-R's) and XLM-R's sentencepiece model are
        # never read (pytorch_model.bin holds every tensor), so they are not fetched. No pinned
        # sums: a Hub download is checked against the Hub's own record (see _hub_record).
        Asset("mulan-config", _MULAN, "model", "config.json"),
        Asset("mulan-weights", _MULAN, "model", "pytorch_model.bin", None, "2.8 GB"),
        Asset("muq-config", _MUQ, "model", "config.json"),
        Asset("xlmr-config", _XLMR, "model", "config.json"),
        Asset("xlmr-tokenizer", _XLMR, "model", "tokenizer.json", None, "9 MB"),
        _space("g2p-vocab", "diffrhythm/g2p/g2p/vocab.json",
               "0f5c44e05f79df8ae4fd77d7772950436a8bacc83d134fdf0ae3c72412b5676a"),
        _space("negative-style", "src/negative_prompt.npy",
               "6cb7d74eb7a8eda12acb8247b21d373928301db8a8cb0db480d341799fed3ce5"),
        _space("zh-lexicon", "diffrhythm/g2p/sources/chinese_lexicon.txt",
               "a3a7685d1c3e68eb2fa304bfc63e90c90c3c1a1948839a5b1b507b2131b3e2fb", "15 MB"),
        _space("zh-poly-onnx", _G2P + "poly_bert_model.onnx",
               "8765d835ffdf9811c832d4dc7b6a552757aa8615c01d1184db716a50c20aebbc", "77 MB"),
        _space("zh-poly-config", _G2P + "config.json",
               "5a16b71fe399bfa6114053a1e249665c0d7921a6a1c10b3f530cb7d213f8a735"),
        _space("zh-poly-vocab", _G2P + "vocab.txt",
               "366fe2b1318c774fd28bdea58dbcfbd6d6aeae313fdcd9063d170cdc602fd51a"),
        _space("zh-polychar", _G2P + "polychar.txt",
               "9df819e371415c23e26a2907236a0228ef93772cc698d93dc0c18844956d1011"),
        _space("zh-polydict", _G2P + "polydict.json",
               "ec6c8bd6d223205f48a17a07720bc594c20b3eab5460175414f7ebee1e66b6b9"),
        _space("zh-polydict-r", _G2P + "polydict_r.json",
               "386e90aecf0f9bdbeac41541d7013e347594188962e17c7daee83caf40d993d2"),
        _space("zh-pinyin2bpmf", "diffrhythm/g2p/sources/pinyin_2_bpmf.txt",
               "dc8b048a20cf61d04b5a36bc6939db74095719b8099269a1269023ee3e6535b4"),
        _space("zh-bpmf2pinyin", "diffrhythm/g2p/sources/bpmf_2_pinyin.txt",
               "bf24a3306ffbef6b1fbfc1780e25933361bc4d6587b8eb331b13241b8d892ba2"),
        *(Asset("asr-whisper-" + f.rsplit(".", 1)[0].replace("_", "-"), ASR_REPO, "model", f,
                None, _ASR_FILES.get(f, "small"))
          for f in ("config.json", "generation_config.json", "model.safetensors",
                    "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
                    "vocab.json", "merges.txt", "normalizer.json", "added_tokens.json",
                    "special_tokens_map.json")),
    ]
}
# fmt: on

#: ``--model`` choice (names and aliases of :mod:`rhythmflow.specs`) → DiT asset name.
MODELS: dict[str, str] = {m: "dit-" + specs.get_spec(m).name for m in specs.MODEL_NAMES}
COMMON_ASSETS = ("vae", "g2p-vocab", "negative-style")
#: what a text or audio style prompt needs (rhythmflow.style.embed.MuQMuLanEncoder.FILES)
MULAN_ASSETS = ("mulan-config", "muq-config", "xlmr-config", "mulan-weights", "xlmr-tokenizer")
CHINESE_ASSETS = tuple(n for n in ASSETS if n.startswith("zh-"))
ASR_ASSETS = tuple(n for n in ASSETS if n.startswith("asr-"))


@dataclass(frozen=True)
class AssetProgress:
    """A progress event: ``stage`` is "download" or "verify"; ``done``/``total`` in bytes."""

    name: str
    stage: str
    done: int
    total: int | None


ProgressFn = Callable[[AssetProgress], None]


def env_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to a true value (read at call time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def cache_root() -> Path:
    """rhythmflow's cache folder: ``RHYTHMFLOW_CACHE_DIR``, else ``$XDG_CACHE_HOME/rhythmflow``,
    else ``~/.cache/rhythmflow`` (never relative to the current directory)."""
    if env := os.environ.get("RHYTHMFLOW_CACHE_DIR"):
        return Path(env).expanduser().absolute()
    return _xdg_cache() / "rhythmflow"


def _xdg_cache() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return _xdg_cache() / "huggingface" / "hub"


def _fetch_command(asset: Asset) -> str:
    model = next((m for m, a in MODELS.items() if a == asset.name), None)
    if model:
        return f"rhythmflow fetch model={model}"
    if asset.name in ASR_ASSETS:
        return "rhythmflow fetch with_asr=1"
    return "rhythmflow fetch with_chinese=1" if asset.name in CHINESE_ASSETS else "rhythmflow fetch"


def _hint(asset: Asset) -> str:
    kind = "" if asset.repo_type == "model" else f" --repo-type {asset.repo_type}"
    return (
        f"run `{_fetch_command(asset)}` while online (or `hf download {asset.repo_id} "
        f"{asset.path}{kind}`), or set assets_dir=DIR (or RHYTHMFLOW_ASSETS_DIR) to a "
        f"folder holding DIR/{asset.repo_id}/{asset.path}"
    )


class _CorruptAssetError(AssetError):
    """A file is present but its sha256 does not match the table (internal)."""


def file_sha256(
    path: str | os.PathLike, name: str = "", on_progress: ProgressFn | None = None
) -> str:
    """Hex sha256 of a file, read in 8 MB pieces; ``on_progress`` gets "verify" events."""
    return _file_digest(path, "sha256", name, on_progress)


def git_blob_sha1(
    path: str | os.PathLike, name: str = "", on_progress: ProgressFn | None = None
) -> str:
    """Git's object id of a file: sha1 of ``b"blob <size>\\0"`` + content (what the Hub reports
    as the ETag of a file not stored with Git LFS)."""
    return _file_digest(path, "git-sha1", name, on_progress)


def _file_digest(path: str | os.PathLike, algo: str, name: str,
                 on_progress: ProgressFn | None) -> str:
    path = Path(path).expanduser()
    total, done = path.stat().st_size, 0
    if algo == "git-sha1":
        h = hashlib.sha1(f"blob {total}\0".encode(), usedforsecurity=False)
    else:
        h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
            done += len(chunk)
            if on_progress:
                on_progress(AssetProgress(name, "verify", done, total))
    return h.hexdigest()


_HEX = frozenset("0123456789abcdef")
#: how each kind of check shows in ``fetch``'s report
CHECK_LABELS = {"sha256": "sha256 ok", "hub-sha256": "sha256 ok (Hub record)",
                "hub-git-sha1": "git sha1 ok (Hub record)"}


def _hub_record(path: str | os.PathLike) -> tuple[str, str] | None:
    """The Hub's own record of a file ``hf_hub_download`` put in the Hugging Face cache, as
    ``(algo, hex)``: the cache keeps ``snapshots/<rev>/<path>`` as a link to ``blobs/<etag>``,
    and the etag is the file's sha256 for a Git LFS file (64 hex digits: "sha256") or its git
    blob sha1 otherwise (40: "git-sha1"). None for a file outside that layout (an asset folder,
    or a cache made without symlinks), which has no record to check against."""
    real = Path(path).resolve()
    blob = real.name.lower()
    if real.parent.name != "blobs" or not set(blob) <= _HEX:
        return None
    return {64: ("sha256", blob), 40: ("git-sha1", blob)}.get(len(blob))


def _marker(real: Path) -> Path:
    key = hashlib.sha256(str(real).encode()).hexdigest()[:32]
    return cache_root() / "verified" / f"{key}.json"


def _stamp(real: Path, digest: str, algo: str = "sha256") -> dict:
    st = real.stat()
    return {"path": str(real), "size": st.st_size, "mtime_ns": st.st_mtime_ns, algo: digest}


def verify_file(
    path: str | os.PathLike,
    sha256: str | None,
    *,
    name: str = "",
    force: bool = False,
    on_progress: ProgressFn | None = None,
) -> bool:
    """Check ``path`` against ``sha256``; return True when verified, False when no checksum is
    known. Raises AssetError (naming the file and both hashes) on a mismatch. Unless ``force``,
    a verified marker with the same real path, size and mtime skips the hashing."""
    if sha256 is None:
        return False
    return _verify(path, sha256, "sha256", name=name, force=force, on_progress=on_progress)


def _verify(path: str | os.PathLike, expected: str, algo: str, *, name: str, force: bool,
            on_progress: ProgressFn | None, source: str = "") -> bool:
    """verify_file for ``algo`` "sha256" or "git-sha1"; ``source`` says where ``expected`` came
    from in a mismatch message."""
    expected = expected.lower()
    real = Path(path).resolve()
    marker, stamp = _marker(real), _stamp(real, expected, algo)
    if not force:
        try:
            if json.loads(marker.read_text(encoding="utf-8")) == stamp:
                return True
        except (OSError, ValueError):
            pass
    actual = _file_digest(real, algo, name or real.name, on_progress)
    if actual != expected:
        kind = "git blob sha1" if algo == "git-sha1" else "sha256"
        raise _CorruptAssetError(
            f"corrupt asset {name or real.name}: {path} has {kind} {actual}, expected "
            f"{expected}{source}; the file is damaged or incomplete"
        )
    if _stamp(real, expected, algo) != stamp:  # changed while hashing: verified, but no marker
        return True
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(marker, json.dumps(stamp).encode("utf-8"))
    except (OSError, RhythmflowError) as exc:  # a read-only cache only costs a re-hash
        log.warning("could not record verified marker %s: %s", marker, exc)
    return True


def _from_cache(asset: Asset) -> Path | None:
    from huggingface_hub import try_to_load_from_cache  # purely local lookup

    found = try_to_load_from_cache(
        asset.repo_id, asset.path, cache_dir=hf_cache_dir(), repo_type=asset.repo_type
    )
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def _tqdm_bridge(name: str, on_progress: ProgressFn | None):
    from tqdm import tqdm

    class _Bridge(tqdm):  # forwards byte counts to on_progress, draws nothing
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            kwargs.pop("name", None)
            self._done, self._total = int(kwargs.get("initial") or 0), kwargs.get("total")
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            self._done += int(n or 0)
            if on_progress:
                on_progress(AssetProgress(name, "download", self._done, self._total))

    return _Bridge


def _reason(exc: BaseException) -> str:
    """Plain words for a failed download (the hub's own text is logged at debug level)."""
    from rhythmflow.errors import plain_reason

    log.debug("download failed", exc_info=exc)
    return plain_reason(exc)


def _hub_logs_once() -> None:
    """huggingface_hub gives its logger its own stderr handler *and* lets records propagate to
    the root logger, so with logging configured (the CLI) every retry line was printed twice.
    Keep the root's handler (our format, -q/-v) and drop the hub's when the root has one."""
    if not logging.getLogger().handlers:
        return
    for name in ("huggingface_hub", "transformers"):
        lib = logging.getLogger(name)
        for h in list(lib.handlers):
            if type(h) is logging.StreamHandler:
                lib.removeHandler(h)


def _present(asset: Asset, root: Path | None) -> bool:
    """Whether ``asset`` is on this machine (asset folder or hub cache); no hashing."""
    if root is not None and ((root / asset.repo_id / asset.path).is_file() or (
            asset.repo_id == SPACE and (root / asset.path).is_file())):
        return True
    return _from_cache(asset) is not None


def missing_message(asset: Asset, root: str | os.PathLike | None, why: str) -> str:
    """One short block: what failed (``why``), every file of the same group (the model's files,
    or the Chinese / MuQ-MuLan resources) that is not on this machine, and the one command that
    fetches them all."""
    root = Path(root).expanduser() if root else None
    model = min((m for m, a in MODELS.items() if a == asset.name), key=len, default=None)
    if asset.name in CHINESE_ASSETS:
        group, command = list(CHINESE_ASSETS), "rhythmflow fetch with_chinese=1"
    elif asset.name in MULAN_ASSETS:
        group, command = list(MULAN_ASSETS), "rhythmflow fetch"
    else:
        group = [asset.name, *COMMON_ASSETS]
        command = f"rhythmflow fetch model={model}" if model else "rhythmflow fetch"
    missing = [asset] + [ASSETS[n] for n in dict.fromkeys(group)
                         if n != asset.name and not _present(ASSETS[n], root)]
    where = f"{root} and " if root else ""
    lines = [f"missing asset {asset.name}: {why}", "files not on this machine:"]
    lines += [f"  {a.repo_id}/{a.path}" + (f" ({a.size})" if a.size else "") for a in missing]
    lines += [f"looked in: {where}the Hugging Face cache {hf_cache_dir()}",
              f"fix: run `{command}` once while online, or set assets_dir=DIR (or "
              "RHYTHMFLOW_ASSETS_DIR) to a folder holding DIR/<repo>/<file>"]
    return "\n".join(lines)


def _download(asset: Asset, *, force: bool, on_progress: ProgressFn | None,
              root: str | os.PathLike | None = None) -> Path:
    import inspect

    from huggingface_hub import hf_hub_download

    kwargs: dict = {"repo_type": asset.repo_type, "cache_dir": hf_cache_dir()}
    if force:
        kwargs["force_download"] = True
    if os.environ.get("HF_ENDPOINT"):  # read at call time (the hub reads it at import)
        kwargs["endpoint"] = os.environ["HF_ENDPOINT"]
    _hub_logs_once()
    byte_progress = "tqdm_class" in inspect.signature(hf_hub_download).parameters
    if byte_progress:
        kwargs["tqdm_class"] = _tqdm_bridge(asset.name, on_progress)
    elif on_progress:  # huggingface_hub < 1.0 takes no tqdm_class: report start and end only
        on_progress(AssetProgress(asset.name, "download", 0, None))
    log.info("downloading %s from %s (%s)", asset.path, asset.repo_id, asset.size or "?")
    try:
        path = Path(hf_hub_download(asset.repo_id, asset.path, **kwargs))
        if on_progress and not byte_progress:
            size = path.stat().st_size
            on_progress(AssetProgress(asset.name, "download", size, size))
        return path
    except Exception as exc:  # the hub raises many types; all mean "could not download"
        raise AssetError(missing_message(
            asset, root, f"could not download '{asset.path}' from the Hugging Face "
            f"{asset.repo_type} repo '{asset.repo_id}' ({_reason(exc)}; check the network or "
            "HF_TOKEN)")) from exc


def _locate(
    asset: Asset,
    *,
    assets_dir: str | os.PathLike | None,
    offline: bool,
    force_verify: bool,
    on_progress: ProgressFn | None,
) -> tuple[Path, str, str]:
    """(path, source, check) for ``asset``; source is "assets-dir", "hf-cache" or "download";
    check is a key of :data:`CHECK_LABELS` ("" when nothing was known to check against)."""
    root = assets_dir if assets_dir is not None else os.environ.get("RHYTHMFLOW_ASSETS_DIR")

    def check(p: Path, force: bool = force_verify) -> str:
        # a pinned sum wins; else the Hub's record of a file hf_hub_download put in the cache
        record = ("sha256", asset.sha256) if asset.sha256 else _hub_record(p)
        if record is None:
            return ""
        algo, expected = record
        source = "" if asset.sha256 else " (the Hugging Face Hub's record of it)"
        try:
            _verify(p, expected, algo, name=asset.name, force=force, on_progress=on_progress,
                    source=source)
        except _CorruptAssetError as exc:
            # the hub reuses a blob already in the cache: deleting only the link fixes nothing
            it = f"{p.resolve()} (the cached file it links to)" if p.is_symlink() else "it"
            raise _CorruptAssetError(
                f"{exc} (it is '{asset.path}' from the Hugging Face {asset.repo_type} repo "
                f"'{asset.repo_id}'; to fix: delete {it}, then {_hint(asset)})"
            ) from None
        return algo if asset.sha256 else "hub-" + algo

    if root:
        root = Path(root).expanduser()
        if not root.is_dir():
            log.warning("asset folder %s does not exist; looking in the Hugging Face cache", root)
        for p in [root / asset.repo_id / asset.path] + [root / asset.path] * (
            asset.repo_id == SPACE
        ):
            if p.is_file():
                return p, "assets-dir", check(p)
    cached = _from_cache(asset)
    if cached is not None:
        try:
            return cached, "hf-cache", check(cached)
        except _CorruptAssetError:
            if offline:
                raise
            log.warning("cached %s is corrupt; downloading it again", asset.path)
            path = _download(asset, force=True, on_progress=on_progress)
            return path, "download", check(path, force=True)
    if offline:
        raise AssetError(missing_message(
            asset, root, f"'{asset.path}' from the Hugging Face {asset.repo_type} repo "
            f"'{asset.repo_id}' is not here and offline mode is on (offline=1 or "
            "HF_HUB_OFFLINE=1)"))
    path = _download(asset, force=False, on_progress=on_progress, root=root)
    return path, "download", check(path, force=True)


def resolve(
    name: str,
    *,
    path: str | os.PathLike | None = None,
    assets_dir: str | os.PathLike | None = None,
    offline: bool | None = None,
    on_progress: ProgressFn | None = None,
) -> Path:
    """Return a local, verified path for asset ``name`` (a key of :data:`ASSETS`).

    ``path``: use this file as is (must exist; not checksummed — the caller chose it).
    ``assets_dir``: local asset root (default ``RHYTHMFLOW_ASSETS_DIR``). ``offline``: default
    ``HF_HUB_OFFLINE``; when true, no network connection is made. ``on_progress`` receives
    :class:`AssetProgress` events while downloading or hashing. Raises AssetError for an unknown
    name, a missing file (the message names the file, the repo and the fix) or a corrupt file.
    """
    if name not in ASSETS:
        raise AssetError(f"unknown asset {name!r}; known: {', '.join(sorted(ASSETS))}")
    asset = ASSETS[name]
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise AssetError(f"{name}: the file {p} given for it does not exist")
        return p
    offline = env_offline() if offline is None else offline
    found, source, _ = _locate(
        asset, assets_dir=assets_dir, offline=offline, force_verify=False, on_progress=on_progress
    )
    log.debug("asset %s → %s (%s)", name, found, source)
    return found


def required_assets(
    model: str, *, with_chinese: bool = False, with_mulan: bool = True, with_asr: bool = False
) -> list[str]:
    """Asset names a generation run with ``model`` (a key of :data:`MODELS`) needs
    (``with_asr``: and the lyric check's Whisper)."""
    if model not in MODELS:
        raise UsageError(f"unknown model {model!r}; choose one of: {', '.join(MODELS)}")
    names = [MODELS[model], *COMMON_ASSETS]
    names += list(MULAN_ASSETS) if with_mulan else []
    names += list(ASR_ASSETS) if with_asr else []
    return names + (list(CHINESE_ASSETS) if with_chinese else [])


@dataclass
class FetchItem:
    """status "ok" | "missing" | "corrupt"; source "assets-dir" | "hf-cache" | "download";
    verified False when no checksum is known; check: how it was verified ("sha256": the pinned
    sum, "hub-sha256" / "hub-git-sha1": the Hub's record in the cache, "" none)."""

    name: str
    repo_id: str
    path_in_repo: str
    status: str
    local_path: Path | None = None
    source: str | None = None
    verified: bool = False
    message: str = ""
    check: str = ""


@dataclass
class FetchReport:
    """``fetch``'s outcome: ``ok``, ``exit_code`` (0, or 3 = EXIT_ASSET), ``problems``, ``lines()``."""

    model: str
    offline: bool
    items: list[FetchItem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(i.status == "ok" for i in self.items)

    @property
    def problems(self) -> list[FetchItem]:
        return [i for i in self.items if i.status != "ok"]

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_ASSET

    def lines(self) -> list[str]:
        """Human-readable summary, one line per asset then one per problem."""
        out = []
        for i in self.items:
            check = CHECK_LABELS.get(i.check, "sha256 ok") if i.verified else "no checksum"
            where = (
                f"{i.local_path} ({i.source}, {check})" if i.status == "ok" else i.status.upper()
            )
            out.append(f"{i.name:<20} {where}")
        return out + [f"error: {i.message}" for i in self.problems]


def fetch(
    model: str,
    *,
    with_chinese: bool = False,
    offline: bool | None = None,
    assets_dir: str | os.PathLike | None = None,
    on_progress: ProgressFn | None = None,
    with_mulan: bool = True,
    with_asr: bool = False,
) -> FetchReport:
    """Download (or, offline, check) every asset a run with ``model`` needs, re-hashing every
    file that has a known checksum. Never raises for a missing or corrupt file: each outcome is
    in the report (``report.ok``, ``report.exit_code`` 0 or 3, ``report.lines()``). Raises
    UsageError for an unknown model."""
    names = required_assets(model, with_chinese=with_chinese, with_mulan=with_mulan,
                            with_asr=with_asr)
    offline = env_offline() if offline is None else offline
    report = FetchReport(model, offline)
    for name in names:
        asset = ASSETS[name]
        item = FetchItem(name, asset.repo_id, asset.path, "ok")
        try:
            item.local_path, item.source, item.check = _locate(
                asset,
                assets_dir=assets_dir,
                offline=offline,
                force_verify=True,
                on_progress=on_progress,
            )
            item.verified = bool(item.check)
        except _CorruptAssetError as exc:
            item.status, item.message = "corrupt", str(exc)
        except AssetError as exc:
            item.status, item.message = "missing", str(exc)
        report.items.append(item)
    return report
