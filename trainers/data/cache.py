"""A content-keyed cache of decoded features, one ``.npz`` per source file and modality.

Why it is keyed this way:

* The key is the SHA-256 of the source file's bytes, not its path or mtime,
  so a corpus copied to another directory or host (or regenerated
  byte-identically) hits the cache, and an edited file never serves stale
  features.
* The settings hashed into the key are only those of the one modality the
  entry holds, so changing ``face_size`` rebuilds video entries while every
  audio entry still hits.
* Finding an entry needs the source's digest; ``digests.json`` remembers the
  digests of earlier runs by file identity, so a warm run reads no source
  bytes at all.
* Files that fail to decode get a negative entry holding the reason, so a
  warm run reports them again (each run's bad_inputs.jsonl is complete)
  without decoding them again.
* Entries are uncompressed ``np.savez``: loading is a memory copy, and
  writes go to a temporary file renamed into place, so a killed run or two
  workers writing the same entry never leave a torn file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# Bump when the entry layout changes; old entries are then simply never read.
FORMAT_VERSION = 1
_CHUNK = 1 << 20
# Key of an entry that records a decode failure instead of arrays.
ERROR_FIELD = "error"

# File identity: (absolute path, size, mtime_ns, ctime_ns, inode). Any write to the file
# changes ctime, which no tool can set back, so a matching identity means unchanged bytes.
StatKey = tuple[str, int, int, int, int]
# Identity -> hex SHA-256 of the bytes: each file is hashed once per process.
_digests: dict[StatKey, str] = {}
_digests_lock = threading.Lock()
# Beside the entries: identities and digests of files hashed by earlier runs.
DIGEST_INDEX = "digests.json"


def _stat_key(path: str) -> StatKey:
    stat = os.stat(path)
    return (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


def file_digest(path: str) -> str:
    """SHA-256 of the file's bytes, read in 1 MiB chunks, memoized for this process."""
    key = _stat_key(path)
    with _digests_lock:
        known = _digests.get(key)
    if known is not None:
        return known
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
    digest = sha.hexdigest()
    with _digests_lock:
        _digests[key] = digest
    return digest


def known_digests(paths: list[str]) -> dict[StatKey, str]:
    """The memoized digests of ``paths``, to hand to a worker process so it does not rehash."""
    out = {}
    with _digests_lock:
        for path in paths:
            try:
                key = _stat_key(path)
            except OSError:
                continue
            if key in _digests:
                out[key] = _digests[key]
    return out


def remember_digests(digests: dict[StatKey, str]) -> None:
    with _digests_lock:
        _digests.update(digests)


def load_digest_index(root: Path) -> int:
    """Adopt the digests earlier runs computed; returns how many still match their file.

    Warm runs would otherwise read every source byte again just to find their
    entries: for RAVDESS that is over 10 GB, a minute or more on a cloud
    volume. An entry is used only while the file's identity (see StatKey) is
    unchanged, so an edited or replaced file is hashed afresh.
    """
    try:
        raw = json.loads((root / f"v{FORMAT_VERSION}" / DIGEST_INDEX).read_text("utf-8"))
    except (OSError, ValueError):
        return 0
    adopted: dict[StatKey, str] = {}
    for path, entry in raw.items() if isinstance(raw, dict) else ():
        try:
            size, mtime, ctime, inode, digest = entry
            key = _stat_key(path)
        except (OSError, TypeError, ValueError):  # gone, or an entry this code did not write
            continue
        if key == (path, size, mtime, ctime, inode):
            adopted[key] = str(digest)
    remember_digests(adopted)
    return len(adopted)


def save_digest_index(root: Path) -> None:
    """Write this process's digests (merged over the old index) for the next run."""
    path = root / f"v{FORMAT_VERSION}" / DIGEST_INDEX
    try:
        merged = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        merged = {}
    if not isinstance(merged, dict):
        merged = {}
    with _digests_lock:
        for (file, size, mtime, ctime, inode), digest in _digests.items():
            merged[file] = [size, mtime, ctime, inode, digest]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".digests.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(merged, handle)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot write the digest index %s: %s", path, exc)


def settings_digest(modality: str, settings: dict[str, object]) -> str:
    text = json.dumps(
        {"format": FORMAT_VERSION, "modality": modality, "settings": settings}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()


class FeatureCache:
    """Entries at ``root/v<FORMAT_VERSION>/<modality>/<xx>/<key>.npz``; no root: no cache."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._write_failed = False

    def key(self, modality: str, source: str, settings: dict[str, object]) -> str:
        joined = f"{file_digest(source)}:{settings_digest(modality, settings)}"
        return hashlib.sha256(joined.encode()).hexdigest()

    def entry_path(self, modality: str, key: str) -> Path | None:
        if self.root is None:
            return None
        return self.root / f"v{FORMAT_VERSION}" / modality / key[:2] / f"{key}.npz"

    def load(self, modality: str, key: str) -> dict[str, np.ndarray] | None:
        path = self.entry_path(modality, key)
        if path is None or not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            # A damaged entry is a miss; remove it so it is rewritten.
            log.warning("ignoring unreadable cache entry %s: %s", path, exc)
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def store(self, modality: str, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Write an entry atomically; a cache that cannot be written only costs speed."""
        path = self.entry_path(modality, key)
        if path is None or self._write_failed:
            return
        tmp_name = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **arrays)  # type: ignore[arg-type]
            os.replace(tmp_name, path)
            tmp_name = None
        except OSError as exc:
            self._write_failed = True
            log.warning("feature cache %s is not writable, continuing without it: %s", path, exc)
        finally:
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)

    def store_error(self, modality: str, key: str, reason: str) -> None:
        self.store(modality, key, {ERROR_FIELD: np.array(reason)})
