"""Classifier-free guidance and the prepared inputs of one sampling run.

Guidance follows the original: ``v = v_c + s·(v_c − v_u)`` (a standard guidance scale of 1 + s).
The unconditional pass drops the lyrics and the reference latent and uses the negative style
embedding. By default both passes run as ONE forward on a doubled batch ``[x; x]`` with the
conditioning rows ``[cond; uncond]`` (``layout="batched"``); ``layout="split"`` runs them as two
forwards of b rows, which is faster on some CPUs at long lengths (measured per machine, see
:func:`rhythmflow.machine.probe.choose_guidance_layout`). Both compute the same maths; the results
differ only by GEMM rounding, which depends on the row count, so a run and its resume must use
the same layout. ``s = 0`` skips the unconditional rows entirely, and outside an optional
guidance interval only the conditional rows run.

The state and the update stay float32; ``x`` is cast to the model dtype for the call and the
velocity back to float32. A batch of songs is prepared and evaluated item by item, each exactly
as a batch of one: the same seed gives the same song bit for bit whatever the batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from rhythmflow.errors import UsageError

if TYPE_CHECKING:
    from rhythmflow.model import DiT

#: ``forward(x, t, conditioning) -> v``: a DiT instance, or any callable of that shape.
ModelForward = Callable[[Tensor, Tensor, Any], Tensor]


@dataclass(frozen=True)
class SamplingInputs:
    """What the sampler needs besides its settings, computed once per generation.

    cond:       conditioning object for the b conditional rows (opaque to the sampler)
    both:       conditioning for 2b rows [cond; uncond], or None when no guidance will be used
    shape:      (b, n, m) of the latent state
    reference:  [b, n, m] float32 reference latent, or None (kept frames come from it)
    edit_mask:  [b, n] bool, True on frames to generate; None = generate every frame
    device:     where the state lives
    """

    cond: Any
    both: Any | None
    shape: tuple[int, int, int]
    reference: Tensor | None = None
    edit_mask: Tensor | None = None
    device: torch.device = torch.device("cpu")

    def __post_init__(self) -> None:
        b, n, _ = self.shape
        if (self.reference is None) != (self.edit_mask is None):
            raise UsageError("reference and edit_mask go together: pass both (editing) or neither")
        if self.edit_mask is not None and tuple(self.edit_mask.shape) != (b, n):
            raise UsageError(
                f"edit_mask must be [b, n] = {[b, n]}, got {list(self.edit_mask.shape)}"
            )
        if self.reference is not None and tuple(self.reference.shape) != self.shape:
            raise UsageError(
                f"reference must be {list(self.shape)}, got {list(self.reference.shape)}"
            )

    def finish(self, x: Tensor) -> Tensor:
        """The output latent: generated frames from ``x``, kept frames from the reference."""
        if self.edit_mask is None:
            return x
        return torch.where(self.edit_mask[..., None], x, self.reference)


class GuidedVelocity:
    """``velocity(x, t)`` with classifier-free guidance over a model forward.

    ``interval=(lo, hi)`` applies guidance only for lo <= t <= hi (one conditional forward
    elsewhere). ``cfg_strength == 0`` never runs the unconditional rows. ``layout`` "batched"
    (one forward on the doubled batch) or "split" (two forwards); see the module docstring.
    """

    LAYOUTS = ("batched", "split")

    def __init__(
        self,
        forward: ModelForward,
        inputs: SamplingInputs,
        cfg_strength: float,
        interval: tuple[float, float] | None = None,
        model_dtype: torch.dtype = torch.float32,
        layout: str = "batched",
    ) -> None:
        check_guidance(cfg_strength, interval)
        if layout not in self.LAYOUTS:
            raise UsageError(f"guidance layout must be 'batched' or 'split', got {layout!r}")
        if cfg_strength > 0 and inputs.both is None:
            raise UsageError(
                f"cfg_strength={cfg_strength} needs the unconditional branch; prepare the inputs "
                "with guidance=True (a negative style embedding), or use cfg_strength=0"
            )
        self.forward = forward
        self.inputs = inputs
        self.cfg_strength = float(cfg_strength)
        self.interval = interval
        self.model_dtype = model_dtype
        self.layout = layout
        self._uncond = None
        self._items: list[GuidedVelocity] | None = None

    def items(self) -> list[GuidedVelocity]:
        """One velocity per batch item (built once): item i is evaluated exactly as in a batch
        of 1, so a song never depends on the batch size (GEMM rounding depends on row counts)."""
        if self._items is None:
            b, n, m = self.inputs.shape
            self._items = []
            for i in range(b):
                both = self.inputs.both
                if both is not None:
                    both = type(both).cat([both.select(slice(i, i + 1)),
                                           both.select(slice(b + i, b + i + 1))])
                cond = both.select(slice(0, 1)) if both is not None else \
                    self.inputs.cond.select(slice(i, i + 1))
                one = SamplingInputs(cond, both, (1, n, m), device=self.inputs.device)
                self._items.append(GuidedVelocity(self.forward, one, self.cfg_strength,
                                                  self.interval, self.model_dtype, self.layout))
        return self._items

    def guided_at(self, t: Tensor) -> bool:
        """Whether the unconditional pass runs at time ``t``."""
        if self.cfg_strength == 0:
            return False
        if self.interval is None:
            return True
        lo, hi = self.interval
        return lo <= float(t) <= hi

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        if self.inputs.shape[0] > 1:
            return torch.cat([v(x[i : i + 1], t) for i, v in enumerate(self.items())])
        if not self.guided_at(t):
            return self.forward(x.to(self.model_dtype), t, self.inputs.cond).float()
        if self.layout == "split":
            if self._uncond is None:  # the unconditional rows of [cond; uncond], a view
                b = self.inputs.shape[0]
                self._uncond = self.inputs.both.select(slice(b, 2 * b))
            xm = x.to(self.model_dtype)
            v_c = self.forward(xm, t, self.inputs.cond).float()
            v_u = self.forward(xm, t, self._uncond).float()
        else:
            xx = torch.cat([x, x]).to(self.model_dtype)  # [2b, n, m]
            v_c, v_u = self.forward(xx, t, self.inputs.both).float().chunk(2)
        return v_c + (v_c - v_u) * self.cfg_strength


def check_guidance(cfg_strength: float, interval: tuple[float, float] | None) -> None:
    """Raise UsageError for a negative/non-finite strength or a malformed interval."""
    if not isinstance(cfg_strength, (int, float)) or not (0 <= cfg_strength < float("inf")):
        raise UsageError(f"cfg_strength must be a finite number >= 0, got {cfg_strength!r}")
    if interval is not None:
        ok = len(interval) == 2 and all(isinstance(v, (int, float)) for v in interval)
        if not ok or not 0 <= interval[0] <= interval[1] <= 1:
            raise UsageError(
                f"guidance_interval must be (lo, hi) with 0 <= lo <= hi <= 1, got {interval!r}"
            )


def segments_to_mask(segments: Sequence[Sequence[int]] | Tensor, frames: int) -> Tensor:
    """[n] bool mask, True on frames inside any [start, end) segment (the original's pred_mask)."""
    mask = torch.zeros(frames, dtype=torch.bool)
    for seg in segments.tolist() if isinstance(segments, Tensor) else segments:
        if len(seg) != 2 or not 0 <= int(seg[0]) < int(seg[1]):
            raise UsageError(f"edit segment {list(seg)} must be [start, end) with 0 <= start < end")
        if int(seg[0]) >= frames:
            raise UsageError(f"edit segment {list(seg)} starts after the last frame ({frames})")
        mask[int(seg[0]) : int(seg[1])] = True
    return mask


def _rows(x: Tensor, b: int, name: str) -> Tensor:
    """``x`` with b rows: a single row is repeated, b rows pass through."""
    if x.shape[0] == b:
        return x
    if x.shape[0] == 1:
        return x.expand(b, *x.shape[1:]).contiguous()
    raise UsageError(f"{name} has {x.shape[0]} rows; expected 1 or the batch size {b}")


@torch.inference_mode()
def prepare_inputs(
    model: DiT,
    *,
    text: Tensor,
    style: Tensor,
    negative_style: Tensor | None,
    start_time: Tensor | float = 0.0,
    song_duration: Tensor | float | None = None,
    reference: Tensor | None = None,
    edit_mask: Tensor | None = None,
    batch: int = 1,
) -> SamplingInputs:
    """Build the conditioning of one generation from a DiT (once, before sampling).

    text [1|b, n] token ids; style and negative_style [1|b, 512]; start_time / song_duration
    scalars or [1|b]; reference [1|b, n, m] latent with edit_mask [n] or [1|b, n] bool (True =
    generate) for editing / continuation, both None to generate every frame. Single rows are
    repeated to ``batch``. ``negative_style=None`` prepares no unconditional branch (then only
    ``cfg_strength=0`` can sample). The model sees the reference only on kept frames
    (``where(mask, 0, reference)``), as the original does.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise UsageError(f"batch must be a whole number >= 1, got {batch!r}")
    device = next(model.parameters()).device
    b, n, m = batch, text.shape[-1], model.config.mel_dim
    text = _rows(text.reshape(-1, n).to(device), b, "text")
    style = _rows(style.reshape(-1, style.shape[-1]).to(device), b, "style")

    def per_row(v: Tensor | float | None, name: str) -> Tensor | None:
        if v is None:
            return None
        v = torch.as_tensor(v, dtype=torch.float32, device=device).reshape(-1)
        return _rows(v, b, name)

    start, duration = per_row(start_time, "start_time"), per_row(song_duration, "song_duration")
    if (reference is None) != (edit_mask is None):
        raise UsageError(
            "a reference latent needs an edit_mask saying which frames to generate (and a mask "
            "needs a reference); for plain generation pass neither"
        )
    if reference is not None:
        if reference.ndim not in (2, 3) or tuple(reference.shape[-2:]) != (n, m):
            raise UsageError(
                f"reference latent must be [b, {n}, {m}] (frames as the lyrics track), "
                f"got {list(reference.shape)}"
            )
        if edit_mask.ndim not in (1, 2) or edit_mask.shape[-1] != n:
            raise UsageError(f"edit_mask must be [{n}] or [b, {n}], got {list(edit_mask.shape)}")
        reference = _rows(reference.to(device, torch.float32).reshape(-1, n, m), b, "reference")
        mask = _rows(edit_mask.to(device, torch.bool).reshape(-1, n), b, "edit_mask")
        step_cond = torch.where(mask[..., None], 0.0, reference)
    else:
        mask, step_cond = None, torch.zeros(b, n, m, device=device)
    common = dict(text=text, start_time=start, song_duration=duration, cond=step_cond)

    def prepare(style: Tensor, **flags: bool):  # row by row: row i exactly as in a batch of 1
        rows = [model.prepare(style=style[i : i + 1], **flags, **{
            k: None if v is None else v[i : i + 1] for k, v in common.items()}) for i in range(b)]
        return rows[0] if b == 1 else type(rows[0]).cat(rows)

    cond = prepare(style)
    both = None
    if negative_style is not None:
        neg = _rows(
            negative_style.reshape(-1, negative_style.shape[-1]).to(device), b, "negative_style"
        )
        uncond = prepare(neg, drop_audio_cond=True, drop_text=True)
        both = type(cond).cat([cond, uncond])
        cond = both.select(slice(0, b))  # a view: the conditional rows are stored once
    return SamplingInputs(cond, both, (b, n, m), reference, mask, device)
