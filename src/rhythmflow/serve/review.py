"""The service's side of :mod:`rhythmflow.review`: ``check``, ``repair`` and ``takes`` as job
fields, run by the worker after sampling and shown by ``GET /api/jobs/{id}``.

The recogniser is the server's (``serve``/``worker --asr-command T | --asr-model DIR``), never a
request's: :func:`rhythmflow.serve.core.validate` refuses a job that asks ``check`` or
``repair`` of a server without one. ``takes`` needs none (a recogniser, when there is one, adds
the lyric PER to the ranking, as ``generate --takes`` does). ``ref_job`` (an edit job on a
finished job's song) is attached by :func:`rhythmflow.serve.core.attach_reference`.

Worker side: :func:`run_review` runs the plan's review after sampling; :func:`output_entry` is
what each output of the job row records (``lines``, each with the ``span`` in seconds an edit of
that line samples again, ``check``, ``repair``, ``style_score``, ``per``), which
:func:`decorate` turns into the ``result`` of ``GET /api/jobs/{id}``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from rhythmflow.serve.settings import Settings

# ---- worker side ---------------------------------------------------------------------------


@lru_cache(maxsize=2)
def _recognizer(kind: str, command: str | None, model: str | None, assets: str | None,
                offline: bool, device: str):
    from rhythmflow.asr import recognizer_for

    return recognizer_for(kind, command=command, model=model, assets_dir=assets,
                          offline=True if offline else None, device=device)


@lru_cache(maxsize=1)
def _style_encoder(assets: str | None, offline: bool):
    from rhythmflow.style.embed import MuQMuLanEncoder

    return _ServerEncoder(MuQMuLanEncoder(device="cpu", assets_dir=assets,
                                          offline=True if offline else None))


class _ServerEncoder:
    """MuQ-MuLan for the takes' style scores, loaded once per worker; when it is missing the
    job's warning says so in one line (the full fix, with the server's folders, is the
    operator's business: the worker's log has it)."""

    def __init__(self, encoder) -> None:
        self.encoder = encoder

    def embed_audio(self, wav):
        import logging

        from rhythmflow.errors import AssetError

        try:
            return self.encoder.embed_audio(wav)
        except AssetError as exc:
            logging.getLogger(__name__).warning("takes not scored by style: %s", exc)
            raise AssetError("MuQ-MuLan is not installed on this server; the takes are ranked "
                             "by lyric PER only") from None


def run_review(p, settings: Settings, generator, song, on_event, cancel):
    """``rhythmflow.review.review`` with the server's recogniser (loaded once per worker):
    (song, items, order best first). UsageError when the job checks and this worker has no
    recogniser (it was started without the HTTP side's --asr-command / --asr-model)."""
    from rhythmflow.errors import UsageError
    from rhythmflow.review import review

    rec = None
    if p.review.check:
        if not settings.has_recognizer:
            raise UsageError("check: this worker has no speech recogniser (its asr_command "
                             "or asr_model setting); give it the HTTP side's", field="check")
        device = p.runtime.device if p.runtime.kind == "cuda" else "cpu"
        rec = _recognizer(p.review.recognizer, settings.asr_command,
                          None if settings.asr_model is None else str(settings.asr_model),
                          None if settings.assets_dir is None else str(settings.assets_dir),
                          bool(settings.offline), device)
    encoder = None
    if p.review.takes > 1:
        encoder = _style_encoder(None if settings.assets_dir is None
                                 else str(settings.assets_dir), bool(settings.offline))
    return review(p, generator, song, recognizer=rec, style_encoder=encoder,
                  on_event=on_event, cancel=cancel)


def output_entry(meta: dict[str, Any], frames: int) -> dict[str, Any]:
    """What the job row records of one reviewed output (its sidecar ``meta``): the lines, each
    with ``span`` ([start, end) seconds: the region a repair or an edit of that line samples
    again), and the review's ``check``, ``repair``, ``style_score`` and ``per``."""
    from rhythmflow.lyrics.check import SungLine, regions
    from rhythmflow.specs import FRAME_RATE

    lines = [SungLine.from_dict(x) for x in meta.get("lines") or []]
    spans = regions(lines, frames) if lines else []
    out: dict[str, Any] = {"lines": [dict(x.to_dict(), span=[round(a / FRAME_RATE, 4),
                                                             round(b / FRAME_RATE, 4)])
                                     for x, (a, b) in zip(lines, spans, strict=True)]}
    for name in ("check", "repair"):
        if meta.get(name) is not None:
            out[name] = meta[name]
    take = next((t for t in meta.get("takes") or [] if t["file"] == meta["output"]), None)
    if take is not None:
        out.update(style_score=take["style_score"], per=take["per"])
    elif meta.get("check"):
        out["per"] = meta["check"]["per"]
    return out


# ---- what GET /api/jobs/{id} shows -----------------------------------------------------------


def decorate(view: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """``view`` (:func:`~rhythmflow.serve.views.job_view`) with the review: each output's
    ``check``/``repair``/``style_score``/``per``, and ``result``: ``{"lines", "check",
    "repair", "takes"}`` of the best take (``takes``: every take best first, None for one)."""
    ref_job = (job.get("attachments") or {}).get("ref_job")
    if ref_job is not None:
        view.setdefault("request", {})["ref_job"] = ref_job
    outputs = job.get("outputs") or []
    if not outputs or "lines" not in outputs[0]:
        return view
    extra = ("check", "repair", "style_score", "per")
    for shown, out in zip(view.get("outputs") or [], outputs, strict=False):
        shown.update({k: out[k] for k in extra if k in out})
    best = outputs[0]
    takes = None
    if int((job.get("request") or {}).get("takes") or 1) > 1:
        takes = [{"index": o["index"], "seed": o["seed"], "style_score": o.get("style_score"),
                  "per": o.get("per"), "url": f"/api/jobs/{job['id']}/audio?index={o['index']}"}
                 for o in outputs]
    view["result"] = {"lines": best["lines"], "check": best.get("check"),
                      "repair": best.get("repair"), "takes": takes}
    return view
