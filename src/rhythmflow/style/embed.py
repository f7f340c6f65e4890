"""Style embeddings: a float32 ``[1, 512]`` tensor from a text prompt or a reference audio file
(through MuQ-MuLan), from a ``.npy`` file, or from the on-disk cache; and the negative style
embedding used by the unconditional guidance pass.

The cache (``<cache_root>/style/``, see :func:`rhythmflow.assets.cache_root`) is keyed by the
content (prompt text, or the audio file's bytes), the clip rule and the encoder revision, so the
0.7 B-parameter encoder is loaded only for a prompt or file it has not embedded before. A cache
hit needs neither ``transformers`` nor the model weights in memory.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from rhythmflow import assets
from rhythmflow.audio import io as audio
from rhythmflow.errors import AssetError, DependencyError, UsageError

log = logging.getLogger(__name__)

STYLE_DIM = 512
MULAN_SAMPLE_RATE = 24000
CLIP_SECONDS = 10.0


class StyleEncoder(Protocol):
    """What the style stage needs from an encoder. ``revision`` must be cheap (no model load):
    it is part of the cache key. Both methods return float ``[1, 512]``."""

    revision: str
    sample_rate: int

    def embed_text(self, text: str) -> torch.Tensor: ...

    def embed_audio(self, wav: torch.Tensor) -> torch.Tensor: ...  # wav: [1, n] mono


_EXPECTED = f"a float32 array of shape [1, {STYLE_DIM}] or [{STYLE_DIM}] saved with numpy.save"


def _check_embedding(x: np.ndarray | torch.Tensor, source: str) -> torch.Tensor:
    if isinstance(x, np.ndarray) and x.dtype.kind != "f":  # strings, objects, ints, complex...
        raise UsageError(f"{source}: a style embedding must be {_EXPECTED}; got a {x.dtype} "
                         f"array of shape {list(x.shape)}")
    t = torch.as_tensor(np.asarray(x) if isinstance(x, np.ndarray) else x.detach().cpu())
    if not t.is_floating_point() or t.numel() != STYLE_DIM or t.dim() not in (1, 2):
        raise UsageError(
            f"{source}: a style embedding must be float [1, {STYLE_DIM}] or [{STYLE_DIM}]; "
            f"got {t.dtype} {list(t.shape)}"
        )
    t = t.reshape(1, STYLE_DIM).to(torch.float32).contiguous()
    if not torch.isfinite(t).all():
        raise UsageError(f"{source}: the style embedding contains NaN or Inf")
    return t


def load_style_npy(path: str | os.PathLike) -> torch.Tensor:
    """Read a style embedding saved with ``numpy.save``; float32 ``[1, 512]``. UsageError if the
    file is missing, not a .npy array, or the wrong shape."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"style embedding file {p} does not exist")
    try:
        with open(p, "rb") as fh:
            if fh.read(6) != b"\x93NUMPY":
                fh.seek(0)
                kind = "an empty file" if not fh.read(1) else (
                    "a .npz archive" if p.read_bytes()[:2] == b"PK" else "not a .npy file")
                raise UsageError(f"style embedding {p} is {kind}; expected {_EXPECTED}")
        arr = np.load(p, allow_pickle=False)
    except UsageError:
        raise
    except Exception as exc:  # numpy raises OSError, ValueError, EOFError... for bad files
        raise UsageError(f"style embedding {p} is a damaged .npy file ({type(exc).__name__}); "
                         f"expected {_EXPECTED}") from None
    return _check_embedding(arr, str(p))


def save_style_npy(path: str | os.PathLike, embedding: torch.Tensor) -> Path:
    """Save an embedding as float32 ``[1, 512]`` .npy, atomically; returns the path."""
    import io

    buf = io.BytesIO()
    np.save(buf, _check_embedding(embedding, str(path)).numpy())
    return audio.atomic_write_bytes(path, buf.getvalue())


def negative_style(
    path: str | os.PathLike | None = None,
    *,
    assets_dir: str | os.PathLike | None = None,
    offline: bool | None = None,
) -> torch.Tensor:
    """The negative style embedding (float32 ``[1, 512]``): ``path`` if given, else the
    ``negative-style`` asset. (Upstream rounds it to float16; callers that need that cast.)"""
    if path is not None:
        return load_style_npy(path)
    return load_style_npy(assets.resolve("negative-style", assets_dir=assets_dir, offline=offline))


def load_reference_clip(
    path: str | os.PathLike, *, sample_rate: int = MULAN_SAMPLE_RATE, seconds: float = CLIP_SECONDS
) -> torch.Tensor:
    """The clip MuQ-MuLan embeds, as upstream: ``seconds`` of audio starting at
    ``floor(duration / 2) - seconds / 2``, mixed to mono and resampled to ``sample_rate``;
    float32 ``[1, seconds * sample_rate]``. UsageError for a file shorter than ``seconds``."""
    duration, sr, _ = audio.audio_info(path)
    if duration < seconds:
        raise UsageError(
            f"reference audio {path} is {duration:.2f} s long; the style encoder needs at least "
            f"{seconds:g} s (it embeds {seconds:g} s from the middle). Use a longer file or a "
            f"text prompt"
        )
    start = max(0.0, math.floor(duration / 2) - seconds / 2)
    x, sr = audio.read_audio(path, start=start, duration=seconds)
    x = audio.resample(audio.set_channels(x, 1), sr, sample_rate)
    n = int(round(seconds * sample_rate))
    x = x[:, :n] if x.shape[1] >= n else np.pad(x, ((0, 0), (0, n - x.shape[1])))
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


class MuQMuLanEncoder:
    """MuQ-MuLan in rhythmflow's own code (:mod:`rhythmflow.style.mulan`), which needs
    ``transformers`` and ``tokenizers`` (``pip install 'rhythmflow[mulan]'``). Files come from
    :func:`rhythmflow.assets.resolve`: the MuQ-MuLan config and checkpoint, the MuQ and XLM-R
    configs and XLM-R's ``tokenizer.json`` (the towers' own weight files are not read). The
    model is loaded on the first ``embed_*`` call, not at construction."""

    sample_rate = MULAN_SAMPLE_RATE
    FILES = ("mulan-config", "muq-config", "xlmr-config", "mulan-weights", "xlmr-tokenizer")

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        assets_dir: str | os.PathLike | None = None,
        offline: bool | None = None,
    ) -> None:
        self.device = torch.device(device)
        self._assets = {"assets_dir": assets_dir, "offline": offline}
        self._model = None
        self._tokenizer = None
        self._revision: str | None = None

    @property
    def revision(self) -> str:
        """``<repo>@<commit>`` from the HF cache layout, else ``<repo>@local:<size>:<mtime>``."""
        if self._revision is None:
            try:
                weights = assets.resolve("mulan-weights", **self._assets)
            except AssetError as exc:
                self._require_packages(f"the MuQ-MuLan weights are missing too: {exc}")
                raise
            parent = weights.parent
            if parent.parent.name == "snapshots":
                self._revision = f"{assets.ASSETS['mulan-weights'].repo_id}@{parent.name}"
            else:
                st = weights.stat()
                self._revision = (
                    f"{assets.ASSETS['mulan-weights'].repo_id}@local:{st.st_size}:{st.st_mtime_ns}"
                )
        return self._revision

    @staticmethod
    def _require_packages(more: str = "") -> None:
        try:
            import tokenizers  # noqa: F401
            import transformers  # noqa: F401
        except ImportError as exc:
            raise DependencyError(
                "style from a text prompt or reference audio needs MuQ-MuLan: "
                "`pip install 'rhythmflow[mulan]'` (packages transformers and tokenizers), or "
                f"pass a style embedding file (.npy) instead ({exc}){'; ' + more if more else ''}"
            ) from None

    def _load(self):
        if self._model is not None:
            return self._model, self._tokenizer
        self._require_packages()
        from rhythmflow.style.mulan_load import TextTokenizer, load_mulan

        files = [assets.resolve(name, **self._assets) for name in self.FILES]
        log.info("loading MuQ-MuLan from %s", files[3].parent)
        model = load_mulan(*files[:4], device=self.device)
        self._tokenizer = TextTokenizer.for_config(files[4], model.config)
        self._model = model
        return self._model, self._tokenizer

    @torch.no_grad()
    def embed_text(self, text: str) -> torch.Tensor:
        model, tokenizer = self._load()
        ids, mask = tokenizer(text)
        return model.embed_text(ids.to(self.device), mask.to(self.device)).float().cpu()

    @torch.no_grad()
    def embed_audio(self, wav: torch.Tensor) -> torch.Tensor:
        model, _ = self._load()
        return model.embed_audio(wav.to(self.device)).float().cpu()


class StyleCache:
    """Embeddings on disk as ``<folder>/<key>.npy``; unreadable entries count as misses."""

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder else assets.cache_root() / "style"

    @staticmethod
    def key(kind: str, content: bytes, revision: str) -> str:
        h = hashlib.sha256()
        for part in (kind.encode(), revision.encode(), content):
            h.update(len(part).to_bytes(8, "little") + part)
        return h.hexdigest()

    def get(self, key: str) -> torch.Tensor | None:
        p = self.folder / f"{key}.npy"
        try:
            return load_style_npy(p) if p.is_file() else None
        except UsageError as exc:
            log.warning("ignoring unreadable cached style embedding %s: %s", p, exc)
            return None

    def put(self, key: str, embedding: torch.Tensor) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            save_style_npy(self.folder / f"{key}.npy", embedding)
        except (OSError, UsageError, AssetError) as exc:  # a cache that cannot be written
            log.warning("could not cache style embedding in %s: %s", self.folder, exc)


def style_embedding(
    *,
    prompt: str | None = None,
    audio_path: str | os.PathLike | None = None,
    npy: str | os.PathLike | None = None,
    encoder: StyleEncoder | None = None,
    cache: StyleCache | bool = True,
) -> torch.Tensor:
    """Float32 ``[1, 512]`` style embedding from exactly one of ``prompt`` (text), ``audio_path``
    (wav/flac/mp3/ogg, ≥ 10 s) or ``npy`` (a saved embedding). ``encoder`` defaults to
    :class:`MuQMuLanEncoder`; ``cache`` True uses the default :class:`StyleCache`, False none.
    Raises UsageError (bad input), DependencyError (transformers/tokenizers missing on a cache
    miss), AssetError."""
    given = [x is not None for x in (prompt, audio_path, npy)]
    if sum(given) != 1:
        raise UsageError(
            "give exactly one style source: a text prompt, a reference audio file, or a .npy embedding"
        )
    if npy is not None:
        return load_style_npy(npy)
    if prompt is not None and not prompt.strip():
        raise UsageError("the style prompt is empty; describe the genre, mood or instruments")
    if audio_path is not None:
        audio_info = audio.audio_info(audio_path)  # fails early on a missing/unreadable file
        log.debug("reference audio %s: %.2f s, %d Hz", audio_path, *audio_info[:2])
    encoder = encoder if encoder is not None else MuQMuLanEncoder()
    store = StyleCache() if cache is True else (cache or None)
    if prompt is not None:
        kind, content = "text", prompt.encode("utf-8")
    else:
        kind, content = (
            f"audio:{CLIP_SECONDS:g}s-mid",
            bytes.fromhex(assets.file_sha256(audio_path)),
        )
    key = StyleCache.key(kind, content, encoder.revision) if store else ""
    if store and (hit := store.get(key)) is not None:
        log.info("style embedding from cache (%s)", kind)
        return hit
    if prompt is not None:
        emb = encoder.embed_text(prompt)
    else:
        emb = encoder.embed_audio(load_reference_clip(audio_path, sample_rate=encoder.sample_rate))
    emb = _check_embedding(emb, f"style encoder {encoder.revision}")
    if store:
        store.put(key, emb)
    return emb
