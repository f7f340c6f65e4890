"""A recogniser program: ``--asr-command "CMD ... {wav} ..."`` run once per line window.

The template is split into words with :func:`shlex.split` first and the placeholders are filled
in each word afterwards, so a file name with spaces stays one argument and nothing goes through
a shell (write ``sh -c '...'`` in the template where one is wanted). Placeholders: ``{wav}`` (a
16 kHz mono 16-bit wav of the window), ``{start}``/``{end}`` (seconds in the song, 3 decimals),
``{line}`` (1-based line of the song's ``.lrc``), ``{lang}`` (``en`` or ``zh``). The transcript
is the program's stdout (UTF-8); a non-zero exit or a timeout is an error naming the command.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from rhythmflow.errors import UsageError

log = logging.getLogger(__name__)

TIMEOUT = 600.0  # seconds one window may take


class CommandRecognizer:
    """Runs ``template`` on each window (module docstring)."""

    def __init__(self, template: str, *, timeout: float = TIMEOUT) -> None:
        self.template, self.words, self.timeout = template, shlex.split(template), timeout
        if not any("{wav}" in w for w in self.words):
            raise UsageError(f"asr_command: {template!r} never names {{wav}}",
                             field="asr_command")

    def __call__(self, wav: np.ndarray, window) -> str:
        import soundfile as sf

        from rhythmflow.lyrics.check import ASR_SAMPLE_RATE

        with tempfile.TemporaryDirectory(prefix="rhythmflow-asr-") as folder:
            path = Path(folder) / f"line{window.line}.wav"
            sf.write(str(path), wav, ASR_SAMPLE_RATE, subtype="PCM_16")
            values = {"wav": str(path), "start": f"{window.start:.3f}",
                      "end": f"{window.end:.3f}", "line": str(window.line),
                      "lang": window.lang}
            argv = [w.format(**values) for w in self.words]
            log.debug("asr: %s", shlex.join(argv))
            try:
                done = subprocess.run(argv, capture_output=True, timeout=self.timeout,
                                      check=False)
            except FileNotFoundError:
                raise UsageError(f"asr_command: program {argv[0]!r} not found; give its full "
                                 "path", field="asr_command") from None
            except subprocess.TimeoutExpired:
                raise UsageError(f"asr_command: {shlex.join(argv)} ran over {self.timeout:g} s "
                                 f"on line {window.line}", field="asr_command") from None
        if done.returncode != 0:
            err = done.stderr.decode("utf-8", "replace").strip()[-500:]
            raise UsageError(f"asr_command: {shlex.join(argv)} exited {done.returncode} on line "
                             f"{window.line}: {err or 'no message'}", field="asr_command")
        return done.stdout.decode("utf-8", "replace").strip()
