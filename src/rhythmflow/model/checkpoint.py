"""Strict loading of official DiffRhythm checkpoints into :class:`DiT`.

Container forms read: ``.pt`` with ``model_state_dict`` (the release format), ``.pt`` with
``ema_model_state_dict`` (``ema_model.`` prefix, ``initted``/``step`` entries), and flat
``.safetensors``. Keys carry the ``transformer.`` prefix of the original ``CFM`` wrapper.
The model is built on the meta device and the (memory-mapped) tensors are assigned after a
per-tensor cast, so the weights are never held twice.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from pathlib import Path

import torch
from torch import Tensor

from rhythmflow.errors import CheckpointError
from rhythmflow.model.blocks import text_position_table
from rhythmflow.model.dit import DiT
from rhythmflow.specs import BASE_FRAMES, FULL_FRAMES, DiTConfig, load_config_file

log = logging.getLogger(__name__)

PREFIX = "transformer."
_EMA_PREFIX = "ema_model."
_SHOW = 6


def _read_container(path: Path) -> dict[str, Tensor]:
    """Return the raw (prefixed) state dict of any official container form."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (or is not a file)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty; download it again")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # noqa: BLE001 - torch.load raises anything on foreign bytes
        from rhythmflow.errors import plain_reason

        log.debug("torch.load(%s) failed", path, exc_info=True)
        first = plain_reason(exc)
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is truncated or not a PyTorch checkpoint "
            f"({first}). Download it again or pass the right file."
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict")
    return _unwrap(obj, path)


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    from rhythmflow.errors import plain_reason

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open API
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read checkpoint {path}: not a valid safetensors file "
            f"({plain_reason(exc)}). "
            "Download it again or pass the right file."
        ) from None


def _unwrap(obj: dict, path: Path) -> dict[str, Tensor]:
    if "model_state_dict" in obj:
        sd = obj["model_state_dict"]
    elif "ema_model_state_dict" in obj:
        sd = {
            k.replace(_EMA_PREFIX, ""): v
            for k, v in obj["ema_model_state_dict"].items()
            if k not in ("initted", "step")
        }
    elif obj and all(isinstance(v, Tensor) for v in obj.values()):
        sd = obj
    else:
        raise CheckpointError(
            f"checkpoint {path} has neither 'model_state_dict' nor 'ema_model_state_dict' "
            f"(top-level keys: {sorted(map(str, obj))[:_SHOW]})"
        )
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise CheckpointError(f"checkpoint {path}: the state dict holds non-tensor entries")
    return sd


def _strip(sd: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    if any(k.startswith(PREFIX) for k in sd):
        return {k[len(PREFIX) :] if k.startswith(PREFIX) else k: v for k, v in sd.items()}
    return dict(sd)


def _count(sd: dict[str, Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def infer_config(sd: dict[str, Tensor]) -> DiTConfig:
    """Derive the architecture from a (prefix-stripped) state dict's shapes."""
    try:
        dim, in_features = sd["input_embed.proj.weight"].shape
        rows, text_dim = sd["text_embed.text_embed.weight"].shape
        mel_dim = sd["proj_out.weight"].shape[0]
        ff = sd["transformer_blocks.0.mlp.gate_proj.weight"].shape[0]
    except KeyError as exc:
        raise CheckpointError(
            f"not a DiffRhythm DiT checkpoint: key {exc.args[0]!r} is missing"
        ) from None
    return DiTConfig(
        dim=dim,
        depth=_count(sd, r"transformer_blocks\.(\d+)\."),
        ff_mult=ff // dim,
        text_dim=text_dim,
        conv_layers=_count(sd, r"text_embed\.text_blocks\.(\d+)\."),
        mel_dim=mel_dim,
        text_num_embeds=rows - 1,
        max_frames=FULL_FRAMES if "duration_time_embed.time_mlp.0.weight" in sd else BASE_FRAMES,
    )


def check_keys(expected: dict[str, tuple[int, ...]], sd: dict[str, Tensor], path: Path) -> None:
    """Raise a short missing / unexpected / wrong-shape report unless keys match exactly."""
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = sorted(k for k in set(sd) & set(expected) if tuple(sd[k].shape) != expected[k])
    if not (missing or unexpected or wrong):
        return

    def show(keys: list[str], fmt=lambda k: PREFIX + k) -> str:
        more = f", … (+{len(keys) - _SHOW})" if len(keys) > _SHOW else ""
        return ", ".join(fmt(k) for k in keys[:_SHOW]) + more

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing: {show(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected: {show(unexpected)}")
    if wrong:
        parts.append(
            f"{len(wrong)} wrong shape: "
            + show(wrong, lambda k: f"{PREFIX}{k} {list(sd[k].shape)} (model {list(expected[k])})")
        )
    raise CheckpointError(f"checkpoint {path} does not match the model: " + "; ".join(parts))


def expected_shapes(config: DiTConfig) -> dict[str, tuple[int, ...]]:
    """State-dict keys and shapes of the model a config builds (no memory allocated)."""
    with torch.device("meta"):
        model = DiT(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def read_config(path: str | os.PathLike,
                config: DiTConfig | str | os.PathLike | None = None) -> DiTConfig:
    """The architecture of a checkpoint without loading its weights (the file is memory-mapped;
    only tensor shapes are read): ``config`` when it is a DiTConfig, an official config JSON
    path (its ``max_frames`` wins, else the file's), or the shapes alone."""
    if isinstance(config, DiTConfig):
        return config
    path = Path(path)
    sd = _strip(_read_container(path), path)
    found = infer_config(sd)
    return found if config is None else load_config_file(config, max_frames=found.max_frames)


def load_checkpoint(
    path: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    config: DiTConfig | str | os.PathLike | None = None,
) -> DiT:
    """Load a DiffRhythm DiT checkpoint strictly, ready for inference (eval, no grad).

    The architecture is inferred from the tensor shapes unless ``config`` (a DiTConfig or an
    official config JSON path) is given. Tensors are cast to ``dtype`` (default float32).
    """
    path = Path(path)
    dtype = dtype or torch.float32
    sd = _strip(_read_container(path), path)
    if config is None:
        cfg = infer_config(sd)
    elif isinstance(config, DiTConfig):
        cfg = config
    else:
        cfg = load_config_file(config, max_frames=infer_config(sd).max_frames)
    with torch.device("meta"):
        model = DiT(cfg)
    check_keys({k: tuple(v.shape) for k, v in model.state_dict().items()}, sd, path)
    for k in list(sd):  # cast one tensor at a time: the mmap'ed source pages can be dropped
        sd[k] = sd[k].to(device=device, dtype=dtype)
    model.load_state_dict(sd, strict=True, assign=True)
    del sd
    model.text_embed.freqs_cis = text_position_table(cfg.max_frames, cfg.text_dim).to(
        device=device, dtype=dtype
    )
    log.info(
        "loaded %s: %s, %.0f M parameters, %s", path.name, cfg, count_params(model) / 1e6, dtype
    )
    return model.eval().requires_grad_(False)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
