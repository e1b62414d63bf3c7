"""``pull_run``: a run's files from storage, each checked by SHA-256 and landed by
atomic rename; files already present with the right hash are skipped, so an
interrupted pull run again continues where it stopped.

The manifest is uploaded last by every push, so every file it names is in
storage. A push cut short after sending a newer ``last.pt`` but before its
manifest leaves an object newer than the manifest's entry: each object carries
its own SHA-256 (``x-amz-meta-sha256``, written by the push with the bytes), and
bytes that match that hash are taken as the newer version of the file (reported in
``PullReport.newer``). Bytes that match neither are refused, naming the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from remote.storage.push import (
    PUSHED_FILE,
    STATE_DIR,
    atomic_write_json,
    default_transfer,
    manifest_body,
    sha256_file,
)
from remote.storage.url import MANIFEST_NAME, StorageError, StorageUrl, error_code, storage_error

PART_SUFFIX = ".part"
State = Literal["fetching", "skipped", "done"]


@dataclass(frozen=True)
class StorageProgress:
    """One update for a progress bar; the fields of remote.download.DownloadProgress,
    so one bar shows both. ``done``/``total`` cover the run (skipped files count)."""

    path: str
    file_done: int
    file_size: int
    done: int
    total: int
    state: State


ProgressCallback = Callable[[StorageProgress], None]


@dataclass
class PulledFile:
    path: str
    size: int
    sha256: str
    action: Literal["fetched", "skipped"]
    newer_than_manifest: bool = False


@dataclass
class PullReport:
    url: str  # s3://bucket/prefix
    run_id: str
    dest: Path
    files: list[PulledFile] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def bytes_transferred(self) -> int:
        return sum(f.size for f in self.files if f.action == "fetched")

    @property
    def skipped(self) -> list[str]:
        return [f.path for f in self.files if f.action == "skipped"]

    @property
    def newer(self) -> list[str]:
        return [f.path for f in self.files if f.newer_than_manifest]


def _safe_relpath(url: StorageUrl, key: str, path: Any) -> str:
    """A manifest names files inside the run directory only."""
    text = str(path)
    pure = PurePosixPath(text)
    if (
        not isinstance(path, str)
        or not text
        or pure.is_absolute()
        or any(p in ("", ".", "..") for p in pure.parts)
        or "\\" in text
        or text.endswith(PART_SUFFIX)
        or pure.parts[0] == STATE_DIR
    ):
        raise StorageError(f"{url.uri(key)}: refusing a file outside the run directory: {text!r}")
    return pure.as_posix()


def read_manifest(url: StorageUrl, run_id: str, client: Any) -> dict[str, dict[str, Any]]:
    """{relpath: {"sha256", "size"}} of what storage holds for a run."""
    key = url.key(run_id, MANIFEST_NAME)
    try:
        body = client.get_object(Bucket=url.bucket, Key=key)["Body"].read()
    except Exception as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            err = StorageError(
                f"no run {run_id!r} in storage: {url.uri(key)} does not exist "
                f"(nothing was pushed yet, or another bucket/prefix)"
            )
            err.hint = f"see what is stored there: aws s3 ls {url}/"
            raise err from exc
        raise storage_error(exc, url, key, "reading") from exc
    try:
        data = json.loads(body)
        files = {
            _safe_relpath(url, key, rel): {"sha256": str(v["sha256"]), "size": int(v["size"])}
            for rel, v in data.items()
        }
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise StorageError(f"{url.uri(key)} is not a storage manifest: {exc}") from exc
    return files


def list_runs(url: StorageUrl, client: Any) -> list[str]:
    """The run ids under the prefix that have a manifest, sorted."""
    prefix = f"{url.prefix}/" if url.prefix else ""
    runs: list[str] = []
    try:
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=url.bucket, Prefix=prefix, Delimiter="/"
        )
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                run_id = common["Prefix"][len(prefix) :].rstrip("/")
                if run_id:
                    runs.append(run_id)
    except Exception as exc:
        raise storage_error(exc, url, prefix, "listing") from exc
    return sorted(runs)


def resolve_stored_run(url: StorageUrl, run: str, client: Any) -> str:
    """The id of the stored run that ``run`` names: exactly, else as the unique
    prefix of one run id under the storage prefix."""
    runs = list_runs(url, client)
    if run in runs:
        return run
    matches = [r for r in runs if r.startswith(run)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        err = StorageError(f"{run!r} matches several runs in {url}: {', '.join(matches)}")
        err.hint = "type more of the run id"
    else:
        err = StorageError(f"no run {run!r} in {url}")
        err.hint = f"see what is stored there: aws s3 ls {url}/"
    raise err


def pull_run(
    url: StorageUrl,
    run_id: str,
    dest: Path,
    client: Any,
    progress: ProgressCallback | None = None,
    *,
    transfer: Any = None,
) -> PullReport:
    """Fetch the run's manifest and its files into ``dest`` (the run directory
    itself, e.g. ``runs/<run_id>``). Also writes ``dest/.storage/pushed.json`` for
    the files it verified, so a push from ``dest`` to the same place (a recovered
    run) sends only what changes after."""
    started = time.monotonic()
    dest = Path(dest)
    transfer = transfer if transfer is not None else default_transfer()
    manifest = read_manifest(url, run_id, client)
    report = PullReport(str(url), run_id, dest)
    entries = sorted(manifest.items(), key=lambda kv: (kv[1]["size"], kv[0]))
    total = sum(meta["size"] for _, meta in entries)
    done = 0
    pushed: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    for rel, meta in entries:
        final = dest / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        key = url.key(run_id, rel)
        if (
            final.is_file()
            and final.stat().st_size == meta["size"]
            and sha256_file(final) == meta["sha256"]
        ):
            done += meta["size"]
            report.files.append(PulledFile(rel, meta["size"], meta["sha256"], "skipped"))
            pushed[rel] = _pushed_entry(final, meta["sha256"])
            if progress:
                progress(StorageProgress(rel, meta["size"], meta["size"], done, total, "skipped"))
            continue
        part = final.with_name(final.name + PART_SUFFIX)
        got = [0]
        base = done

        def tick(
            n: int, rel: str = rel, size: int = meta["size"], base: int = base, got: list = got
        ) -> None:
            # s3transfer calls this from its worker threads
            with lock:
                got[0] += n
                now = got[0]
            if progress:
                progress(StorageProgress(rel, now, size, base + now, total, "fetching"))

        try:
            client.download_file(url.bucket, key, str(part), Callback=tick, Config=transfer)
        except Exception as exc:
            part.unlink(missing_ok=True)
            if error_code(exc) in ("NoSuchKey", "404"):
                raise StorageError(
                    f"{url.uri(key)} is listed in the run's manifest but missing from storage"
                ) from exc
            raise storage_error(exc, url, key, "downloading") from exc
        sha = sha256_file(part)
        size = part.stat().st_size
        newer = False
        if sha != meta["sha256"] or size != meta["size"]:
            # Newer than the manifest (a push cut short before its manifest)? The
            # object's own hash, written with its bytes, decides.
            own = _object_sha256(client, url, key)
            if own != sha:
                part.unlink(missing_ok=True)
                raise StorageError(
                    f"{url.uri(key)}: SHA-256 {sha} does not match the manifest's "
                    f"{meta['sha256']} (nor the object's own {own or 'none recorded'}); "
                    f"refusing it: the object is corrupt or was written by something else"
                )
            newer = True
        os.replace(part, final)
        done = base + size
        report.files.append(PulledFile(rel, size, sha, "fetched", newer))
        pushed[rel] = _pushed_entry(final, sha)
        if progress:
            progress(StorageProgress(rel, size, size, done, total, "done"))

    # What a push from here would otherwise resend: the files just verified.
    atomic_write_json(
        dest / STATE_DIR / PUSHED_FILE,
        {
            "url": str(url),
            "run_id": run_id,
            "files": pushed,
            # The manifest storage holds: a push sends a new one only when this differs.
            "manifest": hashlib.sha256(manifest_body(manifest)).hexdigest(),
        },
    )
    report.seconds = time.monotonic() - started
    return report


def _pushed_entry(path: Path, sha: str) -> dict[str, Any]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}


def _object_sha256(client: Any, url: StorageUrl, key: str) -> str | None:
    try:
        head = client.head_object(Bucket=url.bucket, Key=key)
    except Exception as exc:
        raise storage_error(exc, url, key, "checking") from exc
    return head.get("Metadata", {}).get("sha256")
