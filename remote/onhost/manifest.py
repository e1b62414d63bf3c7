"""The on-host half of ``download``: a run directory's files with sizes and SHA-256.

    python -m remote.manifest RUN_DIR [--only REL_PATH ...]   # one JSON document
    python -m remote.manifest RUN_DIR --lines                # JSON lines, as hashed

It runs where the run is (locally in-process, remotely over one SSH exec
channel), so like the watcher it imports the standard library only. Hashing
where the bytes are is what lets the client verify a download end to end
without reading the file twice over the network.

Skipped: files ending in ``.tmp``, which is how the engine writes checkpoints
and JSON before renaming them into place (``.last.pt.tmp``): such a file is
either half-written or about to vanish. Symbolic links and other non-regular
files are skipped too: a run directory written by the engine has none, and
following one could hand out a file from outside the run.

``--lines`` prints the listing first (``{"kind": "list", "root", "files":
[{path, size, mtime}]}``, smallest files first), then one ``{"kind": "hash",
"path", "size", "sha256"}`` per file in the same order as each is hashed
(``"missing": true`` instead when the file vanished meanwhile), ``progress``
lines every few seconds while a large file is being hashed (so the client can
tell a slow disk from a dead connection), and ``{"kind": "end"}``. A client
starts fetching as soon as the listing arrives and checks each file when its
hash line comes, so hashing on the host overlaps the transfer. ``size`` in a
hash line is the number of bytes hashed: a log that grew since the listing is
hashed to its new end, and the client keeps exactly that many bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SKIP_SUFFIXES = (".tmp",)
CHUNK = 4 << 20
PROGRESS_EVERY_S = 5.0


def list_files(root: Path) -> list[dict[str, Any]]:
    """Regular files under ``root`` (relative POSIX paths), smallest first: the
    summary and logs of a run land before its checkpoints."""
    files: list[dict[str, Any]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(SKIP_SUFFIXES):
                continue
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except FileNotFoundError:  # renamed away between listing and stat
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            rel = Path(os.path.relpath(full, root)).as_posix()
            files.append({"path": rel, "size": st.st_size, "mtime": st.st_mtime})
    files.sort(key=lambda f: (f["size"], f["path"]))
    return files


def sha256_file(path: Path) -> tuple[int, str]:
    """(bytes hashed, hex digest) of the file as it is now, to its end."""
    size, digest = 0, ""
    for message in _hash_lines(path.parent, path.name):
        if message["kind"] == "hash":
            if message.get("missing"):
                raise FileNotFoundError(f"no file at {path}")
            size, digest = message["size"], message["sha256"]
    return size, digest


def _hash_lines(root: Path, rel: str) -> Iterator[dict[str, Any]]:
    """``progress`` messages while a large file is hashed, then its ``hash``."""
    digest = hashlib.sha256()
    done = 0
    last = time.monotonic()
    try:
        fh = open(root / rel, "rb", buffering=0)  # noqa: SIM115 - closed below, across yields
    except FileNotFoundError:
        yield {"kind": "hash", "path": rel, "missing": True}
        return
    buf = bytearray(CHUNK)  # reused: hashing a checkpoint allocates nothing per chunk
    view = memoryview(buf)
    with fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
            done += n
            if time.monotonic() - last >= PROGRESS_EVERY_S:
                last = time.monotonic()
                yield {"kind": "progress", "path": rel, "hashed": done}
    yield {"kind": "hash", "path": rel, "size": done, "sha256": digest.hexdigest()}


def iter_manifest(root: Path) -> Iterator[dict[str, Any]]:
    """The ``--lines`` messages, in order (see the module docstring)."""
    root = Path(os.path.abspath(os.path.expanduser(root)))
    if not root.is_dir():
        yield {"kind": "error", "message": f"no run directory at {root}"}
        return
    files = list_files(root)
    yield {"kind": "list", "root": str(root), "files": files}
    for entry in files:
        yield from _hash_lines(root, entry["path"])
    yield {"kind": "end"}


def manifest(root: Path, only: list[str] | None = None) -> dict[str, Any]:
    """The whole listing with hashes as one document (``only``: just these paths,
    which is how a client re-checks one file that changed under it)."""
    root = Path(os.path.abspath(os.path.expanduser(root)))
    if not root.is_dir():
        raise FileNotFoundError(f"no run directory at {root}")
    listed = list_files(root)
    if only is not None:
        wanted = set(only)
        listed = [f for f in listed if f["path"] in wanted]
    files = []
    for entry in listed:
        try:
            size, digest = sha256_file(root / entry["path"])
        except FileNotFoundError:  # renamed away since the listing
            continue
        files.append({**entry, "size": size, "sha256": digest})
    return {"root": str(root), "files": files}


def _write(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m remote.manifest",
        description="List a run directory's files with sizes and SHA-256, as JSON.",
    )
    parser.add_argument("run_dir", help="the run directory (~ is expanded)")
    parser.add_argument(
        "--lines", action="store_true", help="JSON lines: the listing, then each hash as computed"
    )
    parser.add_argument(
        "--only", action="append", metavar="REL_PATH", help="hash only this file (repeatable)"
    )
    args = parser.parse_args(argv)
    try:
        if args.lines:
            for message in iter_manifest(Path(args.run_dir)):
                _write(message)
                if message["kind"] == "error":
                    return 2
            return 0
        _write(manifest(Path(args.run_dir), args.only))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the client went away; nothing left to tell it
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
