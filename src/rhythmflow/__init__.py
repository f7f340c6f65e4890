"""rhythmflow: a fast, observable inference engine for DiffRhythm-style song generation.

Importing this package is cheap: no torch device detection, no downloads, no heavy imports.
Public names are resolved lazily on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "SongGenerator": "rhythmflow.api",
    "Song": "rhythmflow.api",
    "run": "rhythmflow.api",
    "GenerationRequest": "rhythmflow.request",
    "plan": "rhythmflow.plan",
    "Plan": "rhythmflow.plan",
    "Machine": "rhythmflow.plan",
    "ModelSpec": "rhythmflow.specs",
    "load_checkpoint": "rhythmflow.model",
    "DiTConfig": "rhythmflow.config",
    "parse_lrc": "rhythmflow.lyrics",
    "lrc_to_track": "rhythmflow.lyrics",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rhythmflow' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
