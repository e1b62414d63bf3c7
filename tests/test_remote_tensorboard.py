"""remote.tensorboard over a real loopback sshd: TensorBoard started on the host, reached
through a paramiko port forward, and gone (server and tunnel) after stop()."""

from __future__ import annotations

import urllib.request

import pytest

from remote.tensorboard import start_tensorboard

pytest_plugins = ["tests.sshd"]


def test_tensorboard_on_an_ssh_host_is_forwarded_and_stopped(trusted, tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    (run_dir / "tb").mkdir(parents=True)
    board = start_tensorboard(trusted, str(run_dir))
    try:
        assert board.url.startswith("http://127.0.0.1:") and board.logdir == f"{run_dir}/tb"
        with urllib.request.urlopen(board.url, timeout=10) as answer:
            assert answer.status == 200 and b"TensorBoard" in answer.read()
        ps = trusted.run("pgrep -f 'tensorboard.main --logdir'", timeout=30)
        assert ps.ok, "TensorBoard runs on the host"
    finally:
        board.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(board.url, timeout=2)
    assert not trusted.run(f"pgrep -f 'tensorboard.main --logdir {run_dir}/tb'").ok
