"""Seed-compatible diagnostics: ``python diagnose_ode_stall.py`` = ``rhythmflow diagnose``."""

import sys
from pathlib import Path

if __name__ == "__main__":
    src = Path(__file__).resolve().parent / "src"
    if src.is_dir() and str(src) not in sys.path:
        sys.path.insert(0, str(src))
    from rhythmflow.cli.main import main

    sys.exit(main(["diagnose", *sys.argv[1:]]))
