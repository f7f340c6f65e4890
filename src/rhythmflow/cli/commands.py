"""What the ``generate`` and ``fetch`` subcommands do with parsed arguments."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from rhythmflow import errors, events
from rhythmflow.audio.io import write_audio, write_sidecar
from rhythmflow.cli.console import ProgressView
from rhythmflow.cli.lrc import read_text
from rhythmflow.request import GenerationRequest

log = logging.getLogger("rhythmflow")


def request_from_args(args: argparse.Namespace) -> GenerationRequest:
    """The GenerationRequest a ``generate`` command line asks for (reads the LRC file)."""
    if not args.edit and (args.ref_song or args.edit_segments):
        raise errors.UsageError("--ref-song / --edit-segments are only used with --edit")
    if args.edit and (args.ref_song is None or args.edit_segments is None):
        raise errors.UsageError("--edit needs --ref-song FILE and --edit-segments JSON")
    lrc = read_text(args.lrc, "lyrics file") if args.lrc else ""
    lyrics = None
    if args.lyrics is not None:
        from rhythmflow.cli.lrc import read_lyrics_file

        lyrics = read_lyrics_file(args.lyrics)
    elif not args.lrc:
        log.info("no --lrc or --lyrics given: generating an instrumental")
    from rhythmflow.planner.outputs import output_format

    fmt = output_format(args.output, args.format)
    opt = lambda v: None if v is None else str(v)  # noqa: E731
    return GenerationRequest(
        lrc=lrc, lyrics=lyrics, style_prompt=args.style_prompt,
        style_embedding_file=opt(args.style_embedding), style_audio=opt(args.style_audio),
        negative_style=opt(args.negative_style),
        model=args.model, checkpoint=opt(args.checkpoint), model_config=opt(args.model_config),
        vae=opt(args.vae), duration=args.duration, steps=args.steps, solver=args.solver,
        schedule=args.schedule, cfg_strength=args.cfg_strength,
        guidance_interval=tuple(args.guidance_interval) if args.guidance_interval else None,
        seed=args.seed, batch=args.batch, keep_last_line=args.keep_last_line,
        ref_song=opt(args.ref_song) if args.edit else None,
        edit_segments=args.edit_segments if args.edit else None, format=fmt,
        sample_format=args.sample_format, loudness=args.loudness, time_budget=args.time_budget,
        timeout=args.timeout, anytime=args.anytime, estimate=not args.skip_estimate,
        quantize=args.quantize, device=args.device, dtype=args.dtype, threads=args.threads,
        chunked=args.chunked, vae_dtype=args.vae_dtype, takes=args.takes, check=args.check,
        repair=args.repair, repair_rounds=args.repair_rounds,
        repair_threshold=args.repair_threshold, asr_command=args.asr_command,
        asr_model=opt(args.asr_model))


def _print_plan(p, as_json: bool) -> None:
    from rhythmflow.cli.describe import describe

    if as_json:
        d = p.to_dict()
        d["grid"] = [round(float(t), 8) for t in p.grid()]
        print(json.dumps(d, indent=2))
    else:
        print(describe(p))


def run_generate(args: argparse.Namespace, view: ProgressView, cancel) -> int:
    from rhythmflow.files import check_writable_folder
    from rhythmflow.lyrics.resources import LyricsAssets
    from rhythmflow.machine.process import configure_process
    from rhythmflow.pipeline import SongGenerator, run
    from rhythmflow.planner.core import Machine, plan
    from rhythmflow.planner.outputs import resolve_outputs
    from rhythmflow.sampling import SamplerState
    from rhythmflow.sampling.keep import StoppedAfterSampling, check_cancel, keep_and_reraise

    request = request_from_args(args)
    outputs = resolve_outputs(args.output, args.format, request.sample_format,
                              max(request.batch, request.takes))
    if args.save_state is not None:  # a Ctrl-C or timeout must be able to keep the work
        state_path = Path(args.save_state).expanduser()
        if state_path.is_dir():
            raise errors.UsageError(f"--save-state {state_path} is a folder; give a file name "
                                    f"such as {state_path / 'song.resume.pt'}")
        check_writable_folder(state_path.parent)
    if args.resume is not None and not Path(args.resume).is_file():
        raise errors.UsageError(f"--resume {args.resume}: no such file")
    state = SamplerState.load(args.resume) if args.resume else None  # read once
    if state is not None and request.seed is None:
        request = request.replace(seed=state.settings.seed)
    if args.lyrics is not None:
        from rhythmflow.cli.lrc import check_lrc_outputs

        check_lrc_outputs(outputs, args.lyrics)
    offline = True if args.offline else None  # None: HF_HUB_OFFLINE decides
    p = plan(request, Machine.detect(threads=args.threads),
             lyrics_assets=LyricsAssets.of(args.assets_dir, offline))
    if args.plan:
        _print_plan(p, args.json)
        return errors.EXIT_OK
    for reason in p.reasons:
        log.info("%s", reason)
    check_cancel(cancel, "loading the model")  # Ctrl-C while checking inputs
    configure_process(p.runtime.threads)  # the CLI is an entry point: threads + malloc tuning
    save_state = args.save_state or outputs[0].with_name(outputs[0].stem + ".resume.pt")
    gen = SongGenerator.for_plan(p, assets_dir=args.assets_dir, offline=offline, on_event=view)
    song = run(p, gen, view, cancel=cancel, resume_state=state, save_state=save_state)
    reviewed = None
    if p.review.active:
        from rhythmflow.cli.check import review_song

        try:  # a failed check or repair keeps the finished sampling for --resume
            song, items, order = review_song(args, p, gen, song, view, cancel)
        except BaseException as exc:
            keep_and_reraise(exc, song.state, save_state)
        reviewed = (items, order)
    view(events.StageStarted("write", f"writing {len(outputs)} file(s)"))
    try:  # a Ctrl-C or a failed write keeps the finished sampling for --resume
        if cancel.is_set():
            raise StoppedAfterSampling("cancelled before writing the song")
        _write(args, p, song, outputs, view, reviewed)
    except BaseException as exc:
        keep_and_reraise(exc, song.state, save_state)
    if args.resume and Path(args.resume).resolve() == Path(save_state).resolve():
        Path(save_state).unlink(missing_ok=True)  # the state is used up
    return errors.EXIT_OK


def _write(args: argparse.Namespace, p, song, outputs: list[Path], view: ProgressView,
           reviewed=None) -> None:
    """Write each item (takes: best first) with its sidecar and ``.lrc`` (and, after a review,
    its latents and the check / repair / takes entries)."""
    order, extra, takes = list(range(len(outputs))), [{} for _ in outputs], None
    if reviewed is not None:
        from rhythmflow.cli.check import print_takes
        from rhythmflow.review import review_metadata, write_latents

        items, order = reviewed
        extra, takes = review_metadata(items, order, outputs, song.seeds)
        if p.review.takes > 1:
            print_takes(takes)
    for k, path in enumerate(outputs):
        i = order[k]
        write_audio(path, song.audio[i], song.sample_rate, **p.write.audio_kwargs())
        meta = dict(song.metadata, output=str(path), index=k, seed=song.seeds[i],
                    command=vars(args), **extra[k])
        if reviewed is not None:
            meta["latents_file"] = str(write_latents(path, song.latents[i]))
            if p.review.takes > 1:
                meta["takes"] = takes
        if p.autotime is not None:  # the LRC the song was conditioned on, beside it
            from rhythmflow.cli.lrc import write_autotimed

            meta["autotime"] = write_autotimed(path, p.autotime, args.lyrics)
        elif meta["lines"]:  # an instrumental has none
            from rhythmflow.review import write_sung_lrc

            meta["lrc_file"] = str(write_sung_lrc(path, meta["lines"], args.lrc))
        write_sidecar(path, meta)
        if view.mode == "json":  # stdout stays one JSON object per line
            print(json.dumps(events.to_dict(events.Result(
                "completed", outputs=(str(path),), seeds=(song.seeds[i],)))))
        else:
            print(path)


def run_fetch(args: argparse.Namespace) -> int:
    from rhythmflow.assets import fetch

    def on_progress(event) -> None:
        log.debug("%s", event)

    report = fetch(args.model, with_chinese=args.with_chinese, with_asr=args.with_asr,
                   offline=True if args.offline else None, assets_dir=args.assets_dir,
                   on_progress=on_progress)
    for line in report.lines():
        print(line)
    return report.exit_code
