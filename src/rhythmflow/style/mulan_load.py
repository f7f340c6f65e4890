"""Build :class:`.mulan.MuQMuLan` from the official files and load its checkpoint strictly.

Files (the repos of :mod:`rhythmflow.assets`): ``OpenMuQ/MuQ-MuLan-large`` ``config.json`` and
``pytorch_model.bin`` (the whole model, towers included); ``OpenMuQ/MuQ-large-msd-iter``
``config.json`` (the audio tower's shape and mel statistics); ``xlm-roberta-base``
``config.json`` and ``tokenizer.json``. The towers' own weight files are not needed.

Strict means: every checkpoint tensor is either loaded (same shape) or one of the known
training-only tensors listed by :func:`training_only_shapes` (checked for shape, then
dropped); a missing, extra or wrong-shaped tensor is an :class:`AssetError` naming it.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import torch

from rhythmflow.errors import AssetError, UsageError

from .mulan import MuLanConfig, MuQConfig, MuQMuLan, TowerConfig

#: official name prefix → own module prefix (longest first; see MuQMuLan's module tree)
PREFIXES = (
    ("mulan.audio.model.model.", "audio.muq."),
    ("mulan.text.model.", "text.xlmr."),
    ("mulan.", ""),
)
#: deterministic buffers that some savers write and others do not: loaded when present
OPTIONAL = ("audio.muq.conformer.embed_positions.inv_freq",)
#: buffers older transformers saved; ignored when present (they are rebuilt from the config)
IGNORED = ("mulan.text.model.embeddings.position_ids", "mulan.text.model.embeddings.token_type_ids")


def _unsupported(what: str, path: Path) -> AssetError:
    return AssetError(f"{path}: {what} is not supported by rhythmflow's MuQ-MuLan (inference "
                      "for OpenMuQ/MuQ-MuLan-large); run `rhythmflow fetch` for the official files")


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise AssetError(f"could not read {path} ({type(exc).__name__}: {exc}); run "
                         "`rhythmflow fetch` to verify and re-download") from None


def _tower(raw: dict[str, Any]) -> TowerConfig:
    return TowerConfig(dim=raw.get("dim", 768), depth=raw.get("tf_depth", 8),
                       heads=raw.get("heads", 8), dim_head=raw.get("dim_head", 64),
                       ff_mult=raw.get("ff_mult", 4))


def read_config(mulan_config: Path, muq_config: Path, xlmr_config: Path) -> MuLanConfig:
    """The three official config files → :class:`MuLanConfig`; AssetError for a file that
    cannot be read or asks for a training variant this inference code does not build."""
    top, muq, xlmr = _json(mulan_config), _json(muq_config), _json(xlmr_config)
    try:
        ml, am, tm = top["mulan"], top["audio_model"], top["text_model"]
        if ml.get("hierarchical_contrastive_loss"):
            raise _unsupported("hierarchical_contrastive_loss", mulan_config)
        for flag in ("use_rvq_target", "use_vq_target", "use_encodec_target", "is_flash"):
            if muq.get(flag):
                raise _unsupported(flag, muq_config)
        if muq.get("features", ["melspec_2048"]) != ["melspec_2048"]:
            raise _unsupported(f"features {muq['features']}", muq_config)
        stat = muq["stat"]
        muq_cfg = MuQConfig(
            n_mels=muq.get("n_mels", 128), hop_length=muq.get("hop_length", 240),
            conv_dim=muq.get("conv_dim", 512), encoder_dim=muq.get("encoder_dim", 1024),
            encoder_depth=muq.get("encoder_depth", 12), label_rate=muq.get("label_rate", 25),
            codebook_size=muq.get("codebook_size", 4096),
            codebook_dim=muq.get("codebook_dim", 16),
            mel_mean=float(stat["melspec_2048_mean"]), mel_std=float(stat["melspec_2048_std"]),
            w2v2=dict(muq["w2v2_config"]),
        )
        cfg = MuLanConfig(
            sample_rate=int(ml.get("sr", 24000)), clip_seconds=float(ml.get("clip_secs", 10)),
            dim_latent=int(ml.get("dim_latent", 512)),
            audio=_tower(top["audio_transformer"]), text=_tower(top["text_transformer"]),
            audio_model_dim=int(am.get("model_dim") or 1024),
            use_layer_idx=int(am.get("use_layer_idx", -1)),
            text_model_dim=tm.get("model_dim"),
            sigmoid_contrast=bool(ml.get("sigmoid_contrastive_loss", False)),
            muq=muq_cfg, xlmr=xlmr,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AssetError(f"MuQ-MuLan config files {mulan_config}, {muq_config}: unexpected "
                         f"content ({type(exc).__name__}: {exc}); run `rhythmflow fetch`") from None
    if cfg.audio_model_dim != cfg.muq.encoder_dim:
        raise AssetError(f"{mulan_config}: audio_model.model_dim {cfg.audio_model_dim} differs "
                         f"from the MuQ width {cfg.muq.encoder_dim} in {muq_config}")
    width = xlmr.get("hidden_size")
    if cfg.text_model_dim is not None and cfg.text_model_dim != width:
        raise AssetError(f"{mulan_config}: text_model.model_dim {cfg.text_model_dim} differs "
                         f"from the XLM-R width {width} in {xlmr_config}")
    return cfg


def training_only_shapes(cfg: MuLanConfig) -> dict[str, tuple[int, ...]]:
    """Official tensors that inference does not use, with their shapes: MuQ's pre-training
    heads (token classifier, random-projection quantizer, cls token), its conformer's
    convolutional position embedding (never called by ``Wav2Vec2ConformerEncoder``), MuLan's
    unused aggregator and contrastive-loss temperature, and XLM-R's pooler. The weight-normed
    conv appears in either of torch's two namings."""
    m, d = cfg.muq, cfg.muq.encoder_dim
    a = "mulan.audio.model.model."
    h = int(cfg.xlmr["hidden_size"])
    shapes = {
        a + "cls_token": (d,),
        a + "linear.weight": (m.codebook_size, d), a + "linear.bias": (m.codebook_size,),
        a + "quantizer_melspec_2048.random_projection": (m.n_mels * m.n_fold, m.codebook_dim),
        a + "quantizer_melspec_2048.codebook": (m.codebook_size, m.codebook_dim),
        a + "conformer.pos_conv_embed.conv.bias": (d,),
        "mulan.audio.aggregator.weight": (1, 25, 1), "mulan.audio.aggregator.bias": (1,),
        "mulan.contrast.temperatures": (1, 1, 1),
        "mulan.text.model.pooler.dense.weight": (h, h), "mulan.text.model.pooler.dense.bias": (h,),
    }
    if cfg.sigmoid_contrast:
        shapes["mulan.contrast.bias"] = (1, 1, 1)
    return shapes


_POS_CONV = "mulan.audio.model.model.conformer.pos_conv_embed.conv."


def _weight_norm_keys(cfg: MuLanConfig) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The weight-normed position conv's magnitude ``g`` and direction ``v``, under the old
    (``weight_g``/``weight_v``) and the parametrization naming, with their shapes."""
    d, w2v2 = cfg.muq.encoder_dim, cfg.muq.w2v2
    k = int(w2v2.get("num_conv_pos_embeddings", 128))
    groups = int(w2v2.get("num_conv_pos_embedding_groups", 16))
    g, v = (1, 1, k), (d, d // groups, k)
    return {_POS_CONV + "weight_g": ("g", g), _POS_CONV + "weight_v": ("v", v),
            _POS_CONV + "parametrizations.weight.original0": ("g", g),
            _POS_CONV + "parametrizations.weight.original1": ("v", v)}


def own_name(key: str) -> str:
    for official, own in PREFIXES:
        if key.startswith(official):
            return own + key[len(official):]
    return key


def official_name(key: str) -> str:
    for official, own in PREFIXES:
        if key.startswith(own):
            return official + key[len(own):]
    return key


def convert_checkpoint(
    state: dict[str, torch.Tensor], model: MuQMuLan, source: str
) -> dict[str, torch.Tensor]:
    """Official state dict → ``model``'s, strictly (see the module docstring)."""
    cfg = model.config
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    dropped = training_only_shapes(cfg)
    norm_keys = _weight_norm_keys(cfg)
    out: dict[str, torch.Tensor] = {}
    unexpected, wrong, seen_norm = [], [], set()
    for key, tensor in state.items():
        shape = tuple(tensor.shape)
        if key in IGNORED:
            continue
        if key in norm_keys:
            part, want = norm_keys[key]
            seen_norm.add(part)
            if shape != want:
                wrong.append(f"{key} {list(shape)} (expected {list(want)})")
            continue
        if key in dropped:
            if shape != dropped[key]:
                wrong.append(f"{key} {list(shape)} (expected {list(dropped[key])})")
            continue
        name = own_name(key)
        if name not in expected:
            unexpected.append(key)
        elif shape != expected[name]:
            wrong.append(f"{key} {list(shape)} (expected {list(expected[name])})")
        else:
            out[name] = tensor
    missing = [official_name(k) for k in expected if k not in out and k not in OPTIONAL]
    missing += [k for k in dropped if k not in state]
    missing += [f"{_POS_CONV}weight_{p}" for p in ("g", "v") if p not in seen_norm]
    if missing or unexpected or wrong:
        parts = [f"{label} tensors: {', '.join(sorted(keys)[:8])}"
                 + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")
                 for label, keys in (("missing", missing), ("unexpected", unexpected),
                                     ("wrong-shaped", wrong)) if keys]
        raise AssetError(f"MuQ-MuLan checkpoint {source} is not the official "
                         f"OpenMuQ/MuQ-MuLan-large layout: {'; '.join(parts)}. Run "
                         "`rhythmflow fetch` to verify and re-download")
    for k in OPTIONAL:
        if k not in out:
            out[k] = model.state_dict()[k]
    return out


def official_state_dict(model: MuQMuLan, *, fill: float = 0.0) -> dict[str, torch.Tensor]:
    """``model``'s tensors under the official names plus the training-only tensors (filled
    with ``fill``) in the layout torch ≥ 2.1 saves: what :func:`load_mulan` accepts. For
    tests and tiny checkpoints."""
    cfg = model.config
    state = {official_name(k): v.detach().clone() for k, v in model.state_dict().items()}
    for key, shape in training_only_shapes(cfg).items():
        state[key] = torch.full(shape, fill)
    for key, (_, shape) in _weight_norm_keys(cfg).items():
        if "parametrizations" in key:
            state[key] = torch.full(shape, fill)
    return state


def load_mulan(
    mulan_config: Path,
    muq_config: Path,
    xlmr_config: Path,
    weights: Path,
    *,
    device: str | torch.device = "cpu",
) -> MuQMuLan:
    """Build the model from the config files and load ``weights`` strictly; eval mode.
    AssetError for an unreadable/damaged file or a checkpoint that is not the official layout."""
    cfg = read_config(Path(mulan_config), Path(muq_config), Path(xlmr_config))
    with torch.device("meta"):  # no random init: every tensor is loaded or recomputed below
        model = MuQMuLan(cfg)
    model.to_empty(device="cpu")
    model.rebuild_derived()
    persistent = set(model.state_dict())
    derived = {n for n, _ in model.named_buffers() if n not in persistent}
    if derived != MuQMuLan.DERIVED:  # a transformers release with other buffers
        raise RuntimeError(f"MuQ-MuLan: unexpected non-persistent buffers {sorted(derived)}")
    weights = Path(weights)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True,
                           mmap=zipfile.is_zipfile(weights))
    except Exception as exc:  # a damaged file surfaces as any of pickle/zip/OS errors
        raise AssetError(
            f"could not load MuQ-MuLan from {weights.parent} ({type(exc).__name__}: {exc}); "
            "a file is damaged or incomplete: run `rhythmflow fetch` to verify and re-download"
        ) from exc
    if not isinstance(state, dict):
        raise AssetError(f"{weights}: not a state dict; run `rhythmflow fetch`")
    model.load_state_dict(convert_checkpoint(state, model, str(weights)), strict=True)
    return model.to(device).eval()


class TextTokenizer:
    """XLM-R's tokenizer from its ``tokenizer.json`` through the ``tokenizers`` library (what
    ``transformers``' fast tokenizer runs): text → ids and mask ``[1, s]`` with ``<s>``/``</s>``,
    no truncation (UsageError above ``max_tokens``, the model's position limit)."""

    def __init__(self, path: Path, max_tokens: int) -> None:
        from tokenizers import Tokenizer

        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for a bad file
            raise AssetError(f"could not read the XLM-R tokenizer {path} ({exc}); run "
                             "`rhythmflow fetch` to verify and re-download") from None
        self._tok.no_truncation()
        self._tok.no_padding()
        self.max_tokens = max_tokens

    @classmethod
    def for_config(cls, path: Path, cfg: MuLanConfig) -> TextTokenizer:
        positions = int(cfg.xlmr.get("max_position_embeddings", 514))
        return cls(path, positions - int(cfg.xlmr.get("pad_token_id", 1)) - 1)

    def __call__(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self._tok.encode(text)
        if len(enc.ids) > self.max_tokens:
            raise UsageError(f"the style prompt is {len(enc.ids)} tokens long; MuQ-MuLan reads "
                             f"at most {self.max_tokens}: shorten it")
        return (torch.tensor([enc.ids], dtype=torch.long),
                torch.tensor([enc.attention_mask], dtype=torch.long))
