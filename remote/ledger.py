"""Which host each deployed run lives on, remembered on this machine.

Runs themselves are found by listing hosts (the run directory is the truth);
the ledger only saves typing ``--host`` for ``stop``, ``monitor`` and
``download`` of a run this console deployed, and lets a console started after
a crash (or ``kill -9``) find the runs its predecessor launched.
Append-only JSON lines: a write cut short by a crash loses at most its own line.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from remote.layout import EXPERIMENT_SEP


def ledger_path() -> Path:
    override = os.environ.get("EMOCONSOLE_STATE")
    if override:
        return Path(override) / "deployments.jsonl"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "emoconsole" / "deployments.jsonl"


def record(run_id: str, host: str, run_dir: str, model: str, **extra: Any) -> None:
    path = ledger_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {"run_id": run_id, "host": host, "run_dir": run_dir, "model": model}
    row.update(extra, at=time.time())
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def entries() -> list[dict[str, Any]]:
    path = ledger_path()
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a torn last line
    return rows


def matches(run: str, host: str | None = None) -> dict[str, dict[str, Any]]:
    """{run id: its latest record} of the runs ``run`` names (on ``host``, if given):
    the one run of that exact id, else every run whose id starts with ``run``."""
    rows = [r for r in entries() if host is None or r.get("host") == host]
    exact = [r for r in rows if r["run_id"] == run]
    if exact:
        return {run: exact[-1]}
    experiment, sep, rest = run.partition(EXPERIMENT_SEP)
    deployed = [r for r in rows if r["run_id"] == experiment and r.get("experiment")]
    if sep and rest and deployed:  # a run of an experiment this console deployed
        row = deployed[-1]
        return {run: {**row, "run_id": run, "run_dir": f"{row['run_dir']}/{rest}"}}
    return {r["run_id"]: r for r in rows if r["run_id"].startswith(run)}


def lookup(run: str) -> dict[str, Any] | None:
    """The latest record of a run id (or of a unique id prefix)."""
    found = matches(run)
    return next(iter(found.values())) if len(found) == 1 else None
