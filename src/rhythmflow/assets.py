"""Declarative table of model-release assets and their resolution to local files.

Resolution order for an asset: explicit path → local asset root (``assets_dir`` argument or
``RHYTHMFLOW_ASSETS_DIR``, laid out as the Hub repo's paths) → Hugging Face cache → download
(unless offline: ``offline=True`` or ``HF_HUB_OFFLINE=1``). Nothing is written relative to the
current directory. huggingface_hub is imported only when the cache or the network is consulted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rhythmflow.errors import AssetError

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

ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset("dit-v1.2-base", "ASLP-lab/DiffRhythm-1_2", "model", "cfm_model.pt", None, "2.2 GB"),
        Asset("dit-v1.2-full", "ASLP-lab/DiffRhythm-1_2-full", "model", "cfm_model.pt", None, "2.2 GB"),
        Asset("dit-v1.0-base", "ASLP-lab/DiffRhythm-base", "model", "cfm_model.pt", None, "2.2 GB"),
        Asset("dit-v1.0-full", "ASLP-lab/DiffRhythm-full", "model", "cfm_model.pt", None, "2.2 GB"),
        Asset(
            "vae", "ASLP-lab/DiffRhythm-vae", "model", "vae_model.pt",
            "cbf5e34d649b48fae7e5c5c2266bbbce97b647d52e7dcd584325a28a8338c81a", "625 MB",
        ),
        Asset("mulan-config", "OpenMuQ/MuQ-MuLan-large", "model", "config.json"),
        Asset("mulan-weights", "OpenMuQ/MuQ-MuLan-large", "model", "pytorch_model.bin", None, "2.8 GB"),
        _space(
            "g2p-vocab", "diffrhythm/g2p/g2p/vocab.json",
            "0f5c44e05f79df8ae4fd77d7772950436a8bacc83d134fdf0ae3c72412b5676a",
        ),
        _space(
            "negative-style", "src/negative_prompt.npy",
            "6cb7d74eb7a8eda12acb8247b21d373928301db8a8cb0db480d341799fed3ce5",
        ),
        _space(
            "zh-lexicon", "diffrhythm/g2p/sources/chinese_lexicon.txt",
            "a3a7685d1c3e68eb2fa304bfc63e90c90c3c1a1948839a5b1b507b2131b3e2fb", "15 MB",
        ),
        _space(
            "zh-poly-onnx", _G2P + "poly_bert_model.onnx",
            "8765d835ffdf9811c832d4dc7b6a552757aa8615c01d1184db716a50c20aebbc", "77 MB",
        ),
        _space("zh-poly-config", _G2P + "config.json"),
        _space("zh-poly-vocab", _G2P + "vocab.txt"),
        _space("zh-polychar", _G2P + "polychar.txt"),
        _space("zh-polydict", _G2P + "polydict.json"),
        _space("zh-polydict-r", _G2P + "polydict_r.json"),
        _space("zh-pinyin2bpmf", "diffrhythm/g2p/sources/pinyin_2_bpmf.txt"),
        _space("zh-bpmf2pinyin", "diffrhythm/g2p/sources/bpmf_2_pinyin.txt"),
    ]
}


def env_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _hint(asset: Asset) -> str:
    return (
        f"'{asset.path}' from the Hugging Face {asset.repo_type} repo '{asset.repo_id}'. "
        f"Run `rhythmflow fetch` while online, or pass --assets-dir DIR (or set "
        f"RHYTHMFLOW_ASSETS_DIR) to a folder that holds '{asset.path}'"
    )


def resolve(
    name: str,
    *,
    path: str | os.PathLike | None = None,
    assets_dir: str | os.PathLike | None = None,
    offline: bool | None = None,
) -> Path:
    """Return a local path for asset ``name``, downloading it only when allowed."""
    try:
        asset = ASSETS[name]
    except KeyError:
        raise AssetError(f"unknown asset {name!r}; known: {', '.join(sorted(ASSETS))}") from None
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise AssetError(f"{name}: the file {p} given for it does not exist")
        return p
    root = assets_dir if assets_dir is not None else os.environ.get("RHYTHMFLOW_ASSETS_DIR")
    if root:
        p = Path(root).expanduser() / asset.path
        if p.is_file():
            return p
    offline = env_offline() if offline is None else offline
    from huggingface_hub import hf_hub_download  # lazy: network-capable code

    try:
        return Path(
            hf_hub_download(asset.repo_id, asset.path, repo_type=asset.repo_type,
                            local_files_only=offline)
        )
    except Exception as exc:  # huggingface_hub raises many types; all mean "not available"
        where = f" (not under {root})" if root else ""
        mode = "offline mode: " if offline else ""
        raise AssetError(
            f"missing asset {name}{where}: {mode}{type(exc).__name__}. Need {_hint(asset)}."
        ) from exc
