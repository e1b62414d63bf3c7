"""The run's guard: the process beside a training run that keeps it from dying with
its instance.

    python -m remote.onhost.guard RUN_DIR --pid PID [--storage s3://B/P]
        [--endpoint-url U] [--region R] [--imds URL] [--poll 5] [--push-every 60]
        [--shutdown-at EPOCH] [--shutdown-lead 300] [--grace 60]
        (and $EMOCONSOLE_NOTIFY_URL, or --notify-url URL)

``hostctl launch`` starts it right after the trainer, in its own session (the
console may go away; the guard stays). It

- pushes the run directory to ``--storage`` while the run trains (the Uploader of
  :mod:`remote.storage`: checkpoints as soon as they are written, the rest every
  ``--push-every`` seconds);
- asks the instance metadata service (``--imds``, IMDSv2) every ``--poll`` seconds
  for a spot interruption or a scheduled maintenance, and watches the clock for
  the profile's own shutdown (``--shutdown-at``, acting ``--shutdown-lead``
  seconds before it);
- on a notice, writes ``RUN_DIR/notice.json`` and only then stops the trainer the
  way ``hostctl stop`` does (SIGTERM: the engine checkpoints at the next step and,
  finding the notice, records ``preempted``; SIGKILL only past ``--grace``), pushes
  the last checkpoint and the run directory, writes the timings into notice.json
  and exits;
- when the trainer ends by itself (completed, failed, stopped by a user), pushes
  one last time and exits;
- with a webhook URL (``hostctl launch --notify-url``, handed over in the
  environment so no argv shows it), POSTs the ending (completed, failed, crashed,
  preempted; not a user's stop) in Slack's incoming-webhook format
  (:mod:`remote.onhost.webhook`). A trainer killed outright (SIGKILL, the OOM
  killer) leaves run.json saying running: the guard sees its pid gone and reports
  it crashed, with its last log lines. RUN_DIR may be an experiment directory (a
  sweep's process): its experiment.json's runs say how it ended.

The guard never appends to events.jsonl (the trainer is its single writer); what
it did goes to ``RUN_DIR/guard.log`` and notice.json. With ``--imds`` it sets
``AWS_EC2_METADATA_SERVICE_ENDPOINT`` in its own environment, so boto3 takes the
instance role's credentials from that same service (the real one on EC2, the
loopback stand-in in tests); no AWS_* variable reaches it from the console.

Standard library only, like the rest of :mod:`remote.onhost`, except boto3, which
:mod:`remote.storage` imports when ``--storage`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from remote.onhost.hostctl import stop_process
from remote.onhost.imds import ImdsClient, Notice, NoticePoller
from remote.onhost.proc import pid_alive, process_start_time
from remote.onhost.webhook import NOTIFY_STATUSES, NOTIFY_URL_ENV, final_status, notify_end, redact
from trainers.events import NOTICE_FILE
from trainers.rundir import RUN_JSON, write_json_atomic

GUARD_LOG = "guard.log"
POLL_S = 5.0  # SkyPilot's managed jobs poll as often; a notice gives 120 s
# The trainer's pid is checked more often than IMDS is asked (a local check, no request):
# the run's end reaches the webhook within about this long.
PID_CHECK_S = 1.0
PUSH_EVERY_S = 60.0
SHUTDOWN_LEAD_S = 300.0
# SIGTERM to SIGKILL: the engine checkpoints at its next step, which on the slowest
# model takes seconds; what is left of the two minutes goes to the upload.
GRACE_S = 60.0
# The longest a notice waits for a trainer still starting to install its stop handlers.
READY_WAIT_S = 30.0
# How long a final push may take when nothing is about to end the instance.
FINAL_PUSH_S = 600.0
IMDS_ENDPOINT_ENV = "AWS_EC2_METADATA_SERVICE_ENDPOINT"


@dataclass
class GuardOptions:
    run_dir: Path
    pid: int
    storage: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    imds: str | None = None
    poll: float = POLL_S
    push_every: float = PUSH_EVERY_S
    shutdown_at: float | None = None
    shutdown_lead: float = SHUTDOWN_LEAD_S
    grace: float = GRACE_S
    notify_url: str | None = None  # a webhook told of the run's end (a secret: see redact)


class GuardLog:
    """Timestamped lines to ``RUN_DIR/guard.log`` and stderr. The run directory appears
    only once the trainer has created it (it refuses one that exists), so lines
    written before that are held and written first."""

    def __init__(self, run_dir: Path, echo: IO[str] | None = sys.stderr) -> None:
        self.path = run_dir / GUARD_LOG
        self.echo = echo
        self._held: list[str] = []

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n"
        if self.echo is not None:
            self.echo.write(line)
            self.echo.flush()
        self._held.append(line)
        if self.path.parent.is_dir():
            with contextlib.suppress(OSError), open(self.path, "a", encoding="utf-8") as fh:
                fh.writelines(self._held)
                self._held.clear()


class Guard:
    """One run's guard; :meth:`run` returns the process's exit code."""

    def __init__(self, options: GuardOptions, log: GuardLog | None = None) -> None:
        self.o = options
        self.log = log or GuardLog(options.run_dir)
        self.uploader: Any = None  # remote.storage.Uploader, once the run directory exists
        self.poller: NoticePoller | None = None
        self.signalled: int | None = None  # a signal asked the guard itself to end
        self._storage_url: Any = None  # remote.storage.StorageUrl, parsed at start
        self._born = process_start_time(options.pid)
        self._last_storage_error: str | None = None
        self._next_poll = 0.0  # time.monotonic() of the next IMDS poll

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        o = self.o
        self.log(
            f"guarding pid {o.pid} of {o.run_dir}: storage {o.storage or 'none'}, "
            f"imds {o.imds or 'none'} every {o.poll:g} s, "
            f"shutdown at {_when(o.shutdown_at)} (lead {o.shutdown_lead:g} s), "
            f"webhook {redact(o.notify_url) if o.notify_url else 'none'}"
        )
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        if o.imds:
            # boto3's instance-role credentials come from the same service (botocore reads it).
            os.environ[IMDS_ENDPOINT_ENV] = o.imds
            self.poller = NoticePoller(ImdsClient(o.imds), self.log, lead=o.shutdown_lead)
        if o.storage:
            try:
                self._storage_url = _parse_storage(o.storage)
            except Exception as exc:  # remote.storage's StorageError: say so, guard on
                self.log(f"--storage: {exc}; the run is NOT pushed anywhere")
                o.storage = None
        while True:
            if self.uploader is None and o.storage and self._run_dir_ready():
                self._start_uploader()
            if not self._trainer_alive():
                return self._trainer_ended()
            if self.signalled is not None:
                self.log(f"guard got signal {self.signalled}; pushing once more and leaving")
                self._flush(60.0)
                return 0
            notice = self._notice()
            if notice is not None:
                return self._act(notice)
            time.sleep(self._sleep_s())

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signalled = signum

    def _sleep_s(self) -> float:
        """Until the next pid check or poll, or the shutdown timer's moment if that is sooner."""
        wait = min(self.o.poll, PID_CHECK_S)
        if self.o.shutdown_at is not None:
            due = self.o.shutdown_at - self.o.shutdown_lead - time.time()
            wait = min(wait, max(due, 0.0))
        return max(wait, 0.05)

    def _trainer_alive(self) -> bool:
        """The guarded process still runs (a pid reused by another process does not)."""
        if not pid_alive(self.o.pid):
            return False
        born = process_start_time(self.o.pid)
        return self._born is None or born is None or abs(born - self._born) < 1.0

    def _run_dir_ready(self) -> bool:
        return (self.o.run_dir / RUN_JSON).is_file()

    def _notice(self) -> Notice | None:
        o = self.o
        if o.shutdown_at is not None and time.time() >= o.shutdown_at - o.shutdown_lead:
            return Notice("max_hours", "shutdown", o.shutdown_at)
        if self.poller is None or time.monotonic() < self._next_poll:
            return None
        self._next_poll = time.monotonic() + o.poll
        return self.poller.poll()

    # -- the two endings --------------------------------------------------------------------

    def _act(self, notice: Notice) -> int:
        """notice.json, then stop the trainer as ``hostctl stop`` does, then push."""
        o = self.o
        noticed_at = time.time()
        record: dict[str, Any] = {**notice.to_json(), "noticed_at": noticed_at, "pid": o.pid}
        self._write_notice(record)
        left = notice.time - noticed_at
        self.log(
            f"notice: {notice.source} {notice.action} at {_when(notice.time)} "
            f"({left:.0f} s from now); stopping pid {o.pid}"
        )
        self._wait_until_stoppable(min(READY_WAIT_S, max(left / 4, 0.0)))
        # Stamped just before the signal: the trainer honours a notice signalled after it
        # started (trainers.events.read_notice), not one left by an earlier process.
        record["signalled_at"] = time.time()
        self._write_notice(record)
        stopped = stop_process(o.run_dir, o.pid, o.grace)
        record["stopped_at"] = time.time()
        record["signal"] = stopped.get("signal")
        record["status"] = stopped.get("status")
        ckpt = o.run_dir / "checkpoints" / "last.pt"
        with contextlib.suppress(OSError):
            record["checkpoint_at"] = ckpt.stat().st_mtime
        self.log(
            f"trainer stopped by SIG{stopped.get('signal')} after "
            f"{record['stopped_at'] - noticed_at:.1f} s, status {stopped.get('status')}, "
            f"checkpoint {'written' if stopped.get('last_ckpt') else 'MISSING'}"
        )
        self._write_notice(record)  # the stop's timings, before a push that may be cut off
        if o.storage:
            # What remains before the instance goes, and at least a minute to try.
            record["pushed"] = self._flush(max(notice.time - time.time(), 60.0), last=False)
            record["pushed_at"] = time.time()
            self._write_notice(record)
            self._flush(30.0)  # notice.json itself, with pushed_at in it
        # After the push (the instance's last minutes go to the run's files first). A
        # trainer that missed the notice says "stopped"; the instance is still going.
        status = final_status(o.run_dir)
        self._notify(status if status in NOTIFY_STATUSES else "preempted")
        self.log("guard done")
        return 0

    def _wait_until_stoppable(self, limit: float) -> None:
        """Until the trainer has its stop handlers (run.json says running), at most
        ``limit`` s. Before that, SIGTERM kills it outright, saving nothing and
        recording nothing; a notice that comes while it still imports torch (a fresh
        launch, a resume) is worth a short wait so the run ends ``preempted``."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and self._trainer_alive():
            if _read_status(self.o.run_dir) == "running":
                return
            time.sleep(0.2)

    def _trainer_ended(self) -> int:
        status = _read_status(self.o.run_dir)
        self.log(f"trainer pid {self.o.pid} ended (status {status}); pushing once more")
        ending = final_status(self.o.run_dir)
        if ending in NOTIFY_STATUSES:
            self._notify(ending)  # before the push, which may take minutes
        if self.o.storage and self.uploader is None and self._run_dir_ready():
            self._start_uploader()
        self._flush(FINAL_PUSH_S)
        self.log("guard done")
        return 0

    def _write_notice(self, record: dict[str, Any]) -> None:
        path = self.o.run_dir / NOTICE_FILE
        if not path.parent.is_dir():
            return  # the trainer has not created it yet; written once it is up (_act)
        try:
            write_json_atomic(path, record)
        except OSError as exc:
            # Without notice.json the trainer records "stopped": the run is still saved.
            self.log(f"could not write {path}: {exc}; the run will say stopped, not preempted")

    def _notify(self, status: str) -> None:
        if self.o.notify_url:
            notify_end(self.o.notify_url, self.o.run_dir, status, self.log)

    # -- storage ----------------------------------------------------------------------------

    def _start_uploader(self) -> None:
        from remote.storage import Uploader, s3_client

        o = self.o
        self.uploader = Uploader(
            o.run_dir,
            self._storage_url,
            lambda: s3_client(o.endpoint_url, o.region),
            interval=o.push_every,
            on_state=self._storage_state,
        )
        self.uploader.start()
        self.log(f"pushing {o.run_dir} to {o.storage} (checkpoints at once, the rest every "
                 f"{o.push_every:g} s)")  # fmt: skip

    def _storage_state(self, state: dict[str, Any]) -> None:
        """Each push attempt's outcome: failures are logged when they start, change or end
        (the Uploader retries by itself; state.json is what the console reads)."""
        error = None if state.get("ok") else str(state.get("error"))
        if error != self._last_storage_error:
            if error is None:
                self.log(f"storage: pushing again after {self._last_storage_error}")
            else:
                self.log(f"storage: push failed ({state.get('failures')} in a row): {error}")
            self._last_storage_error = error

    def _flush(self, timeout: float, last: bool = True) -> bool:
        """Push everything now (the Uploader retries within ``timeout``); the uploader
        stops after the ``last`` one."""
        if self.uploader is None:
            return False
        t0 = time.time()
        try:
            ok = bool(self.uploader.flush(timeout))
        finally:
            if last:
                self.uploader.stop()
                self.uploader = None
        what = "final push" if last else "push"
        self.log(f"{what} {'done' if ok else 'NOT complete'} in {time.time() - t0:.1f} s")
        return ok


def _parse_storage(text: str) -> Any:
    from remote.storage import StorageUrl

    return StorageUrl.parse(text, "--storage")


def _read_status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / RUN_JSON).read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def _when(t: float | None) -> str:
    if t is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


# -- entry point ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> GuardOptions:
    parser = argparse.ArgumentParser(prog="python -m remote.onhost.guard")
    parser.add_argument("run_dir", type=Path, help="the run directory (may not exist yet)")
    parser.add_argument("--pid", type=int, required=True, help="the trainer's pid")
    parser.add_argument("--storage", default=None, help="s3://bucket/prefix to push to")
    parser.add_argument("--endpoint-url", default=None, help="S3 endpoint (a test server)")
    parser.add_argument("--region", default=None, help="the bucket's region")
    parser.add_argument("--imds", default=None, help="instance metadata service to poll")
    parser.add_argument("--poll", type=float, default=POLL_S, help="seconds between polls")
    parser.add_argument("--push-every", type=float, default=PUSH_EVERY_S)
    parser.add_argument("--shutdown-at", type=float, default=None, help="Unix seconds")
    parser.add_argument("--shutdown-lead", type=float, default=SHUTDOWN_LEAD_S)
    parser.add_argument("--grace", type=float, default=GRACE_S, help="SIGKILL after this")
    parser.add_argument(
        "--notify-url",
        default=None,
        help=f"webhook told of the run's end (better: ${NOTIFY_URL_ENV}, which ps does not show)",
    )
    args = parser.parse_args(argv)
    for name in ("poll", "push_every", "grace"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: must be > 0")
    if args.shutdown_lead < 0:
        parser.error(f"--shutdown-lead {args.shutdown_lead}: must be >= 0")
    return GuardOptions(
        run_dir=args.run_dir.expanduser().resolve(),
        pid=args.pid,
        storage=args.storage,
        endpoint_url=args.endpoint_url,
        region=args.region,
        imds=args.imds,
        poll=args.poll,
        push_every=args.push_every,
        shutdown_at=args.shutdown_at,
        shutdown_lead=args.shutdown_lead,
        grace=args.grace,
        notify_url=args.notify_url or os.environ.get(NOTIFY_URL_ENV) or None,
    )


def main(argv: list[str] | None = None) -> int:
    return Guard(parse_args(argv)).run()


if __name__ == "__main__":
    sys.exit(main())
