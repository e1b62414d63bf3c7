"""A run queue per host: runs wait for GPU slots and start in order, run by hostctl.

The queued processes here are a stand-in run (STAND_IN, named as such): a few lines
of Python that write a run.json as the trainer does and end when the test opens
their gate. The queue schedules processes and never looks inside them, and three
real trainings one after another cost about 45 s of CPU here (15 s each, torch's
import most of it); the one real ``emoconsole deploy`` below goes through the
trainer's config check and is then stopped while it waits, so it never trains.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from remote.onhost.queue import RunQueue, cuda_devices

pytest_plugins = ["tests.sshd"]

# A stand-in run: run.json as the trainer writes it (running, then completed), the
# CUDA_VISIBLE_DEVICES it was given, and its end when the file GATE appears.
STAND_IN = """
import json, os, socket, sys, time
run_dir, gate = sys.argv[1], sys.argv[2]
os.makedirs(run_dir, exist_ok=True)
def write(**fields):
    tmp = os.path.join(run_dir, ".run.json.tmp")
    with open(tmp, "w") as fh:
        json.dump(fields, fh)
    os.replace(tmp, os.path.join(run_dir, "run.json"))
row = {"id": os.path.basename(run_dir), "model": "stand-in", "pid": os.getpid(),
       "host": socket.gethostname(), "started_at": time.time(),
       "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}
write(status="running", **row)
while not os.path.exists(gate):
    time.sleep(0.05)
write(status="completed", ended_at=time.time(), **row)
"""


def stand_in(run_dir: Path, gate: Path) -> list[str]:
    return [sys.executable, "-c", STAND_IN, str(run_dir), str(gate)]


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def manifest(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return None


def completed(run_dir: Path) -> dict | None:
    data = manifest(run_dir)
    return data if data and data["status"] == "completed" else None


# -- hostctl on this machine: slot accounting -----------------------------------------------


def hostctl(*args: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "remote.hostctl", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_slots_a_two_gpu_run_waits_for_both_and_nobody_overtakes_it(tmp_path):
    runs, gates = tmp_path / "runs", tmp_path / "gates"
    gates.mkdir()

    def launch(run_id: str, gpus: int) -> tuple[int, dict]:
        argv = stand_in(runs / run_id, gates / run_id)
        return hostctl("launch", "--runs", str(runs), "--run-id", run_id, "--slots", "2",
                       "--gpus", str(gpus), "--", *argv)  # fmt: skip

    def listed() -> dict[str, dict]:
        return {row["id"]: row for row in hostctl("list", str(runs))[1]["runs"]}

    code, a = launch("a", 1)
    assert code == 0 and a["queued"] is False and a["pid"] and a["slot_ids"] == [0]
    # One slot is free, but b wants two: it waits, and c (one GPU) waits behind it.
    assert launch("b", 2)[1] == {"run_id": "b", "launched": True, "queued": True, "place": 1,
                                 "pid": None}  # fmt: skip
    assert launch("c", 1)[1]["place"] == 2
    # A retry of a queued launch (a lost connection) queues nothing twice.
    assert launch("b", 2)[1] == {"run_id": "b", "launched": False, "queued": True, "place": 1}
    code, too_big = launch("d", 3)
    assert code == 1 and "wants 3 GPUs and this host has 2 slots" in too_big["error"]
    rows = listed()
    assert (rows["b"]["status"], rows["b"]["place"]) == ("queued", 1)
    assert (rows["c"]["status"], rows["c"]["place"]) == ("queued", 2)
    assert rows["a"]["status"] == "running" and "d" not in rows
    assert manifest(runs / "a")["cuda"] == cuda_devices([0])

    (gates / "a").touch()
    b = wait_for(lambda: manifest(runs / "b"), what="b to start once a ended")
    assert b["cuda"] == cuda_devices([0, 1])
    assert listed()["c"]["status"] == "queued"  # b holds both slots
    (gates / "b").touch()
    c = wait_for(lambda: manifest(runs / "c"), what="c to start once b ended")
    assert c["cuda"] == cuda_devices([0])
    (gates / "c").touch()
    ends = {name: wait_for(lambda n=name: completed(runs / n)) for name in "abc"}
    assert ends["a"]["ended_at"] <= ends["b"]["started_at"]
    assert ends["b"]["ended_at"] <= ends["c"]["started_at"]
    # Nothing waits: the runner is gone; a later launch starts one of its own.
    wait_for(lambda: not RunQueue(runs).runner_alive(), what="the runner to exit")


def test_slots_default_to_the_gpus_nvidia_smi_lists(tmp_path, monkeypatch):
    from remote.onhost.hostctl import resolve_slots

    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi: no GPU, no queue
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert resolve_slots("auto") is None and resolve_slots(None) is None
    assert resolve_slots("3") == 3 and cuda_devices([1, 2]) == "1,2"
    # A loopback stand-in for nvidia-smi: its `-L` listing of two GPUs, as the real one prints.
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        '#!/bin/sh\n[ "$1" = "-L" ] || exit 9\n'
        'echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa)"\n'
        'echo "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-bbbb)"\n'
    )
    smi.chmod(0o755)
    assert resolve_slots("auto") == 2
    assert cuda_devices([1]) == "1" and cuda_devices([0, 1]) == "0,1"
    assert cuda_devices([0, 2, 3]) == "0,1"  # four slots on two GPUs: runs share them
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")  # the host's own restriction holds
    assert cuda_devices([1]) == "6"


def test_slots_in_hosts_toml_are_checked(tmp_path):
    from remote.config import load_hosts
    from remote.errors import ConfigError

    path = tmp_path / "hosts.toml"
    path.write_text('[hosts.box]\nhost = "box.example.org"\nslots = 2\n')
    assert load_hosts(path, tmp_path / "none.toml")["box"].slots == 2
    for bad, said in (("0", "hosts.box.slots = 0"), ('"2"', "hosts.box.slots must be a int")):
        path.write_text(f'[hosts.box]\nhost = "box.example.org"\nslots = {bad}\n')
        with pytest.raises(ConfigError, match=said):
            load_hosts(path, tmp_path / "none.toml")


def test_the_runs_table_and_the_dashboard_show_the_place():
    from emoconsole.dashboard.state import to_row
    from emoconsole.runs_cli import status_text

    row = {"id": "r", "model": "m", "status": "queued", "place": 2}
    assert status_text(row) == to_row("box", row).status_text == "queued (place 2)"
    assert status_text({**row, "status": "running", "place": None}) == "running"


# -- a loopback SSH host with one slot, through the console ---------------------------------


def console(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "emoconsole", *args],
        cwd=cwd, env=os.environ.copy(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_three_runs_on_a_one_slot_ssh_host_start_one_after_another(
    sshd, ssh_env, tmp_path, monkeypatch
):
    from remote.deploy import launch_command, ship_code
    from remote.hosts import get_host
    from remote.layout import resolve_layout

    ssh_env.trust(sshd)
    monkeypatch.setenv("EMOCONSOLE_STATE", str(tmp_path / "state"))
    work, gates = tmp_path / "remote-work", tmp_path / "gates"
    gates.mkdir()
    (ssh_env.config_dir / "emoconsole" / "hosts.toml").write_text(
        f'[hosts.box]\nhost = "127.0.0.1"\nport = {sshd.port}\nuser = "{sshd.user}"\n'
        f'identity_file = "{sshd.client_key}"\npython = "{sys.executable}"\n'
        f'workdir = "{work}"\nslots = 1\n'
    )
    host = get_host("box")
    runs = work / "runs"
    names = ["first", "second", "third"]
    try:
        assert host.slots == 1  # type: ignore[attr-defined]
        layout = resolve_layout(host)
        code_dir = ship_code(host, layout)
        launches = [
            launch_command(host, layout, code_dir, sys.executable, name,
                           stand_in(runs / name, gates / name), slots=host.slots)  # type: ignore[attr-defined]
            for name in names
        ]  # fmt: skip
        assert [(x.queued, x.place) for x in launches] == [(False, None), (True, 1), (True, 2)]
        assert launches[0].pid and launches[1].pid is None
    finally:
        host.close()  # the console goes away; the queue must not notice

    # A real deploy behind them: it waits (place 3) instead of waiting for a run.json.
    data = tmp_path / "data"
    data.mkdir()
    deployed = console("deploy", "hybrid-attention", "--host", "box", "--remote-data",
                       str(data), "--env", "host", cwd=tmp_path)  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr
    fourth = deployed.stdout.strip()
    assert f"run {fourth} queued on box, place 3" in deployed.stderr

    # A new console process sees the same queue, with each run's place.
    listed = console("runs", "--host", "box", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    assert rows["first"]["status"] == "running"
    assert [(rows[n]["status"], rows[n]["place"]) for n in ("second", "third", fourth)] == [
        ("queued", 1), ("queued", 2), ("queued", 3)
    ]  # fmt: skip
    assert rows[fourth]["model"] == "hybrid-attention"

    # monitor of a waiting run says so and waits (it would follow the run once started).
    monitor = subprocess.Popen(
        [sys.executable, "-m", "emoconsole", "monitor", "third", "--host", "box"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        said = monitor.stderr.readline()  # type: ignore[union-attr]
        assert said.strip() == "third: queued on box, place 2; waiting for a slot", said
        assert monitor.poll() is None
    finally:
        monitor.kill()
        monitor.wait(30)

    stopped = console("stop", fourth, "--host", "box", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert "removed from the queue; it never started" in stopped.stdout
    assert RunQueue(runs).find(fourth) is None and RunQueue(runs).place("second") == 1

    try:
        for name in names:
            (gates / name).touch()
        ends = [wait_for(lambda n=name: completed(runs / n), what=f"{name} to complete")
                for name in names]  # fmt: skip
    finally:
        for name in names:  # whatever failed above, no stand-in outlives the test
            (gates / name).touch()
    for earlier, later in itertools.pairwise(ends):
        assert earlier["ended_at"] <= later["started_at"]  # one at a time, in order
    assert not (runs / fourth).exists() and not (runs / ".launches" / fourth).exists()


# -- the dashboard's run view of a waiting run ----------------------------------------------


def test_the_run_view_waits_in_the_queue_then_follows_and_stop_takes_a_run_out(
    tmp_path, monkeypatch
):
    """Entries made with the queue's own API on the local host (one slot): the run view of
    a waiting run says its place as it changes, follows the run once it started, and its
    stop key takes a waiting run out of the queue."""
    from emoconsole.dashboard.app import Dashboard
    from emoconsole.dashboard.dialogs import ConfirmDialog
    from emoconsole.dashboard.run_view import RunScreen
    from remote.onhost.queue import STARTED, Entry
    from tests.test_dashboard import FAST, make_run, sync
    from tests.test_dashboard import wait_for as pilot_wait

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EMOCONSOLE_CONFIG", str(tmp_path / "no-hosts.toml"))
    runs = tmp_path / "runs"
    queue = RunQueue(runs)
    procs: list[subprocess.Popen] = []

    def sleeper(run_id: str) -> list[str]:
        # Its command line names the run, as hostctl's check of a run's pid wants.
        return [sys.executable, "-c", "import time; time.sleep(60)", run_id]

    def start(entry: Entry, _ids: list[int]) -> dict:
        procs.append(subprocess.Popen(entry.argv, start_new_session=True))
        return {"pid": procs[-1].pid}

    def entry(run_id: str) -> Entry:
        return Entry(run_id=run_id, argv=sleeper(run_id), run_dir=str(runs / run_id))

    ahead, target, later = "q-ahead", "20260101-120000-hybrid-attention-q001", "q-later"
    holder = subprocess.Popen(sleeper("q-holder"), start_new_session=True)
    procs.append(holder)
    with queue.locked():
        queue.set_slots(1)
        queue.add(Entry(run_id="q-holder", argv=holder.args, state=STARTED,  # type: ignore[arg-type]
                        started_at=time.time(), slot_ids=[0], pid=holder.pid))  # fmt: skip
        queue.add(entry(ahead))
        queue.add(entry(target))

    def header(app) -> str:
        from textual.css.query import NoMatches

        try:
            return str(app.screen.query_one("#run-header").render())
        except NoMatches:  # a screen just pushed, not composed yet
            return ""

    @sync
    async def drive() -> None:
        app = Dashboard(open_run=("local", target), **FAST)
        async with app.run_test(size=(160, 40)) as pilot:
            await pilot_wait(pilot, lambda: "place 2" in header(app), 20, "place 2")
            assert "queued on local, place 2: waiting for a slot" in header(app)
            assert queue.remove_queued(ahead)
            await pilot_wait(pilot, lambda: "place 1" in header(app), 20, "place 1")
            # The slot frees; the queue starts the run; the view attaches once it writes.
            holder.kill()
            holder.wait()
            with queue.locked():
                assert list(queue.step(start)) == [target]
            # Started, no run.json yet: the view waits for it, as for any run starting.
            await pilot_wait(pilot, lambda: "queued" not in header(app), 20, "out of the queue")
            assert "waiting for run" in header(app) or "starting" in header(app)
            events = make_run(runs, target, procs[-1].pid, epochs_done=2)
            try:
                await pilot_wait(pilot, lambda: "running" in header(app), 20, "running")
                assert app.screen.state.epoch == 2
            finally:
                events.close()

            # A run waiting behind it: the view's stop takes it out of the queue.
            with queue.locked():
                queue.add(entry(later))
            app.push_screen(app.run_screen("local", later))
            await pilot_wait(pilot, lambda: "place 1" in header(app), 20, "later's place")
            await pilot.press("x")
            await pilot_wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), 10, "confirm")
            assert "from the queue" in app.screen.question
            await pilot.press("y")
            await pilot_wait(
                pilot,
                lambda: isinstance(app.screen, RunScreen) and "never started" in header(app),
                20,
                "removed",
            )
            assert queue.find(later) is None and queue.find(target) is not None

            # A sweep waiting in line: once started it writes experiment.json, never a
            # run.json, and the view says to open one of its runs.
            with queue.locked():
                queue.add(entry("q-sweep"))
            app.push_screen(app.run_screen("local", "q-sweep"))
            await pilot_wait(pilot, lambda: "place 1" in header(app), 20, "the sweep's place")
            procs[1].kill()  # the target's process ends: its slot frees
            procs[1].wait()
            with queue.locked():
                assert list(queue.step(start)) == ["q-sweep"]
            (runs / "q-sweep").mkdir()
            plan = {"id": "q-sweep", "runs": [{"dir": "c00_s42"}]}
            (runs / "q-sweep" / "experiment.json").write_text(json.dumps(plan))
            await pilot_wait(pilot, lambda: "an experiment" in header(app), 20, "experiment")
            assert "open one of its runs (q-sweep:<run-dir>)" in header(app)

    try:
        drive()
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
