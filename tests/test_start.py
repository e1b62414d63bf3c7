"""remote.start: a run request refused before anything starts, with the field at fault.

The hosts are real: ``local``, and an SSH host on a loopback port where nothing
listens, so a request that got as far as connecting would fail differently.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from remote import ledger
from remote.config import LOCAL, HostConfig
from remote.deploy import DeployError, RequestError
from remote.start import RunRequest, check_request, start_run


@pytest.fixture
def hosts(tmp_path, monkeypatch) -> dict[str, HostConfig]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EMOCONSOLE_STATE", str(tmp_path / "state"))
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {
        "local": LOCAL,
        "down": HostConfig(name="down", kind="ssh", host="127.0.0.1", port=port),
    }


def test_a_contradictory_request_is_refused_with_its_field_before_any_host(hosts, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    refused = [
        (RunRequest("hybrid-attention", "down"), "data", "exactly one of"),
        (RunRequest("hybrid-attention", "down", local_data=data, host_data="/d"), "data",
         "exactly one of"),
        (RunRequest("hybrid-attention", "down", local_data=tmp_path / "nope"), "data",
         "no such directory"),
        (RunRequest("hybrid-attention", "down", local_data=data, gpus=-1), "gpus", "both >= 0"),
        (RunRequest("hybrid-attention", "down", local_data=data, max_restarts=2), "gpus",
         "restarts need --gpus"),
        (RunRequest("hybrid-attention", " , ", local_data=data), "host", "no host"),
        (RunRequest("hybrid-attention", "down,local", local_data=data), "gpus",
         "several nodes need --gpus"),
        (RunRequest("hybrid-attention", "down,local", local_data=data, gpus=1, nodes=3),
         "nodes", "--nodes 3 but --host names 2 hosts"),
        (RunRequest("hybrid-attention", "down", local_data=data, gpus=1, nodes=2), "host",
         "need an EC2 host"),
    ]  # fmt: skip
    for request, field, says in refused:
        with pytest.raises(RequestError, match=says) as info:
            start_run(request, hosts=hosts)  # never a TransportError: no host was reached
        assert info.value.field == field, request
    check_request(RunRequest("hybrid-attention", "down", host_data="/d"), hosts)  # fine
    assert ledger.entries() == []


def test_data_missing_on_the_host_is_the_data_fields_error(hosts, tmp_path):
    request = RunRequest("hybrid-attention", "local", host_data=str(tmp_path / "missing"))
    with pytest.raises(DeployError, match=r"no directory .*missing on local") as info:
        start_run(request, hosts=hosts)
    assert info.value.field == "data" and not isinstance(info.value, RequestError)
    assert not Path("runs").exists() and ledger.entries() == []
