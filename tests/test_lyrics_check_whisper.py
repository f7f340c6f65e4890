"""The default recogniser, Whisper through transformers, on a tiny random Whisper built here from
a WhisperConfig and saved to disk (no download): load, window, transcribe, score — through the
Python API and ``rhythmflow check --asr-model``."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")

from rhythmflow.asr import recognizer_for  # noqa: E402
from rhythmflow.asr.whisper import WhisperRecognizer  # noqa: E402
from rhythmflow.cli.main import main  # noqa: E402
from rhythmflow.lyrics.check import SungLine, Window, check_audio  # noqa: E402

SPECIALS = ["<|startoftranscript|>", "<|en|>", "<|zh|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]


def build_tiny_whisper(folder, *, say: str | None = None, seed: int = 0):
    """A 1-layer Whisper with a byte-level tokenizer in ``folder``. ``say``: a token the decoder
    always predicts (its final norm outputs that token's embedding), else random weights."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from rhythmflow.testing import save_whisper_processor

    tok = save_whisper_processor(folder, SPECIALS)
    sot = tok.convert_tokens_to_ids("<|startoftranscript|>")
    cfg = WhisperConfig(vocab_size=len(tok), num_mel_bins=80, encoder_layers=1, decoder_layers=1,
                        d_model=16, encoder_attention_heads=2, decoder_attention_heads=2,
                        encoder_ffn_dim=32, decoder_ffn_dim=32, max_source_positions=1500,
                        max_target_positions=64, decoder_start_token_id=sot,
                        eos_token_id=tok.eos_token_id,  # pad: a row that is not end-of-text
                        pad_token_id=tok.convert_tokens_to_ids("<|nocaptions|>"),
                        bos_token_id=tok.eos_token_id, tie_word_embeddings=say is None)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(cfg)
    if say is not None:
        with torch.no_grad():
            target = tok.convert_tokens_to_ids(say)
            norm = model.model.decoder.layer_norm  # a constant hidden state of ones …
            norm.weight.zero_()
            norm.bias.fill_(1.0)
            model.proj_out.weight.zero_()  # … that only the target's logit sees
            model.proj_out.weight[target] = 1.0
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def whisper_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("whisper")
    return {"random": build_tiny_whisper(root / "random"),
            "silent": build_tiny_whisper(root / "silent", say="<|endoftext|>"),
            "h": build_tiny_whisper(root / "h", say="h")}


LINES = [SungLine(1, "Hello little song", 21, 35), SungLine(2, "Hi", 120, 125)]


def test_whisper_loads_windows_transcribes_and_scores(whisper_dirs):
    audio = np.random.default_rng(0).standard_normal((2, 44100 * 9)).astype(np.float32) * 0.1
    silent = check_audio(audio, 44100, LINES, WhisperRecognizer(whisper_dirs["silent"]))
    assert [(c.heard, c.verdict, c.per) for c in silent.lines] == [("", "missing", 1.0)] * 2
    h = WhisperRecognizer(whisper_dirs["h"])
    heard = h(np.zeros(16000, dtype=np.float32), Window(1, 0.0, 1.0, "en"))
    assert heard and set(heard) == {"h"}  # greedy until MAX_TOKENS / the decoder's limit
    rnd = recognizer_for("model", model=whisper_dirs["random"])
    report = check_audio(audio, 44100, LINES, rnd)
    again = check_audio(audio, 44100, LINES, rnd)
    assert report == again and len(report.lines) == 2  # deterministic greedy decoding
    assert all(0.0 <= c.per <= 1.0 and c.verdict in ("sung", "garbled", "missing")
               for c in report.lines)


def test_check_command_with_a_local_whisper(whisper_dirs, tmp_path, capsys):
    import soundfile as sf

    song, lrc = tmp_path / "s.wav", tmp_path / "s.lrc"
    sf.write(song, np.zeros((44100 * 8, 2), dtype=np.float32), 44100)
    lrc.write_text("[00:01.00]Hello little song\n[00:05.00]Hi\n", encoding="utf-8")
    assert main(["check", str(song), "--lrc", str(lrc), "--asr-model",
                 str(whisper_dirs["silent"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [x["verdict"] for x in report["lines"]] == ["missing", "missing"]
    assert report["per"] == 1.0


def test_a_folder_without_whisper_is_an_asset_error(tmp_path):
    from rhythmflow.errors import AssetError

    with pytest.raises(AssetError, match="no Whisper model"):
        WhisperRecognizer(tmp_path)(np.zeros(1600, dtype=np.float32), Window(1, 0, 1, "en"))
