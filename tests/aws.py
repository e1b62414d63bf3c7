"""Shared AWS fixtures: moto's server (EC2, S3 and IAM on one loopback endpoint)
and a clean account with fake credentials. Use with
``pytest_plugins = ["tests.aws"]``.

No real AWS file or variable is read: the fixtures point boto3's credential chain
at the environment and at files that do not exist.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.sshd import free_port

REGION = "us-east-1"
BUCKET = "emo-runs"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """One moto server per test module (starting one costs ~1 s)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def reset_moto(endpoint: str) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture
def fake_aws_env(monkeypatch, tmp_path) -> None:
    """Fake credentials in the environment; no profile, config or endpoint from outside."""
    for var in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEMOCONSOLETEST00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-not-real")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@dataclass
class S3:
    endpoint: str
    client: Any  # a boto3 client for looking behind the code's back
    bucket: str
    region: str = REGION

    def url(self, prefix: str = "runs") -> Any:
        from remote.storage import StorageUrl

        return StorageUrl.parse(f"s3://{self.bucket}/{prefix}", "test")

    def new_client(self) -> Any:
        from remote.storage import s3_client

        return s3_client(self.endpoint, REGION)

    def body(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def keys(self, prefix: str = "") -> list[str]:
        rows = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])
        return sorted(r["Key"] for r in rows)


@pytest.fixture
def s3(moto_endpoint, fake_aws_env) -> S3:
    """A clean moto account with one empty bucket."""
    from remote.storage import s3_client

    reset_moto(moto_endpoint)
    client = s3_client(moto_endpoint, REGION)
    client.create_bucket(Bucket=BUCKET)
    return S3(moto_endpoint, client, BUCKET)
