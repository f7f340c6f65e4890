"""Output decisions, made once by the plan: the audio files a run writes, their format and
sample format, checked before anything is loaded.

Naming rules (documented in the README's output section): an output ``song`` (no extension) gets
the format's extension (``song.wav``, or ``song.flac`` with format flac); ``song.flac`` writes
FLAC; ``song.ogg`` writes Ogg Vorbis; an extension that names no format we write (``song.m4a``,
``take.2``) is refused, never extended to ``take.2.wav``; format flac with ``song.wav`` is refused
(the name and the format disagree) rather than silently writing ``song.flac``. A batch writes
``song_0.wav … song_{N-1}.wav``. Errors name the request field (``output``, ``format``,
``sample_format``, ``batch``); the command line maps them to its flags.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rhythmflow.errors import UsageError
from rhythmflow.files import check_writable_folder
from rhythmflow.request import FORMAT_SAMPLES

EXTENSIONS = {".wav": "wav", ".flac": "flac", ".mp3": "mp3", ".ogg": "ogg"}
SAMPLE_FORMATS = FORMAT_SAMPLES  # what each format can hold


#: the loudness a song is normalised to when the request asks for loudness normalisation
#: without a target (EBU R128 streaming level)
DEFAULT_LUFS = -14.0


@dataclass(frozen=True)
class WritePolicy:
    """How a song's audio is written (every front end writes through it): ``sample_format``,
    ``normalize`` "peak" (0 dBFS, as upstream) or "loudness" (to ``target_lufs``)."""

    sample_format: str = "int16"
    normalize: str = "peak"
    target_lufs: float = DEFAULT_LUFS

    @classmethod
    def of(cls, sample_format: str, loudness: float | None) -> WritePolicy:
        return cls(sample_format, "peak" if loudness is None else "loudness",
                   DEFAULT_LUFS if loudness is None else loudness)

    def audio_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`rhythmflow.audio.io.write_audio`."""
        return {"sample_format": self.sample_format, "normalize": self.normalize,
                "target_lufs": self.target_lufs}


def output_format(output: str | os.PathLike, fmt: str | None) -> str:
    """The format a run writes: ``fmt`` when given, else the output name's extension, else wav
    (:func:`resolve_outputs` refuses contradictions)."""
    return fmt or EXTENSIONS.get(Path(output).suffix.lower(), "wav")


def resolve_outputs(output: str | os.PathLike, fmt: str | None, sample_format: str,
                    batch: int) -> list[Path]:
    """The audio files a run writes (see the module docstring for the naming rules), after
    checking the name, the format/sample-format combination and that the folder is writable.
    Raises UsageError naming the problem and the fix."""
    output = Path(output).expanduser()
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise UsageError(f"batch must be a whole number >= 1, got {batch!r}", field="batch")
    if fmt is not None and fmt not in SAMPLE_FORMATS:
        raise UsageError(f"format {fmt}: choose one of {', '.join(SAMPLE_FORMATS)}", field="format")
    if str(output).endswith(("/", os.sep)) or output.is_dir():
        raise UsageError(f"output {output} is a folder; give a file name such as "
                         f"{output / ('song.' + (fmt or 'wav'))}", field="output")
    suffix = output.suffix.lower()
    if suffix in EXTENSIONS:
        named = EXTENSIONS[suffix]
        if fmt is not None and fmt != named:
            raise UsageError(f"output {output} names a {named} file but format is {fmt}; use "
                             f"{output.with_suffix('.' + fmt)} or leave format out",
                             field="format")
        fmt, stem = named, output.with_suffix("")
    elif suffix:
        raise UsageError(f"output {output}: {suffix} is not an audio format rhythmflow writes; "
                         f"end the name with {', '.join(EXTENSIONS)} (or give no extension)",
                         field="output")
    else:
        fmt, stem = fmt or "wav", output
    if sample_format not in SAMPLE_FORMATS["wav"]:
        raise UsageError(f"sample_format {sample_format}: choose int16, int24 or float32",
                         field="sample_format")
    if sample_format not in SAMPLE_FORMATS[fmt]:
        can = " or ".join(SAMPLE_FORMATS[fmt])
        raise UsageError(f"sample_format {sample_format} cannot be stored in {fmt} ({fmt} "
                         f"holds {can}); write a .wav file, or use sample_format "
                         f"{can.split()[0]}", field="sample_format")
    ext = "." + fmt
    names = [stem.name + ext] if batch == 1 else [f"{stem.name}_{i}{ext}" for i in range(batch)]
    paths = [stem.with_name(n) for n in names]
    for p in paths:
        for target in (p, p.with_suffix(".json")):
            if target.is_dir():
                raise UsageError(f"cannot write {target}: it is a folder; choose another output name",
                                 field="output")
    check_writable_folder(stem.parent if str(stem.parent) else Path("."))
    return paths
