"""rhythmflow: a fast, observable inference engine for DiffRhythm-style song generation.

Importing this package is cheap: no torch device detection, no downloads, no heavy imports.
Public names are resolved lazily on first attribute access. No submodule is named like a public
function (``plan`` lives in ``rhythmflow.planner``, ``run`` in ``rhythmflow.pipeline``), so
``from rhythmflow import plan, run`` always gives the callables.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "SongGenerator": "rhythmflow.pipeline",
    "Song": "rhythmflow.pipeline",
    "run": "rhythmflow.pipeline",
    "GenerationRequest": "rhythmflow.request",
    "plan": "rhythmflow.planner.core",
    "Plan": "rhythmflow.planner.core",
    "Machine": "rhythmflow.machine",
    "ModelSpec": "rhythmflow.specs",
    "DiTConfig": "rhythmflow.specs",
    "load_checkpoint": "rhythmflow.model",
    "parse_lrc": "rhythmflow.lyrics",
    "lrc_to_track": "rhythmflow.lyrics",
    "configure_process": "rhythmflow.machine.process",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rhythmflow' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
