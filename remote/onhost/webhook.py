"""The run's end, told to a webhook by the host itself: the laptop may be closed.

The guard (:mod:`remote.onhost.guard`) calls :func:`notify_end` once its run or
experiment has ended. The POST is JSON in the shape Slack's incoming webhooks
accept (``text``, and ``blocks`` for the formatted version); Discord's
``/slack``-suffixed webhooks and most chat bridges take the same body.

The URL is a credential (whoever holds a Slack webhook URL can post to the
channel), so it travels from ``hostctl launch`` to the guard in the environment
(:data:`NOTIFY_URL_ENV`), not in an argv that ``ps`` and the launch record show,
and every line that names it goes through :func:`redact`.

Failure never touches the run: a few tries with backoff, each with a timeout,
then one line in the guard's log and nothing else.

Standard library only (urllib), like the rest of :mod:`remote.onhost`.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainers.events import RunStatus
from trainers.rundir import EXPERIMENT_JSON, RUN_JSON, SUMMARY, TRAIN_LOG, tail_lines

NOTIFY_URL_ENV = "EMOCONSOLE_NOTIFY_URL"
# The endings worth a message. ``stopped`` is not one: a user (or a console) asked for it.
NOTIFY_STATUSES = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CRASHED, RunStatus.PREEMPTED}
)
ATTEMPTS = 4
TIMEOUT_S = 10.0
BACKOFF_S = 2.0  # 2, 4, 8 s between tries: a chat service's hiccup, not an outage
LOG_LINES = 10


def redact(url: str) -> str:
    """``https://hooks.slack.com/…``: where it goes, without the secret part."""
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return "(a URL)"
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def post_json(
    url: str,
    payload: dict[str, Any],
    log: Callable[[str], None],
    *,
    attempts: int = ATTEMPTS,
    timeout: float = TIMEOUT_S,
    backoff: float = BACKOFF_S,
) -> bool:
    """POST ``payload``; True once a 2xx answer came. Retries a connection error, a
    timeout, a 429 and a 5xx; a 4xx other than 429 is final (a revoked webhook)."""
    body = json.dumps(payload).encode()
    where = redact(url)
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                answer.read()
            log(f"webhook: told {where} (try {attempt})")
            return True
        except urllib.error.HTTPError as exc:
            why = f"HTTP {exc.code}"
            if exc.code != 429 and exc.code < 500:
                log(f"webhook: {where} refused the message ({why}); not retried")
                return False
        except (OSError, ValueError) as exc:  # URLError, timeouts, a reset connection
            why = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if attempt < attempts:
            log(f"webhook: {where} try {attempt} failed ({why}); again in {backoff:g} s")
            time.sleep(backoff)
            backoff *= 2
        else:
            log(f"webhook: {where} failed {attempts} times ({why}); giving up")
    return False


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def experiment_status(experiment: dict[str, Any]) -> str:
    """One status for an experiment whose process has ended, from its runs' rows: a run
    left non-terminal (or runs left pending with nothing stopping them) means the
    sweep's process died; else the worst ending, completed when every run completed."""
    statuses = [str(row.get("status")) for row in experiment.get("runs") or []]
    if statuses and all(s == RunStatus.COMPLETED for s in statuses):
        return RunStatus.COMPLETED
    for status in (RunStatus.PREEMPTED, RunStatus.STOPPED):
        if status in statuses and all(s in (status, RunStatus.COMPLETED, "pending")
                                      for s in statuses):  # fmt: skip
            return status
    ended = {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CRASHED}
    if statuses and all(s in ended for s in statuses):
        return RunStatus.CRASHED if RunStatus.CRASHED in statuses else RunStatus.FAILED
    return RunStatus.CRASHED


def final_status(run_dir: Path) -> str:
    """How the run (or experiment) in ``run_dir`` ended, its process being gone:
    run.json's terminal status, else ``crashed`` (killed without writing one)."""
    manifest = _read_json(run_dir / RUN_JSON)
    if not manifest and (run_dir / EXPERIMENT_JSON).is_file():
        return experiment_status(_read_json(run_dir / EXPERIMENT_JSON))
    status = manifest.get("status")
    try:
        return status if RunStatus(status).is_terminal() else RunStatus.CRASHED
    except ValueError:
        return RunStatus.CRASHED


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "?"
    minutes, s = divmod(int(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _metrics(summary: dict[str, Any], manifest: dict[str, Any]) -> str:
    parts = []
    progress = manifest.get("progress") if isinstance(manifest.get("progress"), dict) else {}
    best, monitor = progress.get("best"), progress.get("monitor")
    if isinstance(best, (int, float)):
        parts.append(f"best {monitor or 'score'} {best:.4f} (epoch {progress.get('best_epoch')})")
    test = summary.get("test") if isinstance(summary.get("test"), dict) else {}
    scores = [f"{k.replace('_', '-')} {test[k]:.4f}" for k in ("accuracy", "macro_f1", "uar")
              if isinstance(test.get(k), (int, float))]  # fmt: skip
    if scores:
        parts.append("test " + ", ".join(scores))
    return "; ".join(parts)


def end_message(run_dir: Path, status: str, host: str | None = None) -> dict[str, Any]:
    """The message for a run or experiment that ended with ``status``: what ended
    (id, model), where, how, its best and test scores when it has them, how long it
    took, and for a crash or a failure its last log lines."""
    manifest = _read_json(run_dir / RUN_JSON)
    experiment = {} if manifest else _read_json(run_dir / EXPERIMENT_JSON)
    what = "experiment" if experiment else "run"
    model = manifest.get("model") or experiment.get("model") or "?"
    where = host or manifest.get("host") or socket.gethostname()
    started = manifest.get("started_at") or experiment.get("created_at")
    ended = manifest.get("ended_at") or time.time()
    took = _duration(ended - started if isinstance(started, (int, float)) else None)
    head = f"{what} {run_dir.name} ({model}) on {where}: {status} after {took}"
    lines = [head]
    if experiment:
        rows = experiment.get("runs") or []
        done = sum(1 for r in rows if r.get("status") == RunStatus.COMPLETED)
        lines.append(f"{done}/{len(rows)} runs completed")
    else:
        metrics = _metrics(_read_json(run_dir / SUMMARY), manifest)
        if metrics:
            lines.append(metrics)
    log: list[str] = []
    if status in (RunStatus.CRASHED, RunStatus.FAILED) and not experiment:
        log = tail_lines(run_dir / TRAIN_LOG, LOG_LINES)
    text = "\n".join(lines)
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    if log:
        text += "\nlast log lines:\n" + "\n".join(log)
        code = "\n".join(log)[-2900:]  # a section's text is at most 3000 characters
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{code}```"}})
    return {"text": text, "blocks": blocks}


def notify_end(
    url: str, run_dir: Path, status: str, log: Callable[[str], None], **retry: Any
) -> bool:
    """Tell ``url`` that the run in ``run_dir`` ended with ``status`` (any status: the
    caller decides which endings are worth it); False when it could not."""
    try:
        payload = end_message(run_dir, status)
    except Exception as exc:  # a half-written run directory must not cost the message
        payload = {"text": f"{run_dir.name} on {socket.gethostname()}: {status} ({exc})"}
    return post_json(url, payload, log, **retry)
