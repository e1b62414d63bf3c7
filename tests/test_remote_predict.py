"""remote.predict without a model: the shipped copy is removed when the host's
command fails, and a host without the code is told to deploy. (The predictions
themselves, here and over SSH, are checked against trainers predict in
tests/test_predict.py, on its trained run.)"""

from __future__ import annotations

import pytest

from remote.local import LocalHost
from remote.predict import PredictError, predict_on_host


@pytest.mark.parametrize(
    ("stderr", "match"),
    [
        ("error: boom", r"box: trainers predict failed \(exit 1\): boom"),
        ("/usr/bin/python3: No module named trainers", r"no emoconsole code in .*work"),
    ],
)
def test_a_failed_prediction_removes_the_shipped_inputs(tmp_path, monkeypatch, stderr, match):
    python = tmp_path / "python"
    # Runs in the workdir: lists what was shipped, then fails as trainers predict would.
    python.write_text(
        f"#!/bin/sh\nfind predict -type f > ../shipped\necho '{stderr}' >&2\nexit 1\n"
    )
    python.chmod(0o755)
    (tmp_path / "run").mkdir()
    (tmp_path / "clips" / "sub").mkdir(parents=True)
    (tmp_path / "clips" / "sub" / "a.mp4").write_bytes(b"x")
    (tmp_path / "b.wav").write_bytes(b"y")
    monkeypatch.chdir(tmp_path)
    host = LocalHost("box", python=str(python), workdir=str(tmp_path / "work"))
    rows = predict_on_host(host, str(tmp_path / "run"), ["clips", "b.wav", "gone.mp4"])
    first = next(rows)  # a missing input is reported here, before the host is asked
    assert (first.input, first.key, first.error) == (
        "gone.mp4",
        "gone",
        "no such file or directory",
    )
    with pytest.raises(PredictError, match=match) as err:
        next(rows)
    assert ("deploy to box first" in (err.value.hint or "")) == ("No module" in stderr)
    shipped = sorted(p.split("/", 2)[2] for p in (tmp_path / "shipped").read_text().split())
    assert shipped == ["0/clips/sub/a.mp4", "1/b.wav"]  # relative names kept
    assert list((tmp_path / "work" / "predict").iterdir()) == []
