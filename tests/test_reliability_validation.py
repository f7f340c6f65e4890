"""Numbers that cannot work are refused with exit 2 before any model is loaded (issue 14):
--seed range, --batch, --timeout / --time-budget finite and positive, --loudness finite, ... —
through the real CLI on the tiny model files."""

from __future__ import annotations

import pytest

from rhythmflow import errors
from rhythmflow.cli.main import main
from tests.reliability_support import make_files
from tests.test_cli import base_args


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("validation-cli"))


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--seed", str(2**64), "--seed: must be between 0 and 18446744073709551615"),
    ("--seed", "-1", "--seed: must be between 0 and"),
    ("--batch", "0", "--batch: must be between 1 and"),
    ("--batch", "-3", "--batch: must be between 1 and"),
    ("--timeout", "nan", "--timeout: must be a finite number"),
    ("--timeout", "inf", "--timeout: must be a finite number"),
    ("--timeout", "-1", "--timeout: must be > 0"),
    ("--time-budget", "0", "--time-budget: must be > 0"),
    ("--time-budget", "nan", "--time-budget: must be a finite number"),
    ("--time-budget", "inf", "--time-budget: must be a finite number"),
    ("--loudness", "nan", "--loudness: must be a finite number"),
    ("--loudness", "inf", "--loudness: must be a finite number"),
    ("--loudness", "12", "--loudness: must be between -70 and 0"),
    ("--cfg-strength", "nan", "--cfg-strength: must be a finite number"),
    ("--cfg-strength", "-1", "--cfg-strength: must be between"),
    ("--steps", "-2", "--steps: must be between 1 and"),
    ("--duration", "nan", "--duration: must be a finite number"),
    ("--threads", "0", "--threads: must be between 1 and"),
])
def test_bad_numbers_exit_2_before_loading(files, tmp_path, capsys, flag, value, message):
    args = base_args(files, tmp_path / "o.wav", "--progress", "log")
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    assert main(args) == errors.EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and "load" not in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_guidance_interval_out_of_range(files, tmp_path, capsys):
    args = base_args(files, tmp_path / "o.wav", "--guidance-interval", "0.5", "nan")
    assert main(args) == errors.EXIT_USAGE
    assert "--guidance-interval: must satisfy 0 <= lo <= hi <= 1" in capsys.readouterr().err


def test_largest_seed_still_runs(files, tmp_path):
    out = tmp_path / "o.wav"
    assert main(base_args(files, out, "--progress", "none", "--steps", "1", "--seed",
                          str(2**64 - 2), "--batch", "2")) == 0
    assert (tmp_path / "o_1.wav").is_file()
