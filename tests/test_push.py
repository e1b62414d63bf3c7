"""`python -m trainers push`: a trained run's export bundle on the Hugging Face Hub.

The Hub cannot be reached from here: every push goes through huggingface_hub's own
client to the loopback stand-in of tests/hfhub.py (``HF_ENDPOINT``), which keeps what it
received (repositories, branches, commits with their files, LFS objects). The pushed
bytes are compared with an export of the same run made here, the commit message with
the run's summary.json, and the token is a canary that must never be printed.

One tiny trained run (the session's, conftest.py) serves every test; the run directory
is pushed once (that push exports it, which imports torch), the later pushes push
exported folders, which needs no torch.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import trainers_cmd
from trainers.cli import main

if TYPE_CHECKING:
    from tests.hfhub import HubStandIn

pytest_plugins = ["tests.hfhub"]
pytestmark = pytest.mark.slow

USER = "alice"  # the stand-in's one user
REPO_ID = f"{USER}/emo-tiny"


def push(hub: HubStandIn, home: Path, *args: str, token: str | None):
    """``python -m trainers push ARGS`` against the stand-in with ``token`` in HF_TOKEN;
    None: no HF_TOKEN (huggingface_hub then reads the token file in ``home``, if any)."""
    return subprocess.run(
        trainers_cmd("push", *args),
        capture_output=True,
        text=True,
        timeout=180,
        env=hub.env(home, token),
    )


def commit_of(hub: HubStandIn, proc: subprocess.CompletedProcess):
    """The stand-in's commit that the push's last line names."""
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f"commit: {hub.url}/{REPO_ID}/commit/"), proc.stdout
    return hub.repos[REPO_ID].commits[last.rsplit("/", 1)[1]]


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture(scope="module")
def exports(tiny_run, tmp_path_factory) -> dict[str, Path]:
    """The run exported here as `export` would (best and last checkpoint): what the
    pushes must upload, byte for byte."""
    from trainers.inference.export import export_model

    run, _data, _cache = tiny_run
    base = tmp_path_factory.mktemp("exports")
    for kind in ("best", "last"):
        export_model(run.path, base / kind, "safetensors", kind)
    return {"best": base / "best", "last": base / "last"}


@pytest.fixture(scope="module")
def first_push(hf_hub, tiny_run, tmp_path_factory):
    """The run directory pushed to a new private repository (token in HF_TOKEN)."""
    run, _data, _cache = tiny_run
    home = tmp_path_factory.mktemp("hf-home")
    proc = push(hf_hub, home, str(run.path), "--repo", REPO_ID, "--private", token=hf_hub.token)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_a_run_is_pushed_as_its_export_bundle_in_one_commit(hf_hub, tiny_run, exports, first_push):
    run, _data, _cache = tiny_run
    proc = first_push
    repo = hf_hub.repos[REPO_ID]
    assert repo.private and repo.created_with == {
        "name": "emo-tiny", "organization": USER, "visibility": "private",
    }  # fmt: skip
    commit = commit_of(hf_hub, proc)
    first = repo.commits[commit.parent]
    assert first.parent is None and list(first.files) == [".gitattributes"]  # the Hub's own

    # The files and their bytes are exactly the export's.
    want = folder_files(exports["best"])
    assert set(want) == {"model.safetensors", "config.json", "README.md", "summary.json"}
    assert {k: v for k, v in commit.files.items() if k != ".gitattributes"} == want
    # The weights took the LFS path (batch + PUT of the bytes), the text went inline.
    sent = {op["value"]["path"]: op["key"] for op in commit.operations}
    assert sent == {"model.safetensors": "lfsFile", "config.json": "file", "README.md": "file",
                    "summary.json": "file"}  # fmt: skip
    assert hf_hub.lfs_objects  # the PUT arrived
    assert want["README.md"].decode() in hf_hub.cards  # the card's metadata was checked first

    # The commit message names the run and its test metrics.
    test = json.loads(run.summary.read_text())["test"]
    assert commit.summary == (
        f"hybrid-attention run tiny: test accuracy {test['accuracy']:.4f}, "
        f"macro-F1 {test['macro_f1']:.4f}"
    )
    assert "Run: tiny" in commit.description and "Checkpoint: best" in commit.description

    # A progress line per file, then the commit's URL last.
    lines = proc.stdout.splitlines()
    for i, name in enumerate(["model.safetensors", "config.json", "README.md", "summary.json"], 1):
        assert any(line.startswith(f"[{i}/4] {name} (") for line in lines), proc.stdout
    assert lines[-1] == f"commit: {hf_hub.url}/{REPO_ID}/commit/{commit.oid}"
    # The token: sent to the Hub, never shown, never uploaded.
    token = hf_hub.token
    assert token not in proc.stdout + proc.stderr
    assert not any(token.encode() in data for data in commit.files.values())
    assert token not in commit.summary + commit.description
    assert not hf_hub.refused and not hf_hub.unhandled


def test_pushing_again_adds_a_commit_and_a_branch_gets_its_own(
    hf_hub, exports, first_push, tmp_path
):
    # Logged in the way `hf auth login` leaves it: the token in HF_HOME/token, no HF_TOKEN.
    (tmp_path / "token").write_text(hf_hub.token)
    repo = hf_hub.repos[REPO_ID]
    main_before = commit_of(hf_hub, first_push)

    # An exported folder (the last checkpoint's, with a model.onnx standing in for an ONNX
    # export) goes on top of main: a second commit.
    last = tmp_path / "last"
    shutil.copytree(exports["last"], last)
    (last / "model.onnx").write_bytes(b"\x08\x09stand-in onnx graph")
    proc = push(hf_hub, tmp_path, str(last), "--repo", REPO_ID, token=None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    second = commit_of(hf_hub, proc)
    assert second.parent == main_before.oid and repo.branches["main"] == second.oid
    second_files = {k: v for k, v in second.files.items() if k != ".gitattributes"}
    assert second_files == folder_files(last)
    # Same weights (one epoch: best is last, and an export is byte for byte the same each
    # time): the Hub kept them; only the text changed, and the ONNX file came (by LFS).
    sent = {op["value"]["path"]: op["key"] for op in second.operations}
    assert sent == {"config.json": "file", "README.md": "file", "model.onnx": "lfsFile"}
    assert "Checkpoint: last" in second.description

    # --revision: a new branch from main, with its own commit; main stays.
    proc = push(hf_hub, tmp_path, str(exports["best"]), "--repo", REPO_ID, "--revision", "exp",
                token=None)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    on_exp = commit_of(hf_hub, proc)
    assert on_exp.parent == second.oid and repo.branches["exp"] == on_exp.oid
    assert repo.branches["main"] == second.oid
    on_exp_files = {k: v for k, v in on_exp.files.items() if k != ".gitattributes"}
    assert on_exp_files == folder_files(exports["best"])
    # The model.onnx main holds is not in this export: deleted in the same commit.
    assert {"key": "deletedFile", "value": {"path": "model.onnx"}} in on_exp.operations
    assert "deleted model.onnx" in proc.stdout

    # The same files again: the Hub would record nothing new, and the push says so.
    proc = push(hf_hub, tmp_path, str(exports["best"]), "--repo", REPO_ID, "--revision", "exp",
                token=None)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "nothing changed" in proc.stdout and "no new commit" in proc.stdout
    assert commit_of(hf_hub, proc).oid == on_exp.oid == repo.branches["exp"]
    assert hf_hub.token not in proc.stdout + proc.stderr
    assert not hf_hub.refused and not hf_hub.unhandled


def test_without_a_token_or_with_a_rejected_one_nothing_is_uploaded(hf_hub, exports, tmp_path):
    before = len(hf_hub.requests)
    proc = push(hf_hub, tmp_path, str(exports["best"]), "--repo", f"{USER}/nope",
                token=None)  # fmt: skip
    assert proc.returncode == 2
    assert "no Hugging Face token found" in proc.stderr and "hf auth login" in proc.stderr
    assert "HF_TOKEN" in proc.stderr
    assert len(hf_hub.requests) == before  # not one request

    wrong = "hf_revokedTokenCanary0000"
    proc = push(hf_hub, tmp_path, str(exports["best"]), "--repo", f"{USER}/nope",
                token=wrong)  # fmt: skip
    assert proc.returncode == 2
    assert "rejected the Hugging Face token" in proc.stderr and "hf auth login" in proc.stderr
    assert wrong not in proc.stdout + proc.stderr
    assert hf_hub.requests[before:] == [("GET", "/api/whoami-v2")]
    assert f"{USER}/nope" not in hf_hub.repos


def test_private_is_refused_for_an_existing_public_repo(hf_hub, exports, tmp_path):
    public = hf_hub.add_repo("public-emo", private=False)
    proc = push(hf_hub, tmp_path, str(exports["best"]), "--repo", public.repo_id, "--private",
                token=hf_hub.token)  # fmt: skip
    assert proc.returncode == 2
    assert f"--private: {public.repo_id} already exists and is public" in proc.stderr
    assert len(public.history("main")) == 1  # only the Hub's first commit
    assert not any("/preupload/" in path for _m, path in hf_hub.requests if "public-emo" in path)


def test_bad_arguments_and_a_missing_extra_exit_2_before_any_request(
    exports, tmp_path, capsys, monkeypatch
):
    folder = str(exports["best"])

    def error(*argv: str) -> str:
        assert main(["push", *argv]) == 2
        return capsys.readouterr().err

    assert "expected USER/NAME" in error(folder, "--repo", "just-a-name")
    assert "expected USER/NAME" in error(folder, "--repo", "alice/bad name")
    assert f"{tmp_path}: not a run directory" in error(str(tmp_path), "--repo", "alice/x")
    other = tmp_path / "other-export"
    other.mkdir()
    (other / "config.json").write_text('{"format": "someone-else"}')
    (other / "model.safetensors").write_bytes(b"\0" * 16)
    assert "not an emoconsole export" in error(str(other), "--repo", "alice/x")
    err = error(folder, "--repo", "alice/x", "--include-onnx")
    assert "has no model.onnx" in err and "--format onnx" in err
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if not installed
    assert "pip install 'emoconsole[hub]'" in error(folder, "--repo", "alice/x")
