"""Where a run's durable copy lives (``s3://bucket/prefix``), the S3 client, and the
errors a storage operation raises.

Standard library only at import time: the on-host guard imports this package
beside a training run, where boto3 is imported only once an upload starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from remote.errors import ConfigError, RemoteError

SCHEME = "s3://"
MANIFEST_NAME = "storage_manifest.json"
# S3's own bucket rules (3-63 characters, lower case, digits, dots, hyphens; a letter or
# digit at both ends): refusing a bad name here beats an InvalidBucketName mid-run.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class StorageError(RemoteError):
    """A push to or a pull from run storage failed; the message names the bucket and
    key. Pushes are retried by :class:`~remote.storage.Uploader`; a pull can be run
    again and continues where it stopped."""


@dataclass(frozen=True)
class StorageUrl:
    """``s3://bucket/prefix``: a run ``R`` lives under ``prefix/R/``."""

    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    @classmethod
    def parse(cls, text: str, where: str) -> StorageUrl:
        """``where`` names the setting (``[ec2.gpu] storage``, ``--from-storage``) so
        the error says which line to fix."""
        value = text.strip() if isinstance(text, str) else text
        if not isinstance(value, str) or not value.startswith(SCHEME):
            raise ConfigError(
                f"{where}: {text!r} is not an S3 location; write s3://BUCKET/PREFIX "
                f"(e.g. s3://my-runs/emoconsole)"
            )
        bucket, _, prefix = value[len(SCHEME) :].partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise ConfigError(
                f"{where}: {bucket!r} in {text!r} is not a valid S3 bucket name "
                f"(3-63 characters: lower-case letters, digits, '.' and '-')"
            )
        prefix = prefix.strip("/")
        parts = PurePosixPath(prefix).parts if prefix else ()
        if any(p in (".", "..") for p in parts) or "//" in prefix or "\\" in prefix:
            raise ConfigError(f"{where}: the prefix in {text!r} may not hold '.', '..' or '//'")
        return cls(bucket, prefix)

    def run_prefix(self, run_id: str) -> str:
        """``prefix/run_id/``: every key of one run starts with this."""
        return f"{self.prefix}/{run_id}/" if self.prefix else f"{run_id}/"

    def key(self, run_id: str, relpath: str) -> str:
        return self.run_prefix(run_id) + relpath

    def uri(self, key: str) -> str:
        """The ``s3://`` address of a key, for messages a person can paste into aws s3."""
        return f"{SCHEME}{self.bucket}/{key}"

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"


def s3_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    """A boto3 S3 client; credentials from boto3's own chain (on EC2 the instance
    profile through IMDS; the guard points that chain at a stand-in in tests).

    A fresh session per call: boto3's default session is not safe to build clients
    from in several threads at once, and the uploader makes its own in its thread.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=120,
        # The managed transfer runs up to TransferConfig.max_concurrency (10) requests at once.
        max_pool_connections=20,
        # A custom endpoint (moto, MinIO) is an address, not a domain that has
        # bucket.<endpoint> names: virtual-hosted addressing would not resolve.
        s3={"addressing_style": "path"} if endpoint_url else None,
        # Every byte is checked by SHA-256 against the manifest (or the object's own
        # hash) on the way down, so botocore's optional CRC check adds nothing; and
        # moto answers a GET of a server-side copy of a multipart object with the
        # part-composite CRC as if it were the whole object's, which fails it.
        response_checksum_validation="when_required",
    )
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def error_code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ClientError (``NoSuchKey``, ``AccessDenied``...)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def storage_error(exc: BaseException, url: StorageUrl, key: str, doing: str) -> StorageError:
    """One line for a failed S3 call that names the object and what to do about it."""
    code = error_code(exc)
    where = url.uri(key)
    if code == "NoSuchBucket":
        err = StorageError(f"{doing} {where}: bucket {url.bucket!r} does not exist")
        err.hint = f"create it (aws s3 mb s3://{url.bucket}) or fix the storage setting"
    elif code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        err = StorageError(f"{doing} {where}: access denied ({code})")
        err.hint = "the credentials in use may not write or read this bucket prefix"
    elif code in ("NoSuchKey", "404", "NotFound"):
        err = StorageError(f"{doing} {where}: no such object")
    else:
        name = type(exc).__name__
        err = StorageError(f"{doing} {where}: {code or name}: {exc}")
        if name == "NoCredentialsError":
            err.hint = "no AWS credentials found (boto3's chain: env, ~/.aws, instance profile)"
    return err
