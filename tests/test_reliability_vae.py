"""A VAE file that is not DiffRhythm's (other latent width, other hop length) is refused when it
is loaded, by a tiny probe decode — never after minutes of sampling (issue 14). Real CLI, real
TorchScript files."""

from __future__ import annotations

import pytest

from rhythmflow import errors
from rhythmflow.cli.main import main
from rhythmflow.testing import TinyVAE, _script
from tests.reliability_support import make_files
from tests.test_cli import base_args


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("vae-cli"))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"latent_dim": 32}, "expects another latent width"),
    ({"hop": 1024}, "makes 1024 audio samples per latent frame, not 2048"),
])
def test_cli_refuses_another_vae_at_load_time(files, tmp_path, capsys, kwargs, message):
    other = tmp_path / "other_vae.pt"
    _script(TinyVAE(**kwargs).eval()).save(str(other))
    args = base_args(files, tmp_path / "o.wav", "--progress", "log")
    args[args.index("--vae") + 1] = str(other)
    assert main(args) == errors.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{other} is not the DiffRhythm VAE" in err and message in err and "--vae" in err
    assert "sample:" not in err and "Traceback" not in err
    assert not (tmp_path / "o.wav").exists()
