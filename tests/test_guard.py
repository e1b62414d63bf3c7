"""The run's guard: IMDSv2 notices (against the loopback stand-in, tests/imds.py) and
the shutdown timer stop a real training run launched by ``hostctl launch``, which
ends ``preempted`` with its checkpoint saved; boto3 takes its credentials from the
metadata service the guard points it at."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from remote.onhost.guard import GuardLog
from remote.onhost.hostctl import main as hostctl_main
from remote.onhost.imds import ImdsClient, ImdsError, Notice, NoticePoller
from remote.onhost.proc import pid_alive
from trainers.events import NOTICE_FILE, RunStatus, read_events, read_notice, stop_status

if TYPE_CHECKING:
    from tests.imds import ImdsStandIn

pytest_plugins = ["tests.imds"]

# -- the IMDSv2 client against the stand-in ----------------------------------------------------


def test_no_notice_then_a_spot_notice(imds: ImdsStandIn):
    client = ImdsClient(imds.url)
    assert client.notice() is None
    at = imds.announce("terminate", in_s=120)
    notice = client.spot_notice()
    assert notice == Notice("spot", "terminate", float(int(at)))
    assert client.notice() == notice
    assert client.tokens_fetched == 1  # one token for all the GETs
    assert imds.refused == []


def test_maintenance_counts_only_when_due(imds: ImdsStandIn):
    client = ImdsClient(imds.url)
    imds.schedule("system-reboot", in_s=3 * 86400)  # days ahead: no reason to stop yet
    imds.schedule("instance-stop", in_s=60, state="canceled")
    assert client.maintenance_notice(lead=300) is None
    at = imds.schedule("instance-retirement", in_s=200)
    notice = client.notice(lead=300)
    assert notice is not None and notice.source == "maintenance"
    assert notice.action == "instance-retirement" and abs(notice.time - at) < 1.5


def test_the_stand_in_refuses_a_get_without_a_token_and_the_client_gets_a_new_one(imds):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(imds.url + "/latest/meta-data/spot/instance-action", timeout=2)
    assert err.value.code == 401
    client = ImdsClient(imds.url)
    assert client.notice() is None
    imds.expire_tokens()  # the service forgot the token (restarted): 401, then a new one
    assert client.notice() is None
    assert client.tokens_fetched == 2


def test_the_token_is_refreshed_before_its_ttl(imds: ImdsStandIn):
    now = [0.0]
    client = ImdsClient(imds.url, token_ttl=600, clock=lambda: now[0])
    client.notice()
    now[0] = 600 - 61  # a minute before expiry (600 s TTL: margin 60 s)
    client.notice()
    assert client.tokens_fetched == 1
    now[0] = 600 - 59
    client.notice()
    assert client.tokens_fetched == 2


def test_an_unreachable_imds_is_reported_once_not_raised():
    client = ImdsClient("http://127.0.0.1:9", timeout=0.5)  # discard port: refused
    with pytest.raises(ImdsError, match=r"127\.0\.0\.1:9"):
        client.notice()
    lines: list[str] = []
    poller = NoticePoller(client, lines.append)
    assert [poller.poll() for _ in range(3)] == [None, None, None]
    assert len(lines) == 1 and "unreachable" in lines[0]


def test_boto3_takes_the_instance_role_from_the_imds_the_guard_names(imds, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        HOME=str(tmp_path),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url,  # what the guard sets with --imds
    )
    code = (
        "import boto3; c = boto3.Session().get_credentials(); "
        "print(c.method, c.get_frozen_credentials().access_key)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == ["iam-role", imds.access_key], out.stderr[-2000:]
    assert ("PUT", "/latest/api/token") in imds.requests and imds.refused == []


# -- the notice's contract with the engine ---------------------------------------------------


def test_a_notice_older_than_the_process_is_not_its_preemption(tmp_path):
    assert stop_status(tmp_path) == (RunStatus.STOPPED, {})
    notice = {"source": "spot", "action": "terminate", "time": 200.0, "noticed_at": 100.0}
    (tmp_path / NOTICE_FILE).write_text(json.dumps(notice))
    status, fields = stop_status(tmp_path, since=50.0)
    assert status == RunStatus.PREEMPTED and status.is_terminal()
    assert fields == {"source": "spot", "action": "terminate", "notice_time": 200.0,
                      "noticed_at": 100.0}  # fmt: skip
    assert read_notice(tmp_path, since=150.0) is None  # the previous process's notice


def test_the_engine_records_preempted_once_then_a_plain_stop_after_resume(tmp_path):
    """The notice turns the stop of the process it was signalled to into ``preempted``;
    the same file, left in the run directory, does not do it to the resumed process."""
    from tests.test_engine import StopAt, make
    from trainers.engine.trainer import StopRequested, Trainer

    def fit_stopping_at(trainer: Trainer, global_step: int, resume: bool) -> None:
        setup = Trainer._setup

        def with_stop(self: Trainer) -> None:
            setup(self)
            self.logger.sinks.append(StopAt(self, global_step))

        trainer._setup = with_stop.__get__(trainer)
        trainer.fit(resume=resume)

    entry, cfg, run = make(tmp_path, "run")
    trainer = Trainer(entry, cfg, run)
    now = time.time()
    notice = {"source": "spot", "action": "terminate", "time": now + 120,
              "noticed_at": now, "signalled_at": now, "pid": os.getpid()}  # fmt: skip
    (run.path / NOTICE_FILE).write_text(json.dumps(notice))
    with pytest.raises(StopRequested):
        fit_stopping_at(trainer, 2, resume=False)
    with pytest.raises(StopRequested):
        fit_stopping_at(Trainer(entry, cfg, run), 4, resume=True)  # the notice is stale now
    statuses = [e for e in read_events(run.events) if e["type"] == "status"]
    assert [e["status"] for e in statuses if e["status"] in ("preempted", "resumed", "stopped")] \
        == ["preempted", "resumed", "stopped"]  # fmt: skip
    preempted = next(e for e in statuses if e["status"] == "preempted")
    assert preempted["source"] == "spot" and preempted["notice_time"] == notice["time"]
    assert statuses[-1]["status"] == "stopped"
    manifest = run.read_manifest()
    assert manifest["status"] == "stopped" and len(manifest["preemptions"]) == 1


def test_guard_log_holds_lines_until_the_run_directory_exists(tmp_path):
    log = GuardLog(tmp_path / "run", echo=None)
    log("before")
    (tmp_path / "run").mkdir()
    log("after")
    lines = (tmp_path / "run" / "guard.log").read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == ["before", "after"]


def test_onhost_guard_imports_the_standard_library_only():
    """Like tests/test_layering.py's on-host check: boto3 comes only with --storage."""
    from tests.test_layering import loaded_after

    extra = loaded_after("import remote.onhost.guard") - loaded_after("pass")
    outside = {m.split(".")[0] for m in extra} - set(sys.stdlib_module_names)
    assert outside <= {"remote", "trainers", "psutil"}, outside


# -- a run stopped by its guard (a real training run: tests/test_recovery.py) -----------------

RUN = "guarded"


def _wait(what: str, check, timeout: float, runs: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            logs = {p.name: p.read_text()[-3000:] for p in (runs / ".launches" / RUN).glob("*.*")}
            pytest.fail(f"timed out waiting for {what}; {json.dumps(logs, indent=1)}")
        time.sleep(0.2)


def _assert_preempted(run_dir: Path, answer: dict, source: str, action: str) -> dict:
    _wait("the guard to exit", lambda: not pid_alive(answer["guard_pid"]), 90, run_dir.parent)
    assert not pid_alive(answer["pid"])
    events = read_events(run_dir / "events.jsonl")
    final = events[-1]
    assert final["type"] == "status" and final["status"] == "preempted", final
    assert final["source"] == source and final["action"] == action
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "preempted"
    assert [p["source"] for p in manifest["preemptions"]] == [source]
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    notice = json.loads((run_dir / NOTICE_FILE).read_text())
    assert notice["source"] == source and notice["action"] == action
    assert notice["noticed_at"] <= notice["stopped_at"] and notice["signal"] == "TERM"
    assert notice["checkpoint_at"] <= notice["stopped_at"] + 1
    assert final["notice_time"] == notice["time"] and final["noticed_at"] == notice["noticed_at"]
    log = (run_dir / "guard.log").read_text()
    assert "notice:" in log and "guard done" in log
    return notice


# A stand-in for the trainer where the engine is not what is tested: it keeps the engine's
# contract with the guard (stop handlers installed when run.json says running; the stop
# status by trainers.events' stop_status; a checkpoint on the way out) in a fraction of a
# second of CPU. With "late" it gets up only once the guard has written notice.json, as a
# trainer still importing torch when the notice comes.
FAKE_TRAINER = """
import os, signal, sys, time
from pathlib import Path
from trainers.events import NOTICE_FILE, EventType, EventWriter, stop_status
from trainers.rundir import write_json_atomic
run, created, stop = Path(sys.argv[1]), time.time(), []
(run / "checkpoints").mkdir(parents=True)
while sys.argv[2:] == ["late"] and not (run / NOTICE_FILE).exists():
    time.sleep(0.05)
signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
ready = {"status": "running", "pid": os.getpid(), "ready_at": time.time()}
write_json_atomic(run / "run.json", ready)
events = EventWriter(run / "events.jsonl")
events.write(EventType.STATUS, status="running")
while not stop:
    time.sleep(0.05)
(run / "checkpoints" / "last.pt").write_bytes(b"saved at the next step")
status, notice = stop_status(run, created)
events.write(EventType.STATUS, status=status, signal=stop[0], **notice)
write_json_atomic(run / "run.json", {**ready, "status": status,
                                     "preemptions": [notice] if notice else []})
sys.exit(128 + stop[0])
"""


def test_the_shutdown_timer_preempts_a_run_even_before_it_is_up(tmp_path):
    """``--shutdown-at now+61 --shutdown-lead 60``: the notice comes a second after the
    launch, before the trainer is up; the guard waits for its stop handlers."""
    runs = tmp_path / "runs"
    shutdown_at = time.time() + 61
    out = subprocess.run(
        [sys.executable, "-m", "remote.hostctl", "launch", "--runs", str(runs),
         "--run-id", RUN, "--shutdown-at", str(shutdown_at), "--shutdown-lead", "60",
         "--poll", "0.5", "--", sys.executable, "-c", FAKE_TRAINER, str(runs / RUN), "late"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    answer = json.loads(out.stdout.splitlines()[-1])
    notice = _assert_preempted(runs / RUN, answer, "max_hours", "shutdown")
    assert notice["time"] == shutdown_at
    assert shutdown_at - 60 <= notice["noticed_at"] < shutdown_at - 55  # not before the lead
    ready_at = json.loads((runs / RUN / "run.json").read_text())["ready_at"]
    assert notice["noticed_at"] < ready_at <= notice["signalled_at"]


def test_hostctl_launch_hands_its_options_to_the_guard(tmp_path, capsys):
    """Without --storage/--imds/--shutdown-at no guard; with them, its argv has them, and
    it watches --run-dir (a resume's launch id is not the run's directory name)."""
    runs = tmp_path / "runs"
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)", str(runs / "g")]
    assert hostctl_main(["launch", "--runs", str(runs), "--run-id", "plain", "--", *sleeper]) == 0
    assert "guard_pid" not in json.loads(capsys.readouterr().out)
    args = ["--imds", "http://127.0.0.1:9", "--poll", "0.3", "--shutdown-at", "1e10"]
    code = hostctl_main(["launch", "--runs", str(runs), "--run-id", "g.resume-1",
                         "--run-dir", str(runs / "g"), *args, "--", *sleeper])  # fmt: skip
    answer = json.loads(capsys.readouterr().out)
    assert code == 0 and answer["guard_pid"]
    argv = json.loads((runs / ".launches" / "g.resume-1" / "guard_argv.json").read_text())
    assert argv[1:5] == ["-m", "remote.onhost.guard", str(runs / "g"), "--pid"]
    assert argv[6:] == ["--imds", "http://127.0.0.1:9", "--poll", "0.3",
                        "--shutdown-at", "10000000000.0"]  # fmt: skip
    # The run stopped by hand: the guard sees the trainer gone and leaves by itself.
    for launch in ("plain", "g.resume-1"):
        pid = int((runs / ".launches" / launch / "pid").read_text())
        os.kill(pid, 15)
    deadline = time.monotonic() + 30
    while pid_alive(answer["guard_pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not pid_alive(answer["guard_pid"])
    with pytest.raises(SystemExit):  # refused before anything starts
        hostctl_main(["launch", "--runs", str(runs), "--run-id", "x", "--storage", "nope",
                      "--", *sleeper])  # fmt: skip
    assert not (runs / ".launches" / "x").exists()
