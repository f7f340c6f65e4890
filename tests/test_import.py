"""`import rhythmflow` must stay cheap: no heavy imports, no device detection, no env writes."""

import json
import subprocess
import sys

import pytest

HEAVY = [
    "torch",
    "phonemizer",
    "onnxruntime",
    "muq",
    "huggingface_hub",
    "jieba",
    "soundfile",
    "numpy",
    "transformers",
]


@pytest.mark.slow
def test_import_is_cheap_and_side_effect_free():
    code = (
        "import os, sys, json; env = dict(os.environ); import rhythmflow; "
        "print(json.dumps({'mods': sorted(m.split('.')[0] for m in sys.modules), "
        "'env_changed': env != dict(os.environ), 'version': rhythmflow.__version__}))"
    )
    out = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout
    )
    loaded = set(out["mods"]) & set(HEAVY)
    assert not loaded, f"import rhythmflow pulled in {sorted(loaded)}"
    assert not out["env_changed"]
    assert out["version"]


def test_public_names_resolve_lazily():
    import rhythmflow

    assert rhythmflow.load_checkpoint.__module__ == "rhythmflow.model.checkpoint"
    assert rhythmflow.DiTConfig().dim == 2048
