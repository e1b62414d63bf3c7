"""A run directory back from storage onto a new instance, before ``trainers resume``.

    python -m remote.onhost.restore --storage s3://B/P --run-id ID --dest RUN_DIR
        [--endpoint-url U] [--region R] [--imds URL] [--note JSON]

Run by the console's recovery (:mod:`remote.recovery`) on the instance that
replaces a lost one. It pulls every file of the run's storage manifest
(:func:`remote.storage.pull_run`: SHA-256 checked, atomic renames, files already
there and right skipped, so a retry after a dropped connection continues), then
writes the recovery into run.json (``--note``: the recovery count and the
instances the run ran on). A run whose last pushed status is not terminal died
with its machine without a word: it is marked ``crashed`` so that ``resume``
takes it.

Credentials are the instance role's, found by boto3 through the instance
metadata service; ``--imds`` points boto3 at another metadata endpoint (the
tests' loopback stand-in). No credential is ever passed on the command line.
Prints one JSON object, like :mod:`remote.onhost.hostctl`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

TERMINAL = ("completed", "stopped", "failed", "crashed", "preempted")


def note_recovery(run_dir: Path, note: dict[str, Any]) -> dict[str, Any]:
    """Merge ``note`` into run.json (atomically); a non-terminal status becomes crashed."""
    path = run_dir / "run.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.update(note)
    if manifest.get("status") not in TERMINAL:
        manifest["status"] = "crashed"
    tmp = path.with_name(".run.json.restore.tmp")
    tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m remote.onhost.restore")
    parser.add_argument("--storage", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--dest", type=Path, required=True)
    parser.add_argument("--endpoint-url", default=None)
    parser.add_argument("--region", default=None)
    parser.add_argument("--imds", default=None)
    parser.add_argument("--note", default=None, help="JSON merged into run.json")
    args = parser.parse_args(argv)
    if args.imds:
        os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = args.imds.rstrip("/") + "/"

    from remote.storage import StorageUrl, pull_run, s3_client

    url = StorageUrl.parse(args.storage, "--storage")
    dest = args.dest.expanduser()
    try:
        report = pull_run(url, args.run_id, dest, s3_client(args.endpoint_url, args.region))
        manifest = note_recovery(dest, json.loads(args.note) if args.note else {})
    except Exception as exc:  # one line the console shows, whatever went wrong
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps({"run_dir": str(dest), "status": manifest.get("status"), **_counts(report)}))
    return 0


def _counts(report: Any) -> dict[str, Any]:
    fields = getattr(report, "__dict__", {})
    return {k: v for k, v in fields.items() if isinstance(v, int | float | str)}


if __name__ == "__main__":
    sys.exit(main())
