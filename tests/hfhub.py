"""A loopback stand-in for the Hugging Face Hub's HTTP API, as far as a push uses it.

The Hub cannot be reached from here, so this server answers the requests
huggingface_hub's ``HfApi`` makes to push a model (read from huggingface_hub 2.x's
hf_api.py, _commit_api.py and lfs.py), with the Hub's rules, on 127.0.0.1; point the
client at it with ``HF_ENDPOINT``:

- ``GET /api/whoami-v2``: the token's user; 401 for any other token (every ``/api/``
  route checks ``Authorization: Bearer <token>`` the same way);
- ``POST /api/repos/create`` ``{name, organization, visibility}``: a new repository with
  the Hub's first commit (a ``.gitattributes`` that routes binary formats to LFS) on
  ``main``; 409 with the repo's ``url`` when it exists (what ``exist_ok=True`` expects);
  403 for another user's namespace;
- ``GET /api/models/NS/NAME[/revision/REV]``: id, sha (the branch head), private,
  siblings (the files at that revision); 404 ``RepoNotFound``/``RevisionNotFound``;
- ``POST /api/models/NS/NAME/branch/BRANCH`` ``{startingPoint}``: a branch from main's
  head (or the given one); 409 if it exists;
- ``POST /api/models/NS/NAME/preupload/REV``: per file ``uploadMode`` ``lfs`` (a
  ``.gitattributes`` pattern, over 10 MB, or a NUL byte in the sample, as the Hub
  decides) or ``regular``, and the ``oid`` of the file already at that path, which the
  client compares to skip unchanged files;
- ``POST /NS/NAME.git/info/lfs/objects/batch`` and the ``basic`` transfer it hands out
  (``PUT`` of the bytes to an upload URL with no auth, like a presigned S3 URL, then a
  ``verify`` POST); an object already stored gets no ``actions``;
- ``POST /api/validate-yaml``: the model card's front matter must be closed;
- ``POST /api/models/NS/NAME/commit/REV``: the NDJSON commit (``header``, ``file`` with
  base64 content, ``lfsFile`` referring to an uploaded object, ``deletedFile``) applied
  on top of the branch head; answers ``commitOid`` and ``commitUrl``.

It is a stand-in, not the Hub: no git objects (a commit's oid is a hash of its parent,
message and files), no Xet storage (tests set ``HF_HUB_DISABLE_XET=1`` so large files
take the LFS path, which huggingface_hub keeps for servers without Xet), no pull
requests, one user. Every request is recorded (:attr:`HubStandIn.requests`) and any
route it does not know answers 404 and is listed in :attr:`HubStandIn.unhandled`, so a
test sees when the client starts calling something new.

    pytest_plugins = ["tests.hfhub"]   # then ask for the ``hf_hub`` fixture
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

USER = "alice"
TOKEN = "hf_standin" + "CANARY" + "0123456789abcdef"  # a canary: must never be printed
GITATTRIBUTES = b"".join(
    b"%s filter=lfs diff=lfs merge=lfs -text\n" % p
    for p in (b"*.safetensors", b"*.onnx", b"*.pt", b"*.bin")
)
LFS_PATTERNS = [line.split()[0] for line in GITATTRIBUTES.decode().splitlines()]
REGULAR_MAX = 10 * 1024 * 1024  # the Hub stores larger files in LFS whatever their name
LFS_BATCH = ["info", "lfs", "objects", "batch"]


def _json(body: bytes) -> dict[str, Any]:
    """A request's JSON object; {} for none (or for the commit's NDJSON, parsed apart)."""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def git_blob_oid(data: bytes) -> str:
    """What the Hub reports as a regular file's oid (and huggingface_hub compares)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    parent: str | None
    summary: str
    description: str
    files: dict[str, bytes]  # the whole tree after this commit
    lfs: set[str]  # paths stored in LFS
    # The NDJSON lines other than the header, as received: what this commit sent.
    operations: list[dict[str, Any]] = field(default_factory=list)

    def oid_of(self, path: str) -> str:
        data = self.files[path]
        return hashlib.sha256(data).hexdigest() if path in self.lfs else git_blob_oid(data)


@dataclass
class Repo:
    repo_id: str
    private: bool
    created_with: dict[str, Any]  # the create request's JSON
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)  # name -> head oid

    def head(self, branch: str) -> Commit:
        return self.commits[self.branches[branch]]

    def history(self, branch: str) -> list[Commit]:
        """The branch's commits, oldest first (the creation commit included)."""
        out = []
        oid: str | None = self.branches[branch]
        while oid is not None:
            out.append(self.commits[oid])
            oid = self.commits[oid].parent
        return out[::-1]


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubStandIn:
    """The server and what it received; ``url`` is the ``HF_ENDPOINT`` to give clients."""

    user = USER
    token = TOKEN

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> bytes
        self.requests: list[tuple[str, str]] = []  # (method, path), in order
        self.refused: list[str] = []  # paths answered 401
        self.unhandled: list[tuple[str, str]] = []
        self.cards: list[str] = []  # README.md contents sent to validate-yaml
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="hf-hub-stand-in",
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HubStandIn:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def env(self, home: Path, token: str | None = TOKEN) -> dict[str, str]:
        """The variables a push subprocess needs to talk to this stand-in: its own
        HF_HOME (no user token file, no cache), the token in HF_TOKEN unless None, and
        Xet off (the stand-in speaks the LFS protocol, not Xet's)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("HF_", "HUGGING_FACE_")) and k != "HUGGINGFACE_HUB_CACHE"
        }
        env.update(
            HF_ENDPOINT=self.url,
            HF_HOME=str(home),
            HF_HUB_DISABLE_XET="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
        )
        if token is not None:
            env["HF_TOKEN"] = token
        return env

    # -- what a test sets up ----------------------------------------------------------------

    def add_repo(self, name: str, private: bool = False) -> Repo:
        """A repository made earlier (e.g. on the website)."""
        with self._lock:
            return self._create(f"{self.user}/{name}", private, {"name": name, "seeded": True})

    # -- the Hub's rules ----------------------------------------------------------------------

    def _create(self, repo_id: str, private: bool, payload: dict[str, Any]) -> Repo:
        repo = Repo(repo_id, private, payload)
        first = self._commit(
            repo, None, "initial commit", "", {".gitattributes": GITATTRIBUTES}, set(), []
        )
        repo.branches["main"] = first.oid
        self.repos[repo_id] = repo
        return repo

    def _commit(
        self,
        repo: Repo,
        parent: Commit | None,
        summary: str,
        description: str,
        files: dict[str, bytes],
        lfs: set[str],
        operations: list[dict[str, Any]],
    ) -> Commit:
        digest = hashlib.sha1((parent.oid if parent else "").encode() + summary.encode())
        for path in sorted(files):
            digest.update(path.encode() + hashlib.sha256(files[path]).digest())
        digest.update(secrets.token_bytes(8))  # two identical commits are two commits
        commit = Commit(
            digest.hexdigest(),
            parent.oid if parent else None,
            summary,
            description,
            files,
            lfs,
            operations,
        )
        repo.commits[commit.oid] = commit
        return commit

    def _repo(self, ns: str, name: str) -> Repo:
        repo = self.repos.get(f"{ns}/{name}")
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _branch(self, repo: Repo, revision: str) -> str:
        if revision not in repo.branches:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return revision

    def _is_lfs(self, path: str, size: int, sample: bytes) -> bool:
        name = path.rsplit("/", 1)[-1]
        return (
            any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS)
            or size > REGULAR_MAX
            or b"\0" in sample
        )

    def _route(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        parts = [unquote(p) for p in path.split("/")[1:]]
        if method == "PUT" and parts[:1] == ["lfs-upload"]:
            return self._lfs_put(parts[-1], body)
        data = _json(body)
        if parts[:1] == ["lfs-verify"] and method == "POST":
            ok = data.get("oid") in self.lfs_objects
            return (200, {}) if ok else (404, {"error": "object not uploaded"})
        if len(parts) == 6 and parts[1].endswith(".git") and parts[2:] == LFS_BATCH:
            return self._lfs_batch(data)
        if parts == ["api", "whoami-v2"] and method == "GET":
            return 200, {
                "type": "user",
                "name": self.user,
                "auth": {
                    "type": "access_token",
                    "accessToken": {"displayName": "stand-in", "role": "write"},
                },
            }
        if parts == ["api", "repos", "create"] and method == "POST":
            return self._create_repo(data)
        if parts == ["api", "validate-yaml"] and method == "POST":
            return self._validate_yaml(data)
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo = self._repo(parts[2], parts[3])
            rest = parts[4:]
            if method == "GET" and not rest:
                return 200, self._info(repo, "main")
            if method == "GET" and len(rest) == 2 and rest[0] == "revision":
                return 200, self._info(repo, self._branch(repo, rest[1]))
            if method == "POST" and len(rest) == 2 and rest[0] == "branch":
                return self._create_branch(repo, rest[1], data)
            if method == "POST" and len(rest) == 2 and rest[0] == "preupload":
                return self._preupload(repo, self._branch(repo, rest[1]), data)
            if method == "POST" and len(rest) == 2 and rest[0] == "commit":
                return self._apply_commit(repo, self._branch(repo, rest[1]), body)
        raise HubError(404, "Not Found")

    def _create_repo(self, data: dict[str, Any]) -> tuple[int, Any]:
        ns, name = data.get("organization") or self.user, data.get("name") or ""
        if ns != self.user:
            raise HubError(403, f"You don't have the rights to create a model under {ns}")
        repo_id = f"{ns}/{name}"
        if repo_id in self.repos:
            return 409, {
                "error": "You already created this model repo",
                "url": f"{self.url}/{repo_id}",
            }
        self._create(repo_id, data.get("visibility") == "private", data)
        return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo_id}

    def _info(self, repo: Repo, branch: str) -> dict[str, Any]:
        head = repo.head(branch)
        return {
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "sha": head.oid,
            "private": repo.private,
            "siblings": [{"rfilename": p} for p in sorted(head.files)],
        }

    def _create_branch(self, repo: Repo, branch: str, data: dict[str, Any]) -> tuple[int, Any]:
        if branch in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        start = data.get("startingPoint") or "main"
        oid = repo.branches.get(start, start)
        if oid not in repo.commits:
            raise HubError(404, f"Invalid rev id: {start}", "RevisionNotFound")
        repo.branches[branch] = oid
        return 200, {}

    def _preupload(self, repo: Repo, branch: str, data: dict[str, Any]) -> tuple[int, Any]:
        head = repo.head(branch)
        files = []
        for f in data.get("files") or []:
            sample = base64.b64decode(f.get("sample") or "")
            lfs = self._is_lfs(f["path"], int(f.get("size") or 0), sample)
            entry = {
                "path": f["path"],
                "uploadMode": "lfs" if lfs else "regular",
                "shouldIgnore": False,
            }
            if f["path"] in head.files:
                entry["oid"] = head.oid_of(f["path"])
            files.append(entry)
        return 200, {"files": files, "commitOid": head.oid}

    def _lfs_batch(self, data: dict[str, Any]) -> tuple[int, Any]:
        if data.get("operation") != "upload":
            raise HubError(400, "only uploads are served here")
        objects = []
        for obj in data.get("objects") or []:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.lfs_objects:
                entry["actions"] = {
                    "upload": {"href": f"{self.url}/lfs-upload/{obj['oid']}"},
                    "verify": {"href": f"{self.url}/lfs-verify/{obj['oid']}"},
                }
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}

    def _lfs_put(self, oid: str, body: bytes) -> tuple[int, Any]:
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, f"content does not match its oid {oid}")
        self.lfs_objects[oid] = body
        return 200, {}

    def _validate_yaml(self, data: dict[str, Any]) -> tuple[int, Any]:
        content = str(data.get("content") or "")
        self.cards.append(content)
        if content.startswith("---") and "\n---" not in content[3:]:
            return 400, {"errors": [{"message": "front matter is not closed by ---"}]}
        return 200, {"errors": [], "warnings": []}

    def _apply_commit(self, repo: Repo, branch: str, body: bytes) -> tuple[int, Any]:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the commit must start with a header line")
        header = lines[0]["value"]
        parent = repo.head(branch)
        files, lfs = dict(parent.files), set(parent.lfs)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            path = value["path"]
            if key == "file":
                files[path] = base64.b64decode(value["content"])
                lfs.discard(path)
            elif key == "lfsFile":
                if value["oid"] not in self.lfs_objects:
                    raise HubError(400, f"{path}: LFS object {value['oid']} was never uploaded")
                files[path] = self.lfs_objects[value["oid"]]
                lfs.add(path)
            elif key == "deletedFile":
                if path not in files:
                    raise HubError(
                        404, f"A file with this name doesn't exist: {path}", "EntryNotFound"
                    )
                del files[path]
                lfs.discard(path)
            else:
                raise HubError(400, f"operation {key!r} is not served by the stand-in")
        commit = self._commit(
            repo,
            parent,
            header.get("summary", ""),
            header.get("description", ""),
            files,
            lfs,
            lines[1:],
        )
        repo.branches[branch] = commit.oid
        return 200, {
            "success": True,
            "commitOid": commit.oid,
            "commitUrl": f"{self.url}/{repo.repo_id}/commit/{commit.oid}",
            "hookOutput": "",
            "pullRequestUrl": None,
        }

    # -- the HTTP side ------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _answer(self, status: int, payload: Any, code: str | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if code:
                    self.send_header("X-Error-Code", code)
                self.end_headers()
                self.wfile.write(data)

            def _serve(self) -> None:
                path = urlsplit(self.path).path
                body = self._body()
                with stand_in._lock:
                    stand_in.requests.append((self.command, path))
                upload = path.startswith("/lfs-upload/")  # a presigned URL: no token
                if not upload and self.headers.get("Authorization") != f"Bearer {stand_in.token}":
                    stand_in.refused.append(path)
                    return self._answer(
                        401, {"error": "Invalid credentials in Authorization header"}
                    )
                try:
                    with stand_in._lock:
                        status, payload = stand_in._route(self.command, path, body)
                except HubError as exc:
                    if exc.status == 404 and exc.message == "Not Found":
                        stand_in.unhandled.append((self.command, path))
                    return self._answer(exc.status, {"error": exc.message}, exc.code)
                return self._answer(status, payload)

            do_GET = do_POST = do_PUT = _serve

        return Handler


@pytest.fixture(scope="module")
def hf_hub() -> Iterator[HubStandIn]:
    """One Hub stand-in on loopback for a test module (its repositories accumulate)."""
    server = HubStandIn().start()
    yield server
    server.close()
