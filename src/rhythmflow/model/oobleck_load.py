"""Read an Oobleck decoder's weights out of a VAE file's parameters (strictly, by name and shape).

The official DiffRhythm VAE is a TorchScript file; its decoder is Stable Audio's Oobleck (see
:mod:`rhythmflow.model.oobleck`), whose parameter names follow the module tree
``[prefix]layers.{i}...`` with ``i`` = 0 (input conv), 1…5 (decoder blocks: ``layers.0`` Snake,
``layers.1`` transposed conv, ``layers.2-4`` residual units of ``layers.{0,1,2,3}`` = Snake, conv
k7, Snake, conv k1), 6 (Snake), 7 (output conv, no bias). A convolution's weight is stored as is
(``weight``), weight-normed (``weight_g`` / ``weight_v``) or parametrised
(``parametrizations.weight.original0`` / ``original1``); weight norm is folded here, once. Snake
parameters are log-scale ``alpha`` and ``beta`` of shape ``[C]`` or ``[1, C, 1]``.

:func:`find_decoder` returns the plain weights and the configuration inferred from their shapes,
or None with the reason when the file holds something else (then the caller keeps TorchScript).
Every parameter under ``<prefix>layers.`` must be used and every expected one present (an
encoder or other parts beside the decoder are ignored).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import Tensor

from rhythmflow.model.oobleck import OobleckConfig

_WN = (("weight_g", "weight_v"), ("parametrizations.weight.original0",
                                   "parametrizations.weight.original1"))


@dataclass(frozen=True)
class DecoderWeights:
    """Plain (float32, weight norm folded) tensors of one Oobleck decoder, keyed like
    :class:`rhythmflow.model.oobleck.OobleckDecoder`'s state dict (``layers.…``; Snake
    ``alpha``/``beta`` as ``[C]``, log scale), with its inferred configuration."""

    config: OobleckConfig
    tensors: dict[str, Tensor]
    prefix: str


def fold_weight_norm(g: Tensor, v: Tensor) -> Tensor:
    """``g · v / ‖v‖``, the norm over every dimension where ``g`` has size 1 (torch's
    ``_weight_norm`` for any ``dim``; a 0-d ``g`` takes the norm of all of ``v``)."""
    if g.dim() == 0:
        return v * (g / v.norm())
    dims = [d for d in range(v.dim()) if g.shape[d] == 1]
    return v * (g / v.norm(p=2, dim=dims, keepdim=True))


def _conv(params: dict[str, Tensor], name: str, used: set[str]) -> Tensor | None:
    """The plain weight of convolution ``name`` (folded if weight-normed), or None."""
    if name + ".weight" in params:
        used.add(name + ".weight")
        return params[name + ".weight"].float()
    for g_key, v_key in _WN:
        g, v = f"{name}.{g_key}", f"{name}.{v_key}"
        if g in params and v in params:
            used.update((g, v))
            return fold_weight_norm(params[g].float(), params[v].float())
    return None


def _prefixes(params: dict[str, Tensor]) -> list[str]:
    """Candidate prefixes: every ``X`` with a key ``Xlayers.0.<conv weight>``, shortest first."""
    found = set()
    for key in params:
        m = re.match(r"^(.*?)layers\.0\.(weight|weight_g|parametrizations\.weight\.original0)$",
                     key)
        if m:
            found.add(m.group(1))
    return sorted(found, key=len)


def _try(params: dict[str, Tensor], prefix: str) -> DecoderWeights | str:
    sub = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix + "layers.")}
    used: set[str] = set()
    out: dict[str, Tensor] = {}

    def conv(name: str, bias: bool) -> Tensor:
        w = _conv(sub, name, used)
        if w is None or w.dim() != 3:
            raise LookupError(f"no 1-d convolution weight at {prefix}{name}")
        out[name + ".weight"] = w
        if bias:
            if name + ".bias" not in sub:
                raise LookupError(f"no bias at {prefix}{name}")
            used.add(name + ".bias")
            out[name + ".bias"] = sub[name + ".bias"].float()
        elif name + ".bias" in sub:
            raise LookupError(f"unexpected bias at {prefix}{name}")
        return w

    def snake(name: str, ch: int) -> None:
        for p in ("alpha", "beta"):
            t = sub.get(f"{name}.{p}")
            if t is None or t.numel() != ch:
                raise LookupError(f"no {ch}-channel Snake {p} at {prefix}{name}")
            used.add(f"{name}.{p}")
            out[f"{name}.{p}"] = t.float().reshape(ch)

    try:
        w0 = conv("layers.0", True)
        latent, ch = w0.shape[1], w0.shape[0]
        if w0.shape[2] != 7:
            raise LookupError("the input convolution's kernel is not 7")
        widths, strides = [ch], []
        i = 1
        while f"layers.{i}.layers.1.weight" in sub or any(
                f"layers.{i}.layers.1.{g}" in sub for g, _ in _WN):
            blk = f"layers.{i}.layers"
            snake(f"{blk}.0", ch)
            wt = conv(f"{blk}.1", True)  # ConvTranspose1d: [in, out, 2 * stride]
            if wt.shape[0] != ch or wt.shape[2] % 2:
                raise LookupError(f"{prefix}{blk}.1 is not a stride-upsampling convolution")
            ch = wt.shape[1]
            strides.append(wt.shape[2] // 2)
            for r in (2, 3, 4):  # dilations 1, 3, 9: checked by the caller's probe decode
                unit = f"{blk}.{r}.layers"
                snake(f"{unit}.0", ch)
                if tuple(conv(f"{unit}.1", True).shape) != (ch, ch, 7):
                    raise LookupError(f"{prefix}{unit}.1 is not a {ch}-channel k7 convolution")
                snake(f"{unit}.2", ch)
                if tuple(conv(f"{unit}.3", True).shape) != (ch, ch, 1):
                    raise LookupError(f"{prefix}{unit}.3 is not a {ch}-channel k1 convolution")
            widths.append(ch)
            i += 1
        if not strides:
            raise LookupError("no decoder blocks")
        snake(f"layers.{i}", ch)
        wo = conv(f"layers.{i + 1}", False)
        if wo.shape[1] != ch or wo.shape[2] != 7:
            raise LookupError("the output convolution does not match")
    except LookupError as exc:
        return str(exc)
    left = sorted(set(sub) - used)
    if left:
        return f"{len(left)} parameters under {prefix!r} the decoder does not use ({left[0]}, …)"
    # widths: c_mults[-1]·ch … c_mults[0]·ch; Oobleck's last block keeps the width
    base = widths[-1]
    if any(w % base for w in widths):
        return f"channel widths {widths} are not multiples of {base}"
    mults = tuple(w // base for w in reversed(widths[:-1]))
    cfg = OobleckConfig(latent_dim=latent, channels=base, c_mults=mults,
                        strides=tuple(reversed(strides)), out_channels=wo.shape[0])
    return DecoderWeights(cfg, out, prefix)


def find_decoder(params: dict[str, Tensor]) -> DecoderWeights | str:
    """The Oobleck decoder among ``params`` (a module's ``named_parameters``), or the reason
    why none matches (a string)."""
    reasons = []
    for prefix in _prefixes(params):
        got = _try(params, prefix)
        if isinstance(got, DecoderWeights):
            return got
        reasons.append(got)
    return "; ".join(reasons) or "no parameter named like an Oobleck decoder's input convolution"
