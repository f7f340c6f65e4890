"""Where the lyrics front end reads its files from: one explicit, hashable value.

A :class:`LyricsAssets` travels down every call that needs a resource file (the G2P vocabulary,
the Chinese lexicon, the polyphone model), so each front end reads the files of *its* asset
options. Loaded files are cached per ``LyricsAssets`` value, never per process: a second
generator with another asset folder reads its own files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LyricsAssets:
    """``assets_dir``: local asset root (None: ``RHYTHMFLOW_ASSETS_DIR``, then the HF cache);
    ``offline``: never use the network (None: ``HF_HUB_OFFLINE``)."""

    assets_dir: str | None = None
    offline: bool | None = None

    @classmethod
    def of(cls, assets_dir: str | os.PathLike | None, offline: bool | None) -> LyricsAssets:
        return cls(None if assets_dir is None else str(assets_dir), offline)

    def path(self, name: str) -> Path:
        """The local, verified path of asset ``name`` (see :func:`rhythmflow.assets.resolve`)."""
        from rhythmflow.assets import resolve

        return resolve(name, assets_dir=self.assets_dir, offline=self.offline)


#: The environment's defaults (``RHYTHMFLOW_ASSETS_DIR``, ``HF_HUB_OFFLINE``).
DEFAULT_ASSETS = LyricsAssets()
