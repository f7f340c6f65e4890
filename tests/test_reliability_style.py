"""Style embedding files of any odd kind are refused with exit 2 before any model is loaded,
saying the shape and dtype expected (issue 14); through the real CLI on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from rhythmflow import errors
from rhythmflow.cli.main import main
from tests.reliability_support import make_files
from tests.test_cli import base_args


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("style-cli"))


def _npz(p):
    with open(p, "wb") as fh:  # np.savez would append ".npz" to a path
        np.savez(fh, emb=np.zeros((1, 512), np.float32))


ODD = {
    "npz": (_npz, "a .npz archive"),
    "empty": (lambda p: p.write_bytes(b""), "an empty file"),
    "text": (lambda p: p.write_text("0.1 0.2 0.3"), "not a .npy file"),
    "strings": (lambda p: np.save(p, np.array(["a"] * 512)), "got a <U1 array of shape [512]"),
    "ints": (lambda p: np.save(p, np.zeros((1, 512), np.int64)), "got a int64 array"),
    "complex": (lambda p: np.save(p, np.zeros((1, 512), np.complex64)), "got a complex64"),
    "shape": (lambda p: np.save(p, np.zeros((2, 512), np.float32)), "got torch.float32 [2, 512]"),
    "nan": (lambda p: np.save(p, np.full((1, 512), np.nan, np.float32)), "NaN or Inf"),
    "truncated": (lambda p: p.write_bytes(_npy_bytes()[:100]), "damaged .npy file"),
    "objects": (lambda p: np.save(p, np.array([{}], dtype=object), allow_pickle=True),
                "damaged .npy file"),
}


def _npy_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros((1, 512), np.float32))
    return buf.getvalue()


@pytest.mark.parametrize("flag", ["--style-embedding", "--negative-style"])
@pytest.mark.parametrize("kind", sorted(ODD))
def test_odd_style_files_are_usage_errors_before_loading(files, tmp_path, capsys, kind, flag):
    make, message = ODD[kind]
    bad = tmp_path / "odd.npy"
    make(bad)
    args = base_args(files, tmp_path / "o.wav", "--progress", "log")
    if flag == "--style-embedding":
        args[args.index(flag) + 1] = str(bad)
    else:
        args += [flag, str(bad)]
    assert main(args) == errors.EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err, err
    assert "[1, 512]" in err or "NaN" in err
    assert "loading" not in err and not (tmp_path / "o.wav").exists()
