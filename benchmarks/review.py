"""What the lyric check and one repair round cost on this CPU for a 95 s song (issue 23).

    python benchmarks/review.py [--steps N] [--bad-line K] [--tokens 15] [--no-probe]
                                [--tiny] [--json out.json]

One process, measured side by side on this machine:

* the song: a full-size random DiT checkpoint (``v1.2-base``, official ``.pt`` container) and a
  full-size TorchScript Oobleck VAE (``song_dtype.build_files``, as ``benchmarks/song.py`` and
  ``song_dtype.py`` build them), a 95 s request with :data:`LRC` (20 timed lines), planned on
  this machine (dtype, threads, guidance layout, steps: the plan's — 8 on a CPU — unless
  ``--steps``) and run through the API (``plan`` → ``SongGenerator.for_plan`` → ``run``; the
  time estimate before sampling is off). Its sampling + decode is the *initial generation*.
* **the check as ``rhythmflow check`` runs it** (``run_check``: read the song's audio file and
  its ``.lrc``, :func:`rhythmflow.lyrics.check.check_audio` with
  :class:`rhythmflow.asr.whisper.WhisperRecognizer` on a Whisper folder) on the song written to
  disk. The official checkpoint (``openai/whisper-base``) is not downloaded: :func:`build_whisper`
  builds a RANDOM-weight Whisper with whisper-base's exact architecture (:data:`WHISPER_BASE`),
  a byte-level tokenizer padded to whisper-base's 51865 ids with the multilingual special
  tokens at their real ids, and the real feature extractor (80 mel bins, 30 s windows). The
  cost does not depend on the weights except through how many tokens the decoder emits: a
  random model never predicts ``<|endoftext|>``, so every window decodes to the recogniser's
  cap (``MAX_TOKENS`` = 96). That is the first check row (the worst case); forward hooks count
  the decoder calls and time the encoder in each window.
* **the check at a realistic transcript length**: the same recogniser with the module's
  ``MAX_TOKENS`` set to ``--tokens`` + 1 (15 text tokens and the step that would emit
  ``<|endoftext|>``: a sung line of a few words), inside :func:`rhythmflow.review.review` —
  the review's own check stage. Whisper runs for real on every window; its transcript is then
  replaced by a script (the line's own text, except ``--bad-line``, heard as nothing the first
  time), so exactly one line fails.
* **one repair round** (the review with ``repair_rounds=1``): re-sampling the song with the edit
  mask over the failing line's region (the DiT still evaluates every frame, the plan's guidance
  and steps), one VAE decode of the whole song, re-checking the repaired line (Whisper at the
  realistic length). Its parts: the VAE decode and the Whisper calls are timed by wrappers, the
  re-sampling is the rest (it includes the small bookkeeping of the round).

Prints the CPU (model, AMX / AVX-512 / AVX2-only), a table, and the ratios of the check and of
the round to the initial generation. ``--tiny``: the tiny DiT, a width-4 VAE and a 1-layer
Whisper (a test of the script, not a measurement). Full size: a few GB of temporary disk and
12.4 minutes (743 s) on a busy 2-vCPU AMX Xeon (the check as shipped on 2 windows only).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import table
from song_dtype import build_files, isa_class, start_run

#: 21 timed lines over the 95 s song, one every 4.4 s (short sung lines, a few words each); the
#: last is dropped as the original drops it (no ``keep_last_line``): 20 lines are sung.
LRC = "".join(f"[{int(t) // 60:02d}:{t % 60:05.2f}]{text}\n" for t, text in zip(
    [1.0 + 4.4 * k for k in range(21)],
    ["Hold the light", "Over the water", "Every road goes home", "Sing it again",
     "Under the morning sky", "Home again", "Follow the river down", "Carry me over",
     "Nothing but the sound", "Of a heart that beats", "Running through the night",
     "Calling out your name", "Stars above the town", "Never let it go", "Dancing in the rain",
     "Walking on the line", "Open up the door", "Light another fire", "Say it one more time",
     "Till the morning comes", "Goodnight"], strict=True))

#: whisper-base (openai/whisper ``ModelDimensions`` for "base": n_mels 80, n_vocab 51865,
#: n_audio_ctx 1500, n_audio_state 512, n_audio_head 8, n_audio_layer 6, n_text_ctx 448,
#: n_text_state 512, n_text_head 8, n_text_layer 6, MLP 4 × 512; the HF config.json of
#: openai/whisper-base the same, ffn 2048). transformers' WhisperConfig() defaults are
#: whisper-tiny's widths (d_model 384, 4 + 4 layers, 6 heads, ffn 1536) with the same vocab 51865,
#: 80 mel bins, 1500 / 448 positions, gelu, scale_embedding False, tied output projection:
#: every value that differs from the default is set here.
WHISPER_BASE = dict(vocab_size=51865, num_mel_bins=80, d_model=512, encoder_layers=6,
                    decoder_layers=6, encoder_attention_heads=8, decoder_attention_heads=8,
                    encoder_ffn_dim=2048, decoder_ffn_dim=2048, max_source_positions=1500,
                    max_target_positions=448, activation_function="gelu",
                    scale_embedding=False, tie_word_embeddings=True)
#: the multilingual special tokens in whisper's order after the 50257 BPE ids:
#: <|endoftext|> 50257, <|startoftranscript|> 50258, 99 languages 50259-50357, <|translate|>
#: 50358, <|transcribe|> 50359, <|startoflm|>, <|startofprev|>, <|nocaptions|>,
#: <|notimestamps|> 50363, 1501 timestamps <|0.00|> … <|30.00|> 50364-51864
TASKS = ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>",
         "<|nocaptions|>", "<|notimestamps|>"]
BPE_IDS = 50257
#: the lyric front-end's files (G2P vocabulary), as the tests and benchmarks/serve.py find them
ASSETS = Path(__file__).resolve().parents[1].parent / "shared" / "assets"


def build_whisper(folder: Path, tiny: bool) -> dict:
    """A random Whisper in ``folder`` in the layout :class:`WhisperRecognizer` loads
    (``WhisperProcessor`` + ``WhisperForConditionalGeneration.save_pretrained``, as
    tests/test_lyrics_check_whisper.py builds its tiny one). Returns its facts."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    from rhythmflow.testing import save_whisper_processor

    pieces: list[str] = []
    if not tiny:  # pad to whisper's 50257 BPE ids with word-like pieces (" ab", " ac", …)
        k = 0
        while 256 + len(pieces) < BPE_IDS:
            word, n = "", k
            while True:
                word, n = chr(97 + n % 26) + word, n // 26
                if not n:
                    break
            if len(word) > 1:
                pieces.append("Ġ" + word)
            k += 1
    langs = [f"<|{c}|>" for c in LANGUAGES if c != "yue"]  # yue came with large-v3
    specials = ["<|startoftranscript|>", *langs, *TASKS]
    if not tiny:
        specials += [f"<|{i * 0.02:.2f}|>" for i in range(1501)]
    else:
        specials = ["<|startoftranscript|>", "<|en|>", "<|zh|>", *TASKS]
    tok = save_whisper_processor(folder, specials, pieces)
    sot = tok.convert_tokens_to_ids("<|startoftranscript|>")
    ids = dict(decoder_start_token_id=sot, eos_token_id=tok.eos_token_id,
               bos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    if tiny:
        cfg = WhisperConfig(vocab_size=len(tok), num_mel_bins=80, encoder_layers=1,
                            decoder_layers=1, d_model=16, encoder_attention_heads=2,
                            decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                            max_source_positions=1500, max_target_positions=16, **ids)
    else:
        cfg = WhisperConfig(**WHISPER_BASE, **ids)
        assert len(tok) == cfg.vocab_size, (len(tok), cfg.vocab_size)
        assert (sot, tok.eos_token_id, tok.convert_tokens_to_ids("<|en|>"),
                tok.convert_tokens_to_ids("<|notimestamps|>")) == (50258, 50257, 50259, 50363)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(cfg)
    model.save_pretrained(folder)
    return {"folder": str(folder), "parameters": sum(p.numel() for p in model.parameters()),
            "tokens": len(tok),
            "config": {k: getattr(cfg, k) for k in (*WHISPER_BASE, "decoder_start_token_id",
                                                    "eos_token_id")}}


class MeteredWhisper:
    """rhythmflow's :class:`WhisperRecognizer` with forward hooks: each window's seconds, the
    encoder's share, the decoder calls (tokens emitted, the end-of-text step included) and the
    cap. ``script`` (line -> text): return that instead of Whisper's transcript (``bad``: heard
    as nothing the first time), after running Whisper all the same."""

    def __init__(self, folder: Path) -> None:
        from rhythmflow.asr.whisper import WhisperRecognizer

        self.rec = WhisperRecognizer(folder)
        self.windows: list[dict] = []
        self.phase = ""
        self.script: dict[int, str] | None = None
        self.bad: int | None = None
        self._heard: set[int] = set()
        self._calls = 0
        self._enc = 0.0

    def load(self) -> float:
        t0 = time.perf_counter()
        model, _ = self.rec._load()
        seconds = time.perf_counter() - t0
        t = {}

        def enc_pre(*_):
            t["enc"] = time.perf_counter()

        def enc_post(*_):
            self._enc += time.perf_counter() - t["enc"]

        def dec_post(*_):
            self._calls += 1

        model.get_encoder().register_forward_pre_hook(enc_pre)
        model.get_encoder().register_forward_hook(enc_post)
        model.get_decoder().register_forward_hook(dec_post)
        return seconds

    def __call__(self, wav, window) -> str:
        from rhythmflow.asr import whisper

        model, _ = self.rec._load()
        prompt = len(self.rec._prompt(window.lang))
        cap = min(whisper.MAX_TOKENS, model.config.max_target_positions - prompt)
        self._calls, self._enc = 0, 0.0
        t0 = time.perf_counter()
        heard = self.rec(wav, window)
        seconds = time.perf_counter() - t0
        self.windows.append({"phase": self.phase, "line": window.line,
                             "window_seconds": round(window.end - window.start, 3),
                             "seconds": seconds, "encoder_seconds": self._enc,
                             "decoder_calls": self._calls, "cap": cap,
                             "to_cap": self._calls >= cap})
        if self.script is None:
            return heard
        first = window.line not in self._heard
        self._heard.add(window.line)
        return "" if window.line == self.bad and first else self.script[window.line]

    def summary(self, phase: str) -> dict:
        w = [x for x in self.windows if x["phase"] == phase]
        n = max(len(w), 1)
        calls = sorted(x["decoder_calls"] for x in w)
        return {"windows": len(w), "seconds": sum(x["seconds"] for x in w),
                "per_window": sum(x["seconds"] for x in w) / n,
                "encoder_per_window": sum(x["encoder_seconds"] for x in w) / n,
                "decoder_calls": [calls[0], calls[-1]] if calls else [0, 0],
                "cap": w[0]["cap"] if w else None, "all_to_cap": all(x["to_cap"] for x in w)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=None, help="default: the plan's (8 on a CPU)")
    p.add_argument("--bad-line", type=int, default=None,
                   help="the line the script fails (default: the middle sung line)")
    p.add_argument("--capped-windows", type=int, default=2,
                   help="windows the as-shipped check (decoder to its cap) runs; the whole "
                        "song's check is extrapolated from them (0: every window)")
    p.add_argument("--tokens", type=int, default=15,
                   help="a realistic transcript length in tokens (the review's check)")
    p.add_argument("--no-probe", action="store_true", help="plan without the machine probe")
    p.add_argument("--tiny", action="store_true", help="tiny models: a test of the script")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    os.environ.setdefault("RHYTHMFLOW_ASSETS_DIR", str(ASSETS))
    from rhythmflow import (
        GenerationRequest,
        SongGenerator,
        events,
        plan,
        run,
    )
    from rhythmflow.asr import whisper
    from rhythmflow.audio.io import read_audio, write_audio
    from rhythmflow.lyrics.check import SungLine, check_audio, lines_of_lrc
    from rhythmflow.review import review, write_sung_lrc

    host, m, cpu_line = start_run(measure=not a.no_probe)
    res: dict = {"machine": m, "isa_class": isa_class(m["isa"]), "tiny": a.tiny,
                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        files = build_files(d, a.tiny)
        res["whisper"] = build_whisper(d / "whisper", a.tiny)
        res["build_seconds"] = time.perf_counter() - t0
        print(f"built the random files in {res['build_seconds']:.0f} s", flush=True)

        # ---- the initial generation -----------------------------------------------------------
        request = GenerationRequest(
            lrc=LRC, style_embedding_file=str(files["style"]),
            negative_style=str(files["negative"]), checkpoint=str(files["checkpoint"]),
            vae=str(files["vae"]), duration=95.0, steps=a.steps or (2 if a.tiny else None),
            seed=0, device="cpu", estimate=False, repair=True, repair_rounds=1,
            asr_model=res["whisper"]["folder"])
        pl = plan(request, host)
        gen = SongGenerator.for_plan(pl)
        song = run(pl, gen)
        t = song.metadata["timings"]
        lines = song.metadata["lines"]
        initial = t["sample"] + t["decode"]
        res["initial"] = {"dtype": pl.runtime.dtype, "vae_dtype": pl.runtime.vae_dtype,
                          "vae_decoder": song.metadata["vae_decode"]["decoder"],
                          "guidance_layout": pl.guidance_layout, "threads": pl.runtime.threads,
                          "frames": pl.frames, "steps": pl.steps,
                          "evaluations": song.metadata["evaluations"], "load": t["load"],
                          "sample": t["sample"], "decode": t["decode"],
                          "sample_decode": initial, "lines": len(lines)}
        print(f"initial generation: sampling {t['sample']:.1f} s, decode {t['decode']:.1f} s "
              f"({len(lines)} lines sung)", flush=True)
        wav = write_audio(d / "song.wav", song.audio[0], gen.vae.sample_rate)
        lrc = write_sung_lrc(wav, lines)

        # ---- (a) the check as `rhythmflow check` runs it (random Whisper: to the cap) ---------
        ears = MeteredWhisper(Path(res["whisper"]["folder"]))
        load = ears.load()
        ears.phase = "check"
        t0 = time.perf_counter()
        audio, sr = read_audio(wav)
        sung = lines_of_lrc(lrc.read_text(encoding="utf-8"))
        only = None if a.capped_windows <= 0 else [x.line for x in sung[:a.capped_windows]]
        report = check_audio(audio, sr, sung, ears, only=only, assets=gen.lyrics_assets)
        secs = time.perf_counter() - t0
        res["check"] = {**ears.summary("check"), "seconds": secs, "load": load,
                        "max_tokens": whisper.MAX_TOKENS, "lines": len(sung),
                        "whole_song": secs * len(sung) / len(report.lines),
                        "extrapolated": len(report.lines) < len(sung)}
        print(f"check (decoder to its cap): {secs:.1f} s over {len(report.lines)} of "
              f"{len(sung)} windows", flush=True)

        # ---- (a') the review's check at a realistic length, (b) one repair round --------------
        ears.script = {x.line: x.text for x in map(SungLine.from_dict, lines)}
        ears.bad = a.bad_line or (len(lines) + 1) // 2
        res["bad_line"] = ears.bad
        decodes: list[float] = []
        plain_decode = gen.decode

        def timed_decode(*args, **kw):
            t1 = time.perf_counter()
            out = plain_decode(*args, **kw)
            decodes.append(time.perf_counter() - t1)
            return out

        gen.decode = timed_decode
        saved = whisper.MAX_TOKENS
        whisper.MAX_TOKENS = a.tokens + 1  # the text tokens and the end-of-text step
        try:
            ears.phase = "review-check"

            def on_event(e) -> None:  # the repair's Whisper calls, told apart by the stage
                if isinstance(e, events.StageStarted) and e.stage == "repair":
                    ears.phase = "repair"

            song, items, _ = review(pl, gen, song, recognizer=ears, on_event=on_event)
        finally:
            whisper.MAX_TOKENS = saved
            gen.decode = plain_decode
        item = items[0]
        rounds = item.repair["rounds"]
        recheck = ears.summary("repair")
        decode = sum(decodes)
        res["review_check"] = {**ears.summary("review-check"), "seconds": item.seconds["check"],
                               "max_tokens": a.tokens + 1}
        res["repair"] = {"seconds": item.seconds["repair"], "rounds": len(rounds),
                         "round": rounds[0] if rounds else None, "decodes": len(decodes),
                         "decode": decode, "recheck": recheck["seconds"],
                         "recheck_windows": recheck["windows"],
                         "resample": item.seconds["repair"] - decode - recheck["seconds"],
                         "passed": item.repair["passed"]}
    res["seconds"] = time.perf_counter() - t_all
    ini, chk, rc, rp = res["initial"], res["check"], res["review_check"], res["repair"]

    def row(what: str, secs: float, detail: str) -> list:
        return [what, secs, f"{secs / ini['sample_decode']:.2f}", detail]

    rows = [
        row("initial generation: sampling + decode", ini["sample_decode"],
            f"{ini['steps']} steps, {ini['evaluations']} evaluations, {ini['dtype']} DiT, "
            f"{ini['guidance_layout']} guidance; sampling {ini['sample']:.1f} s, decode "
            f"{ini['decode']:.1f} s ({ini['vae_decoder']})"),
        row(f"check as shipped, decoder to its cap {chk['cap']} ({chk['lines']} windows"
            + (f"; {chk['windows']} measured, scaled" if chk["extrapolated"] else "") + ")",
            chk["whole_song"], f"{chk['per_window']:.2f} s/window (encoder "
            f"{chk['encoder_per_window']:.2f} s), decoder calls {chk['decoder_calls'][0]}–"
            f"{chk['decoder_calls'][1]}/window; + Whisper load {chk['load']:.1f} s"),
        row(f"check at {a.tokens} tokens/line ({rc['windows']} windows)", rc["seconds"],
            f"{rc['per_window']:.2f} s/window (encoder {rc['encoder_per_window']:.2f} s), "
            f"decoder calls {rc['decoder_calls'][0]}–{rc['decoder_calls'][1]}/window"),
        row("one repair round", rp["seconds"],
            f"line {rp['round']['lines'] if rp['round'] else '-'}, "
            f"{rp['round']['frames'] if rp['round'] else 0} of {ini['frames']} frames "
            f"regenerated, kept {rp['round']['kept'] if rp['round'] else '-'}"),
        row("  re-sampling (edit mask)", rp["resample"], "the round minus decode and re-check"),
        row("  VAE decode", rp["decode"], f"{rp['decodes']} decode(s) of the whole song"),
        row("  re-check", rp["recheck"], f"{rp['recheck_windows']} window(s) at {a.tokens} "
            "tokens"),
    ]
    res["table"] = rows
    print(table("A 95 s song on this CPU: check and one repair round, measured side by side in "
                "this one run (random weights; ratio = seconds / the initial generation's "
                "sampling + decode)", ["what", "seconds", "ratio", "detail"], rows))
    print(f"\n{cpu_line}\nWhisper: {res['whisper']['parameters'] / 1e6:.1f} M parameters "
          f"({'tiny' if a.tiny else 'whisper-base architecture'}, random weights), "
          f"{res['whisper']['tokens']} tokens; whole run {res['seconds']:.0f} s (building the "
          f"random files {res['build_seconds']:.0f} s)")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1, default=str), encoding="utf-8")
    return 0 if rp["rounds"] == 1 and rp["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
