"""Whisper through ``transformers``: greedy decoding of each line window.

The decoder is started with ``<|startoftranscript|><|LANG|><|transcribe|><|notimestamps|>`` and
run greedily (argmax) until ``<|endoftext|>`` or :data:`MAX_TOKENS`; the same loop serves the
pinned checkpoint and any local Whisper folder (``WhisperProcessor`` + a
``WhisperForConditionalGeneration``), so nothing depends on ``generate()``'s options.
Shapes: b - batch (1), m - mel bins, f - feature frames, t - decoder tokens, d - width.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from rhythmflow.errors import AssetError, DependencyError

log = logging.getLogger(__name__)

MAX_TOKENS = 96  # a sung line is a few dozen tokens; a runaway decode stops here
#: the pinned checkpoint's files (assets ``asr-whisper-<file stem>``), all in one folder
WHISPER_FILES = ("config.json", "generation_config.json", "model.safetensors",
                 "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
                 "vocab.json", "merges.txt", "normalizer.json", "added_tokens.json",
                 "special_tokens_map.json")


class WhisperRecognizer:
    """A Whisper model in ``folder`` on ``device``; loads on the first window."""

    def __init__(self, folder: str | os.PathLike, *, device: str = "cpu") -> None:
        self.folder, self.device = Path(folder), device
        self._model = self._processor = None

    @classmethod
    def pinned(cls, *, assets_dir=None, offline: bool | None = None,
               device: str = "cpu") -> WhisperRecognizer:
        """The pinned checkpoint (:data:`rhythmflow.assets.ASR_ASSETS`), resolved and checked."""
        from rhythmflow.assets import ASR_ASSETS, resolve

        paths = [resolve(name, assets_dir=assets_dir, offline=offline) for name in ASR_ASSETS]
        folders = {p.parent for p in paths}
        if len(folders) != 1:
            raise AssetError(f"the Whisper files lie in {len(folders)} folders "
                             f"({', '.join(map(str, sorted(folders)))}); put them in one")
        return cls(folders.pop(), device=device)

    def _load(self):
        if self._model is None:
            try:
                import torch  # noqa: F401
                from transformers import WhisperForConditionalGeneration, WhisperProcessor
            except ImportError as exc:
                raise DependencyError(f"the Whisper recogniser needs transformers ({exc}); run "
                                      "`pip install transformers`, or give asr_command") from exc
            if not (self.folder / "config.json").is_file():
                raise AssetError(f"{self.folder} holds no Whisper model (config.json missing)")
            log.info("loading Whisper from %s", self.folder)
            self._processor = WhisperProcessor.from_pretrained(str(self.folder))
            model = WhisperForConditionalGeneration.from_pretrained(str(self.folder))
            self._model = model.to(self.device).eval()
        return self._model, self._processor

    def _prompt(self, lang: str) -> list[int]:
        tok = self._processor.tokenizer
        names = ["<|startoftranscript|>", f"<|{lang}|>", "<|transcribe|>", "<|notimestamps|>"]
        ids = tok.convert_tokens_to_ids(names)
        unk = tok.unk_token_id
        return [i for i, n in zip(ids, names, strict=True)
                if i is not None and (i != unk or n == "<|startoftranscript|>")]

    def __call__(self, wav: np.ndarray, window) -> str:
        import torch

        model, processor = self._load()
        feats = processor.feature_extractor(wav, sampling_rate=16000, return_tensors="pt")
        x = feats.input_features.to(self.device, model.dtype)  # [b, m, f]
        eos = processor.tokenizer.eos_token_id
        ids = torch.tensor([self._prompt(window.lang)], device=self.device)  # [b, t]
        limit = min(MAX_TOKENS, model.config.max_target_positions - ids.shape[1])
        with torch.inference_mode():
            encoded = model.get_encoder()(x).last_hidden_state  # [b, f/2, d]
            prompt = ids.shape[1]
            for _ in range(limit):
                logits = model(encoder_outputs=(encoded,), decoder_input_ids=ids).logits
                nxt = logits[:, -1].argmax(-1, keepdim=True)  # [b, 1]
                if int(nxt) == eos:
                    break
                ids = torch.cat([ids, nxt], dim=1)
        return processor.tokenizer.decode(ids[0, prompt:].tolist(),
                                          skip_special_tokens=True).strip()
