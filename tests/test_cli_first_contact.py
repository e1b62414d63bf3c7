"""What a new user meets first: `--help`, the runs table, run ids typed short,
a run that is not there, a dropped connection."""

from __future__ import annotations

import io
import json
import re
from contextlib import contextmanager
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from emoconsole.cli import app
from remote.errors import StreamSilentError, TransportError

runner = CliRunner()


def test_help_lists_commands_in_the_order_a_user_meets_them_and_no_bool():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    commands = result.output.split("Commands:")[1]
    names = re.findall(r"^  (\w+)\s", commands, flags=re.MULTILINE)
    order = [
        "demo", "deploy", "runs", "monitor", "watch", "stop", "download", "predict", "hosts",
    ]  # fmt: skip
    assert names[: len(order)] == order
    assert "version" in names[len(order) :]


def test_subcommand_help_shows_no_bool_for_flags():
    for args in (
        ["hosts", "--help"],
        ["deploy", "--help"],
        ["demo", "--help"],
        ["predict", "--help"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output, args


def test_help_loads_no_rich():
    """Typer's rich help panels cost 0.27 s of imports (rich.markdown, pygments, ...)."""
    import json
    import subprocess
    import sys

    code = (
        "import sys, json; from emoconsole.cli import app; sys.argv=['emoconsole','--help']\n"
        "try:\n app()\nexcept SystemExit: pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'rich')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


# -- run ids: never cut, typed short -------------------------------------------------------

TWIN_A = "20261203-063417-hybrid-attention-3f9a2c"
TWIN_B = "20261203-063417-hybrid-attention-3fb104"
OTHER = "20261204-101500-slowfast-r50-77aa01"


def _write_run(runs: Path, run_id: str, model: str) -> None:
    """A finished run as `python -m trainers train` leaves it (no ledger row: not deployed)."""
    run = runs / run_id
    run.mkdir(parents=True)
    manifest = {"id": run_id, "model": model, "status": "completed", "pid": None,
                "config": {"train": {"epochs": 30}}}  # fmt: skip
    (run / "run.json").write_text(json.dumps(manifest))
    events = [
        {"seq": 1, "type": "epoch_start", "time": 1.0, "epoch": 30, "epochs": 30},
        {
            "seq": 2,
            "type": "val",
            "time": 2.0,
            "split": "val",
            "epoch": 30,
            "best": 0.61234,
            "best_epoch": 27,
            "monitor": "macro_f1",
        },
        {"seq": 3, "type": "status", "time": 3.0, "status": "completed"},
    ]
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (run / "train.log").write_text("done\n")


@pytest.fixture
def local_runs(tmp_path, monkeypatch) -> Path:
    """Three runs on the local host (./runs), two sharing a long prefix; no ledger, no
    user hosts file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EMOCONSOLE_CONFIG", str(tmp_path / "no-hosts.toml"))
    monkeypatch.setenv("EMOCONSOLE_STATE", str(tmp_path / "state"))
    for run_id in (TWIN_A, TWIN_B):
        _write_run(tmp_path / "runs", run_id, "hybrid-attention")
    _write_run(tmp_path / "runs", OTHER, "slowfast-r50")
    return tmp_path / "runs"


def test_runs_table_at_80_columns_shows_every_id_whole(local_runs):
    result = runner.invoke(app, ["runs"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    for run_id in (TWIN_A, TWIN_B, OTHER):
        (line,) = [line for line in lines if run_id in line]
        assert "completed" in line and "30/30" in line and "0.6123" in line, result.output


def test_stop_and_download_take_a_unique_prefix_of_a_listed_run(local_runs, tmp_path):
    stopped = runner.invoke(app, ["stop", "20261204"])
    assert stopped.exit_code == 0, stopped.output
    assert stopped.output.startswith(f"{OTHER} on local was not running")

    got = runner.invoke(app, ["download", TWIN_A[:-3], "--to", str(tmp_path / "dl")])
    assert got.exit_code == 0, got.output
    assert (tmp_path / "dl" / TWIN_A / "events.jsonl").is_file()


def test_an_ambiguous_prefix_names_the_candidates(local_runs):
    for command in ("stop", "monitor", "download"):
        result = runner.invoke(app, [command, "20261203-0634"])
        assert result.exit_code == 1, result.output
        first = result.output.splitlines()[0]
        assert first.startswith("error: '20261203-0634' matches several runs on local")
        assert TWIN_A in first and TWIN_B in first and OTHER not in first
        assert "Traceback" not in result.output


def test_monitor_of_no_such_run_is_one_line_and_draws_nothing(local_runs):
    result = runner.invoke(app, ["monitor", "no-such-run"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "error: no run 'no-such-run' on local",
        "hint: list runs with: emoconsole runs",
    ]


def test_a_ledger_prefix_shared_by_two_deployed_runs_is_refused(local_runs):
    from remote import ledger

    ledger.record(TWIN_A, "local", str(local_runs / TWIN_A), "hybrid-attention")
    ledger.record(TWIN_B, "gpu1", f"~/emoconsole/runs/{TWIN_B}", "hybrid-attention")
    result = runner.invoke(app, ["stop", "20261203"])
    assert result.exit_code == 1
    assert TWIN_A in result.output and TWIN_B in result.output
    # The ledger's unique prefix still names its host (gpu1 is not configured here).
    remote = runner.invoke(app, ["stop", TWIN_B[:-2]])
    assert remote.exit_code == 1 and "no host named 'gpu1'" in remote.output


def test_watch_takes_a_run_id_prefix_and_still_a_directory(local_runs):
    by_prefix = runner.invoke(app, ["watch", "20261204", "--no-log"])
    assert by_prefix.exit_code == 0, by_prefix.output
    assert "status status=completed" in by_prefix.output
    by_dir = runner.invoke(app, ["watch", f"runs/{TWIN_A}", "--no-log"])
    assert by_dir.exit_code == 0 and "status status=completed" in by_dir.output
    ambiguous = runner.invoke(app, ["watch", "20261203"])
    assert ambiguous.exit_code == 1 and TWIN_A in ambiguous.output


# -- a dropped connection, in a few words ---------------------------------------------------

WATCHER = "cd ~/emoconsole && PYTHONPATH=code/current exec python3 -m remote.watcher runs/x"


class _FlakyHost:
    """Drops the first stream with ``error``, as the SSH host does; the second ends."""

    name, python, workdir = "gpu1", "python3", "~/emoconsole"

    def __init__(self, error: Exception) -> None:
        self.error, self.calls = error, 0

    @contextmanager
    def stream(self, command, *, idle_timeout=None, env=None):
        self.calls += 1
        if self.calls == 1:

            def dropping():
                raise self.error
                yield  # a generator

            yield dropping()
        else:
            yield iter(['{"kind": "end"}'])


def _ssh_drop() -> Exception:
    """What remote.ssh raises when the channel closes under a stream."""
    try:
        try:
            raise EOFError
        except EOFError as cause:
            raise TransportError(f"gpu1: running {WATCHER!r}: connection closed") from cause
    except TransportError as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (StreamSilentError(f"no output from {WATCHER!r} for 6 s"), r"silent for \d+ s"),
        (_ssh_drop(), "connection closed"),
    ],
)
def test_connection_lost_line_names_the_host_and_why_not_the_command(error, reason):
    from emoconsole.hosts_cli import _format_connection
    from emoconsole.monitor_view import MonitorState
    from remote.watch import Backoff, ConnectionItem, follow

    host = _FlakyHost(error)
    items = list(follow(host, "runs/x", backoff=Backoff(initial=0), sleep=lambda s: None))
    lost = next(i for i in items if isinstance(i, ConnectionItem) and i.state == "lost")
    assert re.fullmatch(reason, lost.reason), lost
    assert "remote.watcher" in lost.detail  # the whole error is kept, off the user line

    line = _format_connection(lost, "gpu1")
    assert re.fullmatch(rf"connection to gpu1 lost \({reason}\); reconnecting", line), line

    state = MonitorState(run="r", host="gpu1")
    state.add(lost)
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(state.render())
    screen = console.export_text()
    assert re.search(rf"connection: lost \({reason}\); reconnecting", screen), screen
    assert "remote.watcher" not in screen
