"""Polyphone disambiguation with DiffRhythm/Amphion's BERT classifier (ONNX, CPU).

The model reads ``[CLS]`` followed by one vocabulary id per character of the normalised segment
(upstream passes the characters straight to ``convert_tokens_to_ids``, so no WordPiece splitting
happens; characters missing from ``vocab.txt`` become ``[UNK]``). Its output has one row of 391
logits per character; the reading is the argmax over *all* classes, mapped through
``polydict.json`` (class i → key ``str(i + 1)``), e.g. ``"了{le5}"``. One segment is run once
and its logits are cached, because only the row of the asked character differs between calls.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rhythmflow.errors import AssetError, LyricsError
from rhythmflow.lyrics.g2p.chinese._deps import require
from rhythmflow.lyrics.resources import DEFAULT_ASSETS, LyricsAssets

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PolyphonePrediction:
    """The model's decision for one character: label ``"X{pinyin}"``, runner-up, logit margin."""

    label: str
    runner_up: str
    margin: float

    @property
    def pinyin(self) -> str:
        """The tone-numbered pinyin inside the braces, e.g. "le5" for "了{le5}"."""
        return self.label[self.label.index("{") + 1 : -1]


@dataclass(frozen=True)
class _Model:
    session: Any  # onnxruntime.InferenceSession
    vocab: dict[str, int]
    labels: tuple[str, ...]
    max_positions: int

    def token_ids(self, text: str) -> np.ndarray:
        unk = self.vocab["[UNK]"]
        ids = [self.vocab["[CLS]"]] + [self.vocab.get(char, unk) for char in text]
        return np.asarray([ids], dtype=np.int32)  # (1, 1 + chars)


def _read_vocab(path: Path) -> dict[str, int]:
    with open(path, encoding="utf-8") as lines:  # BERT vocab: the line number is the id
        vocab = {line.rstrip("\n"): index for index, line in enumerate(lines)}
    for token in ("[CLS]", "[UNK]"):
        if token not in vocab:
            raise AssetError(f"{path} has no {token} entry; it is not the polyphone BERT vocab")
    return vocab


def _read_labels(path: Path) -> tuple[str, ...]:
    with open(path, encoding="utf-8") as fp:
        by_key = json.load(fp)
    try:
        return tuple(by_key[str(i + 1)] for i in range(len(by_key)))
    except KeyError as exc:
        raise AssetError(
            f"{path}: class keys must be '1'..'{len(by_key)}' (missing {exc})"
        ) from None


@functools.cache
def _load(onnx_path: Path, vocab_path: Path, labels_path: Path, config_path: Path) -> _Model:
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(
        str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    with open(config_path, encoding="utf-8") as fp:
        max_positions = int(json.load(fp).get("max_position_embeddings", 512))
    labels = _read_labels(labels_path)
    classes = session.get_outputs()[0].shape[-1]
    if isinstance(classes, int) and classes != len(labels):
        raise AssetError(
            f"{onnx_path} predicts {classes} classes but {labels_path} names {len(labels)}; "
            f"the polyphone files do not belong together — fetch them again"
        )
    logger.debug("polyphone BERT loaded from %s", onnx_path)
    return _Model(session, _read_vocab(vocab_path), labels, max_positions)


def _model(assets: LyricsAssets) -> _Model:
    return _load(assets.path("zh-poly-onnx"), assets.path("zh-poly-vocab"),
                 assets.path("zh-polydict"), assets.path("zh-poly-config"))


@functools.lru_cache(maxsize=256)
def _logits(text: str, assets: LyricsAssets) -> np.ndarray:
    model = _model(assets)
    if len(text) + 1 > model.max_positions:
        raise LyricsError(
            f"Chinese lyric segment of {len(text)} characters is too long for the polyphone "
            f"model (at most {model.max_positions - 1}); split the line: {text[:30]!r}…"
        )
    (out,) = model.session.run(["outputs"], {"input_ids": model.token_ids(text)})
    logits = np.asarray(out[0], dtype=np.float32)  # (chars, classes)
    logits.setflags(write=False)
    return logits


def predictor(assets: LyricsAssets = DEFAULT_ASSETS):
    """``predict`` reading the model files of ``assets``."""
    return functools.partial(predict, assets=assets)


def predict(text: str, index: int, assets: LyricsAssets = DEFAULT_ASSETS) -> PolyphonePrediction:
    """Reading of ``text[index]`` in the context of the whole normalised segment ``text``.

    The argmax runs over all classes, so in principle another character's label can win, as
    upstream. Raises LyricsError if ``index`` is outside ``text``; AssetError / DependencyError
    if the model files or onnxruntime are missing.
    """
    if not 0 <= index < len(text):
        raise LyricsError(f"polyphone index {index} outside the segment {text!r}")
    row = _logits(text, assets)[index]
    best = int(np.argmax(row))
    masked = row.copy()
    masked[best] = -np.inf
    second = int(np.argmax(masked))
    labels = _model(assets).labels
    return PolyphonePrediction(labels[best], labels[second], float(row[best] - row[second]))
