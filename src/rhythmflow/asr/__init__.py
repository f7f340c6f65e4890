"""Speech recognisers for the lyric check (:mod:`rhythmflow.lyrics.check`): each is a callable
``(wav16k float32 [n], Window) -> transcript``. Importing this package is cheap.

* :class:`~rhythmflow.asr.command.CommandRecognizer`: any program (``--asr-command``), given the
  window as a 16 kHz mono wav file; its stdout is the transcript.
* :class:`~rhythmflow.asr.whisper.WhisperRecognizer`: Whisper through ``transformers``, from a
  local folder or the pinned checkpoint (asset ``asr-whisper-*``, ``rhythmflow fetch
  --with-asr``).
"""

from __future__ import annotations

import os


def recognizer_for(kind: str, *, command: str | None = None,
                   model: str | os.PathLike | None = None,
                   assets_dir: str | os.PathLike | None = None, offline: bool | None = None,
                   device: str = "cpu"):
    """The recogniser a plan's review names (``command``, ``model`` or ``whisper``)."""
    if kind == "command":
        from rhythmflow.asr.command import CommandRecognizer

        assert command is not None
        return CommandRecognizer(command)
    from rhythmflow.asr.whisper import WhisperRecognizer

    if kind == "model":
        assert model is not None
        return WhisperRecognizer(model, device=device)
    return WhisperRecognizer.pinned(assets_dir=assets_dir, offline=offline, device=device)


__all__ = ["recognizer_for"]
