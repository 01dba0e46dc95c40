"""The command-line runner refuses bad input before any work starts, with one line naming it."""

import pytest

from jobs.run import main


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--task", "minecraft"], {}, "unknown task 'minecraft'"),
        (["--profile", "huge"], {}, "known profiles"),
        (["--profile", "micro"], {"ETO_ITERATIONS": "many"}, "ETO_ITERATIONS='many' is not a whole number"),
        (
            ["--profile", "paper", "--base-model", "/models/llama"],
            {"ETO_ITERATIONS": "1"},
            "set ETO_ITERATIONS=3",
        ),
        (["--profile", "micro", "--base-model", "/models/llama"], {}, "use a profile for pretrained models"),
        (["--profile", "small"], {}, "is for a pretrained model, but base_model is 'tiny'"),
    ],
)
def test_bad_input_fails_at_once(argv, env, message, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ETO_HOME", str(tmp_path / "home"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "home").exists()  # nothing was started
