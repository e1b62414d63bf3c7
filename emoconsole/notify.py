"""Telling the person at the console that a run ended: the terminal bell and a desktop
notification, while the dashboard or ``emoconsole monitor`` is open.

The host tells a webhook itself (:mod:`remote.onhost.webhook`, ``notify_url`` in
hosts.toml), which reaches a closed laptop; this is the console's half, for the
person in front of it.

Which endings: ``completed``, ``failed``, ``crashed`` and ``preempted``, the same
four the host's webhook reports. Not ``stopped``: a user (usually at this very
console) asked for it.

Once per run per transition, and only for what happens while the console is open:
a run that had ended before it opened is history, not news. The dashboard knows
that from its first listing of each host (:class:`ListingEndings`); ``monitor``
replays a run's events from the start, so it counts an ending only after it has
seen the run's process alive (:class:`StreamEnding`).

The desktop notification is ``notify-send`` (Linux) or ``osascript`` (macOS) when
found on PATH, started and not waited for; a missing tool, or one that fails, is
skipped without a word: the bell and the screen still say it.
``EMOCONSOLE_NOTIFY=off`` turns both off (a shared terminal, a test run).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

# The endings worth a message, the same on the console as in the host's webhook.
from remote.onhost.webhook import NOTIFY_STATUSES as NOTIFY_STATUSES

OFF_ENV = "EMOCONSOLE_NOTIFY"
TITLE = "emoconsole"


def enabled() -> bool:
    return os.environ.get(OFF_ENV, "").lower() not in ("off", "0", "no", "false")


def desktop_command(
    title: str,
    body: str,
    which: Callable[[str], str | None] = shutil.which,
    platform: str = sys.platform,
) -> list[str] | None:
    """The command that shows a desktop notification here, or None without one."""
    if platform == "darwin":
        tool = which("osascript")
        if tool:
            # AppleScript strings take JSON's escapes for quotes, backslashes and newlines.
            quoted = [json.dumps(text, ensure_ascii=False) for text in (body, title)]
            return [tool, "-e", f"display notification {quoted[0]} with title {quoted[1]}"]
        return None
    tool = which("notify-send")
    return [tool, "--app-name", TITLE, title, body] if tool else None


def notify_desktop(title: str, body: str) -> bool:
    """Start the desktop notification; never waits for it, never raises. True when a
    tool was started."""
    argv = desktop_command(title, body)
    if argv is None:
        return False
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
    except OSError:
        return False
    # Reaped in the background: no zombie, and the caller (a UI thread) never waits.
    threading.Thread(target=proc.wait, name="notify-send", daemon=True).start()
    return True


def describe_ending(run: str, host: str, status: str, row: dict[str, Any] | None = None) -> str:
    """One line: which run, where, how it ended, its best score when known."""
    text = f"{run} on {host}: {status}"
    row = row or {}
    best = row.get("best")
    if isinstance(best, (int, float)):
        text += f" (best {row.get('monitor') or 'score'} {best:.4f})"
    return text


def announce(text: str, bell: Callable[[], None]) -> None:
    """The bell and the desktop notification for one ending; never raises."""
    if not enabled():
        return
    with contextlib.suppress(Exception):  # a terminal gone must not take the console along
        bell()
    notify_desktop(TITLE, text)


class ListingEndings:
    """The runs table's view: each host's listing compared with the one before.

    A host's first listing is the baseline (nothing announced); after it, a run whose
    status became one of :data:`NOTIFY_STATUSES` is announced once, and so is a run
    that first appears already ended (it started and ended between two refreshes)."""

    def __init__(self) -> None:
        self._status: dict[tuple[str, str], str | None] = {}
        self._listed: set[str] = set()

    def update(self, host: str, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows of ``host``'s new listing that ended since its last one."""
        baseline = host not in self._listed
        self._listed.add(host)
        ended = []
        for row in rows:
            key = (host, str(row.get("id")))
            status = row.get("status")
            seen = key in self._status
            before = self._status.get(key)
            self._status[key] = status
            if baseline or status not in NOTIFY_STATUSES or (seen and before == status):
                continue
            ended.append(row)
        return ended


class StreamEnding:
    """``monitor``'s view of one run's stream (which replays its events from the start):
    its ending counts only once the run's process was seen alive (a system sample
    saying so), so a run that ended before the console opened rings nothing."""

    def __init__(self) -> None:
        self.armed = False
        self.status: str | None = None

    def observe(self, sample_alive: bool | None, status: str | None) -> bool:
        """After each stream item: whether ``status`` is a new ending worth telling."""
        if sample_alive:
            self.armed = True
        changed = status != self.status
        self.status = status
        return self.armed and changed and status in NOTIFY_STATUSES
