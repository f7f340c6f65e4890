"""``rhythmflow repair SONG --lrc SONG.lrc [--repair-rounds K] [--repair-threshold P] [-o OUT]``.

Repairs a song rhythmflow made: the request, seed and lines come from its sidecar
(``<stem>.json``), its latents from ``<stem>.latents.npy`` (written by ``generate --check /
--repair / --takes`` and by this command). Without that file the song's audio is encoded with
the VAE (with a warning: then the kept frames are the re-encoded song's, not the original
latents). The ``--lrc`` must hold the sidecar's lines (the song's own ``.lrc``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from rhythmflow import errors

log = logging.getLogger("rhythmflow")


def _sidecar(song: Path) -> dict:
    from rhythmflow.audio.io import sidecar_path

    path = sidecar_path(song)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise errors.UsageError(f"{path} (the sidecar of {song}) does not exist: repair needs "
                                "the request and seed of a song rhythmflow made") from None
    except (OSError, ValueError) as exc:
        raise errors.UsageError(f"cannot read the sidecar {path}: {exc}") from None
    if not isinstance(meta, dict) or not {"request", "seed", "lines"} <= set(meta):
        raise errors.UsageError(f"{path} is not a rhythmflow sidecar with lines (request, seed "
                                "and lines missing); make the song again with this version")
    return meta


def _check_lrc_matches(lrc: Path, lines: list[dict]) -> None:
    from rhythmflow.cli.lrc import read_text
    from rhythmflow.lyrics.check import lines_of_lrc

    given = [(x.line, x.text) for x in lines_of_lrc(read_text(lrc, "lyrics file"))]
    sung = [(int(x["line"]), x["text"]) for x in lines]
    if given != sung:
        raise errors.UsageError(f"lyrics file {lrc} is not the .lrc this song was sung from "
                                f"({len(given)} lines against the sidecar's {len(sung)}); give "
                                "the .lrc written beside the song")


def repair_file(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from rhythmflow.audio.io import write_audio, write_sidecar
    from rhythmflow.cli.check import review_song
    from rhythmflow.lyrics.resources import LyricsAssets
    from rhythmflow.pipeline import Song, SongGenerator
    from rhythmflow.planner.core import Machine, plan
    from rhythmflow.request import GenerationRequest
    from rhythmflow.review import latents_path, write_latents, write_sung_lrc

    meta = _sidecar(args.song)
    _check_lrc_matches(args.lrc, meta["lines"])
    output = args.output or args.song.with_name(args.song.stem + ".repaired.wav")
    if Path(output).resolve() == Path(args.song).resolve():
        raise errors.UsageError(f"-o {output} would overwrite the song being repaired")
    fields = dict(meta["request"], seed=int(meta["seed"]), batch=1, takes=1, ref_song=None,
                  edit_segments=None, timeout=None, time_budget=None, repair=True, check=True,
                  repair_rounds=args.repair_rounds, repair_threshold=args.repair_threshold,
                  asr_command=args.asr_command,
                  asr_model=None if args.asr_model is None else str(args.asr_model),
                  device=args.device, estimate=False)
    fmt = Path(output).suffix.lstrip(".").lower() or "wav"
    fields.update(format=fmt, sample_format="int16" if fmt != "wav" else
                  fields.get("sample_format", "int16"))
    request = GenerationRequest.from_dict(fields)
    offline = True if args.offline else None
    p = plan(request, Machine.detect(), lyrics_assets=LyricsAssets.of(args.assets_dir, offline))
    gen = SongGenerator.for_plan(p, assets_dir=args.assets_dir, offline=offline)
    stored = latents_path(args.song)
    if stored.is_file():
        latents = torch.from_numpy(np.load(stored)).float()[None]  # [1, n, 64]
    else:
        from rhythmflow.vae.reference import reference_latents

        log.warning("warning: %s is missing: encoding %s with the VAE (the kept frames are the "
                    "re-encoded song's)", stored, args.song)
        gen_ = torch.Generator(device=gen.runtime.vae_device).manual_seed(p.seed)
        latents = reference_latents(args.song, gen.vae, generator=gen_)[:, :p.frames]
    if latents.shape[1] != p.frames:
        raise errors.UsageError(f"{stored} holds {latents.shape[1]} frames but the song has "
                                f"{p.frames}")
    song = Song(gen.decode(latents), gen.vae.sample_rate, latents, [p.seed],
                {"lines": meta["lines"]})
    song, items, _ = review_song(args, p, gen, song, None, None)
    write_audio(output, song.audio[0], song.sample_rate, **p.write.audio_kwargs())
    item = items[0]
    new = dict(meta, output=str(output), repaired_from=str(args.song),
               check=item.check.to_dict() if item.check else None, repair=item.repair,
               review_seconds=item.seconds)
    new["latents_file"] = str(write_latents(output, song.latents[0]))
    new["lrc_file"] = str(write_sung_lrc(output, meta["lines"], args.lrc))
    write_sidecar(output, new)
    if args.json:
        print(json.dumps({"output": str(output), "check": new["check"],
                          "repair": item.repair}, indent=2, ensure_ascii=False))
    else:
        print(output)
    return errors.EXIT_OK
