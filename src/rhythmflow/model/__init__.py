"""The velocity network and its strict checkpoint loader."""

from rhythmflow.model.checkpoint import expected_shapes, infer_config, load_checkpoint
from rhythmflow.model.dit import Conditioning, DiT

__all__ = ["DiT", "Conditioning", "load_checkpoint", "infer_config", "expected_shapes"]
