"""Durable run storage: a run directory mirrored to ``s3://bucket/prefix/<run-id>/``.

- :mod:`remote.storage.url`: :class:`StorageUrl`, :func:`s3_client`, :class:`StorageError`.
- :mod:`remote.storage.push`: :func:`push_run` (what changed; checkpoints through a
  temporary key; the manifest last).
- :mod:`remote.storage.pull`: :func:`pull_run` (SHA-256 checked, atomic, resumable),
  :func:`list_runs`.
- :mod:`remote.storage.uploader`: :class:`Uploader`, the thread beside a run, and
  its state file ``RUN_DIR/.storage/state.json``.

Standard library only at import (boto3 inside the functions that talk to S3): the
on-host guard imports this package on a training host.
"""

from remote.storage.pull import (
    PulledFile,
    PullReport,
    StorageProgress,
    list_runs,
    pull_run,
    read_manifest,
    resolve_stored_run,
)
from remote.storage.push import PushReport, clean_partials, push_run, sha256_file
from remote.storage.uploader import Uploader, read_state, state_path
from remote.storage.url import MANIFEST_NAME, StorageError, StorageUrl, s3_client

__all__ = [
    "MANIFEST_NAME",
    "PullReport",
    "PulledFile",
    "PushReport",
    "StorageError",
    "StorageProgress",
    "StorageUrl",
    "Uploader",
    "clean_partials",
    "list_runs",
    "pull_run",
    "push_run",
    "read_manifest",
    "read_state",
    "resolve_stored_run",
    "s3_client",
    "sha256_file",
    "state_path",
]
