"""Import the optional Chinese front-end dependencies, failing with an actionable error."""

from __future__ import annotations

import importlib
from types import ModuleType

from rhythmflow.errors import DependencyError

INSTALL_HINT = "pip install 'rhythmflow[chinese]'"


def require(module: str) -> ModuleType:
    """Import and return ``module`` (jieba, cn2an, pypinyin, onnxruntime).

    Raises DependencyError naming the module and the install command when it is missing.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DependencyError(
            f"Chinese lyrics need the Python package '{module}', which is not installed "
            f"({exc}). Install the Chinese extras: {INSTALL_HINT}"
        ) from exc
