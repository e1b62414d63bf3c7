"""``push_run``: a run directory to ``s3://bucket/prefix/<run-id>/``, only what changed.

Order: checkpoints first (``last.pt`` before ``best.pt``: resume needs last), then
every other file, then ``storage_manifest.json`` ({relpath: {"sha256", "size"}})
LAST, so a manifest never names a file that is not in storage yet.

Checkpoints are never read while being written, and never replaced by half an
upload:

- The engine writes a checkpoint to ``.last.pt.tmp`` and renames it over
  ``last.pt``, so the inode behind the name is complete and never written again.
  The push takes a hard link to it (``.storage/snap-*``, same directory tree, so
  same file system) at one instant: the snapshot costs no copy and no disk while
  the name still points at it, and stays whole when the next save renames a new
  file over the name. boto3's managed ``upload_file`` reopens the file per part
  (its parallel fast path), which is only safe on a file nobody changes: the link
  is that. Where links are refused (EXDEV, some FUSE mounts) a real copy is taken.
- S3 never shows a half-written object: a PUT lands whole or not at all, and a
  multipart upload becomes the object only at CompleteMultipartUpload. So a
  checkpoint goes straight to its final key, and a pusher killed anywhere leaves
  the previous checkpoint there (tests/test_storage.py kills one mid-upload).
  ``temporary_key=True`` uploads to ``<final>.partial-<uuid>`` first, then copies
  it to the final key and deletes the partial, for stores that do show partial
  objects; on S3 the copy only costs time (bench/preempt.py, 435 MB on moto:
  1.24x a plain upload_file's throughput straight, 0.39x through the copy).

Other files are appended to (events.jsonl, train.log, TensorBoard) or replaced by
rename (run.json, summary.json): the push opens one file descriptor, takes its
size once and sends exactly that many bytes, so the hash and the upload always
describe the same prefix (whole JSON lines may be followed by a partial one; the
next push sends the rest).

What was pushed (size, mtime_ns, sha256 per file) is remembered in
``.storage/pushed.json``: an unchanged size and mtime skips a file without reading
it; a changed mtime with the same hash skips the upload.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remote.storage.url import MANIFEST_NAME, StorageError, StorageUrl, storage_error

STATE_DIR = ".storage"
PUSHED_FILE = "pushed.json"
CHECKPOINT_DIR = "checkpoints"
SNAP_PREFIX = "snap-"
PARTIAL_MARK = ".partial-"
IN_MEMORY_MAX = 8 << 20  # non-checkpoint files up to this size are sent from memory
COPY_OBJECT_MAX = 5 << 30  # S3's limit for one CopyObject; bigger ones copy in parts
CHUNK = 4 << 20


@dataclass
class PushReport:
    run_id: str
    url: str  # s3://bucket/prefix
    uploaded: list[str] = field(default_factory=list)  # relpaths sent this time
    unchanged: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    manifest_uploaded: bool = False
    warnings: list[str] = field(default_factory=list)  # e.g. a partial that could not be deleted
    seconds: float = 0.0


@dataclass(frozen=True)
class _Snapshot:
    """One consistent view of a file: either bytes in memory or a private file."""

    size: int
    mtime_ns: int
    sha256: str
    data: bytes | None = None
    path: Path | None = None


# -- the hashes ----------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a whole file (hashlib releases the GIL on large updates, so
    hashing beside an upload thread overlaps)."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# -- what was pushed -----------------------------------------------------------------------------


def state_dir(run_dir: Path) -> Path:
    return run_dir / STATE_DIR


def atomic_write_json(path: Path, data: Any) -> None:
    """tmp + rename: a reader (the watcher, the dashboard) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_pushed(run_dir: Path, url: StorageUrl, run_id: str) -> dict[str, Any]:
    """The remembered state, or an empty one when it is missing, unreadable or for
    another destination (a run restored from one bucket and pushed to another)."""
    fresh: dict[str, Any] = {"url": str(url), "run_id": run_id, "files": {}, "manifest": None}
    try:
        data = json.loads((state_dir(run_dir) / PUSHED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return fresh
    if (
        not isinstance(data, dict)
        or data.get("url") != str(url)
        or data.get("run_id") != run_id
        or not isinstance(data.get("files"), dict)
    ):
        return fresh
    return data


def save_pushed(run_dir: Path, state: dict[str, Any]) -> None:
    atomic_write_json(state_dir(run_dir) / PUSHED_FILE, state)


def manifest_body(files: dict[str, dict[str, Any]]) -> bytes:
    manifest = {rel: {"sha256": f["sha256"], "size": f["size"]} for rel, f in sorted(files.items())}
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()


# -- which files -----------------------------------------------------------------------------


def is_checkpoint(relpath: str) -> bool:
    return relpath.startswith(CHECKPOINT_DIR + "/") and relpath.endswith(".pt")


def _is_temporary(name: str) -> bool:
    """A writer's file in the middle of an atomic write (``.last.pt.tmp``,
    ``.run.json.tmp``) or a download's ``.part``: never a file of the run."""
    return (name.startswith(".") and ".tmp" in name) or name.endswith(".part")


def run_files(run_dir: Path) -> list[str]:
    """Relpaths to push: checkpoints first (last.pt first), then the rest by name;
    ``.storage/`` and temporary files left out."""
    found: list[str] = []
    for root, dirs, files in os.walk(run_dir):
        rel_root = Path(root).relative_to(run_dir)
        if rel_root == Path("."):
            dirs[:] = [d for d in dirs if d != STATE_DIR]
        dirs.sort()
        for name in sorted(files):
            if _is_temporary(name) or not (Path(root) / name).is_file():
                continue
            found.append((rel_root / name).as_posix())

    def order(rel: str) -> tuple[int, int, str]:
        if is_checkpoint(rel):
            return (0, 0 if rel.endswith("/last.pt") else 1, rel)
        return (1, 0, rel)

    return sorted(found, key=order)


def checkpoint_signature(run_dir: Path) -> tuple[tuple[str, int, int, int], ...]:
    """(name, inode, size, mtime_ns) of each checkpoint: changes when one is saved."""
    out = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(run_dir / CHECKPOINT_DIR):
            if entry.name.endswith(".pt") and not _is_temporary(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat()
                    out.append((entry.name, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(sorted(out))


# -- snapshots -------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_snapshots(run_dir: Path) -> None:
    """Snapshots left by a pusher that was killed (their pid is in the name)."""
    folder = state_dir(run_dir)
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            if not entry.name.startswith(SNAP_PREFIX):
                continue
            pid_text = entry.name[len(SNAP_PREFIX) :].split("-", 1)[0]
            pid = int(pid_text) if pid_text.isdigit() else -1
            if pid != os.getpid() and not (pid > 0 and _pid_alive(pid)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


@contextlib.contextmanager
def _snapshot(run_dir: Path, relpath: str) -> Iterator[_Snapshot]:
    path = run_dir / relpath
    folder = state_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    snap = folder / f"{SNAP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"
    try:
        if is_checkpoint(relpath):
            try:
                os.link(path, snap)
            except FileNotFoundError:
                raise
            except OSError:  # no hard links here: a copy, from one open descriptor
                with open(path, "rb") as src, open(snap, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                    os.utime(
                        snap,
                        ns=(os.fstat(src.fileno()).st_atime_ns, os.fstat(src.fileno()).st_mtime_ns),
                    )
            st = os.stat(snap)
            yield _Snapshot(st.st_size, st.st_mtime_ns, sha256_file(snap), path=snap)
            return
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            size = st.st_size
            if size <= IN_MEMORY_MAX:
                data = fh.read(size)
                yield _Snapshot(len(data), st.st_mtime_ns, hashlib.sha256(data).hexdigest(), data)
                return
            digest = hashlib.sha256()
            left = size
            with open(snap, "wb") as out:
                while left > 0:
                    chunk = fh.read(min(CHUNK, left))
                    if not chunk:
                        break
                    digest.update(chunk)
                    out.write(chunk)
                    left -= len(chunk)
        yield _Snapshot(size - left, st.st_mtime_ns, digest.hexdigest(), path=snap)
    finally:
        snap.unlink(missing_ok=True)


# -- the push --------------------------------------------------------------------------------


def default_transfer() -> Any:
    """boto3's managed transfer settings: 8 MiB parts, 10 at once (its defaults, the
    same as a plain ``upload_file``)."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig()


def _upload_checkpoint(
    client: Any,
    url: StorageUrl,
    key: str,
    snap: _Snapshot,
    transfer: Any,
    report: PushReport,
    temporary_key: bool,
) -> None:
    assert snap.path is not None
    if not temporary_key:  # S3 shows the object only once it is complete
        _upload_other(client, url, key, snap, transfer)
        return
    partial = f"{key}{PARTIAL_MARK}{uuid.uuid4().hex}"
    try:
        client.upload_file(
            str(snap.path),
            url.bucket,
            partial,
            ExtraArgs={"Metadata": {"sha256": snap.sha256}},
            Config=transfer,
        )
    except Exception as exc:
        raise storage_error(exc, url, partial, "uploading") from exc
    source = {"Bucket": url.bucket, "Key": partial}
    try:
        if snap.size <= COPY_OBJECT_MAX:
            client.copy_object(
                Bucket=url.bucket, Key=key, CopySource=source, MetadataDirective="COPY"
            )
        else:
            client.copy(source, url.bucket, key, Config=transfer)
    except Exception as exc:
        raise storage_error(exc, url, key, f"copying {url.uri(partial)} to") from exc
    try:
        client.delete_object(Bucket=url.bucket, Key=partial)
    except Exception as exc:  # the checkpoint is in place; only a leftover to clean
        report.warnings.append(str(storage_error(exc, url, partial, "deleting")))


def _upload_other(client: Any, url: StorageUrl, key: str, snap: _Snapshot, transfer: Any) -> None:
    meta = {"sha256": snap.sha256}
    try:
        if snap.data is not None:
            client.put_object(Bucket=url.bucket, Key=key, Body=snap.data, Metadata=meta)
        else:
            assert snap.path is not None
            client.upload_file(
                str(snap.path), url.bucket, key, ExtraArgs={"Metadata": meta}, Config=transfer
            )
    except Exception as exc:
        raise storage_error(exc, url, key, "uploading") from exc


def push_run(
    run_dir: Path,
    url: StorageUrl,
    client: Any,
    *,
    checkpoints: bool = True,
    others: bool = True,
    transfer: Any = None,
    temporary_key: bool = False,
) -> PushReport:
    """Upload what changed since the last push, then the manifest; raises
    :class:`StorageError` naming the key on the first failure (what was sent before
    it is remembered, so the next push continues). ``transfer``: a boto3
    TransferConfig (part size, concurrency, bandwidth cap), boto3's defaults if None.
    ``temporary_key``: checkpoints through ``<key>.partial-<uuid>`` and a copy (the
    default), or straight to the key (as safe on S3, and faster: see above)."""
    started = time.monotonic()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise StorageError(f"no run directory at {run_dir} to push to {url}")
    run_id = run_dir.name
    transfer = transfer if transfer is not None else default_transfer()
    report = PushReport(run_id, str(url))
    state = load_pushed(run_dir, url, run_id)
    known: dict[str, dict[str, Any]] = state["files"]
    clean_stale_snapshots(run_dir)

    for rel in run_files(run_dir):
        wanted = checkpoints if is_checkpoint(rel) else others
        if not wanted:
            continue
        try:
            st = (run_dir / rel).stat()
        except FileNotFoundError:
            continue  # removed since the listing
        prev = known.get(rel)
        if prev and prev["size"] == st.st_size and prev["mtime_ns"] == st.st_mtime_ns:
            report.unchanged.append(rel)
            continue
        try:
            with _snapshot(run_dir, rel) as snap:
                entry = {"size": snap.size, "mtime_ns": snap.mtime_ns, "sha256": snap.sha256}
                if prev and prev["sha256"] == snap.sha256 and prev["size"] == snap.size:
                    known[rel] = entry  # touched, same bytes
                    report.unchanged.append(rel)
                    continue
                key = url.key(run_id, rel)
                if is_checkpoint(rel):
                    _upload_checkpoint(client, url, key, snap, transfer, report, temporary_key)
                else:
                    _upload_other(client, url, key, snap, transfer)
        except FileNotFoundError:
            continue  # removed between the listing and the snapshot
        known[rel] = entry
        report.uploaded.append(rel)
        report.bytes_uploaded += entry["size"]
        save_pushed(run_dir, state)  # a push killed after this file does not resend it

    body = manifest_body(known)
    digest = hashlib.sha256(body).hexdigest()
    if digest != state.get("manifest"):
        key = url.key(run_id, MANIFEST_NAME)
        try:
            client.put_object(Bucket=url.bucket, Key=key, Body=body, ContentType="application/json")
        except Exception as exc:
            raise storage_error(exc, url, key, "uploading") from exc
        state["manifest"] = digest
        report.manifest_uploaded = True
    save_pushed(run_dir, state)
    report.seconds = time.monotonic() - started
    return report


def clean_partials(url: StorageUrl, run_id: str, client: Any, older_than: float = 3600.0) -> int:
    """Delete ``*.partial-*`` objects and abort multipart uploads under the run's
    prefix older than ``older_than`` seconds: what a pusher killed mid-checkpoint
    leaves behind (a live pusher's are younger). Returns how many went."""
    prefix = url.run_prefix(run_id)
    cutoff = time.time() - older_than
    gone = 0
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=url.bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                if PARTIAL_MARK in obj["Key"] and obj["LastModified"].timestamp() < cutoff:
                    client.delete_object(Bucket=url.bucket, Key=obj["Key"])
                    gone += 1
        uploads = client.list_multipart_uploads(Bucket=url.bucket, Prefix=prefix)
        for up in uploads.get("Uploads", []):
            if up["Initiated"].timestamp() < cutoff:
                client.abort_multipart_upload(
                    Bucket=url.bucket, Key=up["Key"], UploadId=up["UploadId"]
                )
                gone += 1
    except Exception as exc:
        raise storage_error(exc, url, prefix, "cleaning partial uploads under") from exc
    return gone
