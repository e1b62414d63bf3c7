"""Whether a run's training process still runs: one answer for every reader.

The runs table (``hostctl list``) and the run view (the watcher's samples) must
agree on "crashed", so both ask :func:`run_alive`. A pid alone is not enough:
after a reboot or a long time the kernel hands the same pid to another
process, which would keep a dead run "running" forever. The process's start
time settles it: the run writes run.json after its process starts (and again on
each resume), so a process born well after that is someone else's.

Standard library only (Linux's /proc for start times; elsewhere the pid check
alone), so it runs on any host the watcher runs on.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any

# run.json is written a moment after the process starts; a process that started
# this much later than the run says it did holds a reused pid.
REUSE_SLACK_S = 5.0


def pid_alive(pid: int | None) -> bool:
    """The pid names a running process (a zombie does not count)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _state(pid) != "Z"


def _stat_fields(pid: int) -> list[str] | None:
    with contextlib.suppress(OSError, IndexError):
        # The command name (field 2) may hold spaces and parentheses: split after the last ")".
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return None


def _state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def _boot_time() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    return None


def process_start_time(pid: int) -> float | None:
    """When the process started (seconds since the epoch), where /proc tells."""
    fields = _stat_fields(pid)
    boot = _boot_time()
    if not fields or boot is None:
        return None
    with contextlib.suppress(ValueError, IndexError, OSError):
        # /proc/PID/stat field 22 (starttime), counted after the ")" from field 3.
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return None


def run_alive(manifest: dict[str, Any]) -> bool | None:
    """Whether the process of a run (its run.json) still runs.

    None when this host cannot tell: no pid yet, or the run belongs to another
    machine that shares the directory (its pid means nothing here).
    """
    pid = manifest.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    host = manifest.get("host")
    if host and host != socket.gethostname():
        return None
    if not pid_alive(pid):
        return False
    started = max(
        [manifest.get("started_at") or 0]
        + [r.get("at") or 0 for r in manifest.get("resumes") or [] if isinstance(r, dict)]
    )
    born = process_start_time(pid)
    return not (started and born is not None and born > started + REUSE_SLACK_S)
