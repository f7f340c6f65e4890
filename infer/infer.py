"""The original DiffRhythm command line, as a thin shim over ``rhythmflow generate``.

    python -m infer.infer --lrc-path lyrics.lrc --ref-prompt "pop music" --steps 8 \
        --audio-length 95 --timeout 1800 --output-dir out

Differences from the original, all deliberate: ``--steps`` counts solver steps (the original's
``steps=32`` grid was 31 steps); the song is written to ``<output-dir>/output.wav`` (batch:
output_0.wav …) with a JSON sidecar; on timeout or Ctrl-C the state is saved for ``--resume``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, "", "infer"):  # running from a source checkout without installing
    _src = Path(__file__).resolve().parents[1] / "src"
    if _src.is_dir() and str(_src) not in sys.path:
        sys.path.insert(0, str(_src))



def _models_by_repo() -> dict[str, str]:
    from rhythmflow.specs import MODELS

    return {spec.repo: name for name, spec in MODELS.items()}


def to_rhythmflow_args(argv: list[str] | None = None) -> list[str]:
    p = argparse.ArgumentParser(prog="python -m infer.infer",
                                description="DiffRhythm-compatible inference (rhythmflow)")
    p.add_argument("--lrc-path")
    p.add_argument("--ref-prompt")
    p.add_argument("--ref-audio-path")
    p.add_argument("--audio-length", type=float, default=95)
    p.add_argument("--repo-id", help="official model repo id (default: by --audio-length)")
    p.add_argument("--output-dir", default="infer/example/output")
    p.add_argument("--chunked", action="store_true", help="chunked VAE decoding (always on)")
    p.add_argument("--batch-infer-num", type=int, default=1)
    p.add_argument("--edit", action="store_true")
    p.add_argument("--ref-song")
    p.add_argument("--edit-segments")
    p.add_argument("--steps", type=int)
    p.add_argument("--cfg-strength", type=float)
    p.add_argument("--timeout", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--device")
    a, extra = p.parse_known_args(argv)
    out = ["generate", "--duration", f"{a.audio_length:g}", "--batch", str(a.batch_infer_num),
           "-o", str(Path(a.output_dir) / "output.wav")]
    if a.repo_id:
        by_repo = _models_by_repo()
        if a.repo_id not in by_repo:
            p.error(f"--repo-id {a.repo_id}: choose one of {', '.join(by_repo)}")
        out += ["--model", by_repo[a.repo_id]]
    pairs = [("--lrc", a.lrc_path), ("--style-prompt", a.ref_prompt),
             ("--style-audio", a.ref_audio_path), ("--ref-song", a.ref_song),
             ("--edit-segments", a.edit_segments), ("--steps", a.steps),
             ("--cfg-strength", a.cfg_strength), ("--timeout", a.timeout), ("--seed", a.seed),
             ("--device", a.device)]
    out += [x for flag, v in pairs if v is not None for x in (flag, str(v))]
    if a.edit:
        out.append("--edit")
    return out + extra  # anything else goes to rhythmflow generate as is


def main(argv: list[str] | None = None) -> int:
    """Run ``rhythmflow generate``; the output folder is created for the run and removed again
    (with the parents created for it) when the run fails and leaves it empty."""
    from rhythmflow.cli.main import main as rhythmflow_main

    args = to_rhythmflow_args(argv)
    folder = Path(args[args.index("-o") + 1]).parent
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    code = 1
    try:
        code = rhythmflow_main(args)
    finally:
        if code != 0:
            for p in created:  # innermost first; a folder holding a saved state is kept
                try:
                    p.rmdir()
                except OSError:
                    break
    return code


if __name__ == "__main__":
    sys.exit(main())
