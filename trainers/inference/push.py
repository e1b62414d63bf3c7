"""``python -m trainers push``: an exported model on the Hugging Face Hub.

The pushed files are the export bundle (:mod:`trainers.inference.folder`): a run
directory is exported to a temporary folder first (:func:`export_model`, so the Hub gets
exactly what ``export`` writes), an exported folder is pushed as it is. Everything goes
through huggingface_hub's own client (``HfApi``): ``create_repo(exist_ok=True)``,
``create_branch`` for ``--revision``, then one ``create_commit`` per push, so every push
is one commit in the repository's history and the earlier ones stay reachable.

The Hub skips files whose bytes it already holds at that revision, and a push that
changes nothing makes no commit: the client returns the branch's head, and the push
says so instead of pretending a new commit. ``model.onnx``/``model.pt`` left in the repo
by an earlier push but absent from this bundle are deleted in the same commit, since the
new config.json no longer names them.

The token comes from huggingface_hub's usual places (``HF_TOKEN``, then the file
``hf auth login`` writes under ``HF_HOME``); it is handed to the client and never
printed, logged or written, and error messages are scrubbed of it in case a server
echoes it. huggingface_hub is imported only here: it is the optional extra
``emoconsole[hub]``.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainers.inference import folder as layout
from trainers.rundir import RUN_JSON

SUMMARY = "summary.json"
# What an export may hold, in the order pushed (the weights first: the big upload).
BUNDLE_FILES = (
    layout.WEIGHTS,
    layout.CONFIG,
    layout.CARD,
    SUMMARY,
    layout.ONNX,
    layout.TORCHSCRIPT,
)
# Files a later export may drop (another --format, a folder without summary.json):
# deleted from the repo when this push's bundle lacks them.
OPTIONAL_FILES = (layout.ONNX, layout.TORCHSCRIPT, SUMMARY)
# huggingface_hub's rules for a namespace or a name (utils.validate_repo_id): 1-96 ASCII
# letters, digits, '-', '_', '.'; no '--' or '..'; not starting or ending with '-' or '.'.
REPO_PART = re.compile(r"^(?!-)(?!.*--)(?!.*\.\.)[\w.\-]{1,96}(?<![.-])$", re.ASCII)
LOGIN_HINT = (
    "log in with `hf auth login` (it stores a token under ~/.cache/huggingface/), or set "
    "HF_TOKEN to a token with write access from https://huggingface.co/settings/tokens"
)

Progress = Callable[[str], None]


class PushError(Exception):
    """The push cannot start as asked (arguments, login, the source): nothing was uploaded."""


class PushFailed(Exception):
    """The Hub could not be reached or refused a request once the push was under way."""


@dataclass
class PushResult:
    repo_id: str
    revision: str
    commit_url: str
    commit_oid: str
    new_commit: bool  # False: the revision already held these exact files
    message: str
    files: list[tuple[str, int]] = field(default_factory=list)  # (name, bytes)
    deleted: list[str] = field(default_factory=list)


def check_repo_id(repo_id: str) -> str:
    """``USER/NAME`` (or ``ORG/NAME``): a model repository needs its namespace named, so
    the push never lands under whichever account the token happens to belong to."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(REPO_PART.match(p) for p in parts) or repo_id.endswith(".git"):
        raise PushError(
            f"--repo {repo_id!r}: expected USER/NAME or ORG/NAME (letters, digits, '-', '_', "
            "'.'; e.g. --repo alice/hybrid-attention-ravdess)"
        )
    return repo_id


def _import_hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise PushError(
            "push needs huggingface_hub, which is not installed: install the hub extra "
            "(pip install 'emoconsole[hub]')"
        ) from None
    return huggingface_hub


def _token(hub: Any) -> str:
    token = hub.get_token()
    if not token:
        raise PushError(f"no Hugging Face token found: {LOGIN_HINT}")
    return str(token)


def _source_kind(source: Path, include_onnx: bool) -> str:
    """'folder' (an export, pushed as is) or 'run' (exported first); checked before any
    network call so a wrong path costs nothing."""
    if not source.is_dir():
        raise PushError(f"{source}: no such directory (expected a run directory or an export)")
    if layout.is_exported_folder(source):
        if include_onnx and not (source / layout.ONNX).is_file():
            raise PushError(
                f"--include-onnx: {source} has no {layout.ONNX}; export it with "
                f"`python -m trainers export RUN --out {source} --format onnx`, or push "
                "without --include-onnx"
            )
        return "folder"
    if (source / RUN_JSON).is_file() or (source / "checkpoints").is_dir():
        return "run"
    raise PushError(
        f"{source}: not a run directory (no {RUN_JSON}, no checkpoints/) nor an exported "
        f"folder (no {layout.CONFIG} with {layout.WEIGHTS})"
    )


def commit_message(config: dict[str, Any]) -> tuple[str, str]:
    """The commit's title and description from the bundle's config.json, whose
    ``metrics`` export copied from the run's summary.json: the Hub's history then says
    which run each commit holds and how well it did on its test split."""
    run_id = config.get("run_id") or "unknown run"
    metrics = config.get("metrics") or {}
    test = metrics.get("test") or {}

    def num(key: str, block: dict[str, Any]) -> str:
        value = block.get(key)
        return f"{value:.4f}" if isinstance(value, int | float) else "n/a"

    if test:
        scores = f"test accuracy {num('accuracy', test)}, macro-F1 {num('macro_f1', test)}"
    else:
        scores = "no test metrics (the run has no summary.json)"
    title = f"{config.get('model_name', 'model')} run {run_id}: {scores}"
    checkpoint = config.get("checkpoint") or {}
    lines = [
        f"Run: {run_id}",
        f"Model: {config.get('model_name', '?')}",
        f"Checkpoint: {checkpoint.get('kind', '?')} (epoch {checkpoint.get('epoch', '?')})",
        f"Classes: {', '.join(config.get('classes') or [])}",
    ]
    for split in ("test", "val"):
        block = metrics.get(split) or {}
        if block:
            lines.append(
                f"{split}: "
                + ", ".join(f"{k} {num(k, block)}" for k in ("accuracy", "macro_f1", "uar"))
            )
    floor = metrics.get("majority_floor") or {}
    if floor.get("accuracy") is not None:
        lines.append(f"Majority-class floor (test): accuracy {num('accuracy', floor)}")
    version = (config.get("versions") or {}).get("emoconsole")
    lines.append(f"Pushed with emoconsole {version or '?'} (python -m trainers push)")
    return title, "\n".join(lines)


def bundle_files(folder: Path) -> list[Path]:
    return [folder / name for name in BUNDLE_FILES if (folder / name).is_file()]


def push(
    source: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    include_onnx: bool = False,
    checkpoint: str = "best",
    trust_pickle: bool = False,
    progress: Progress | None = None,
) -> PushResult:
    """Push the export bundle of ``source`` (a run directory or an exported folder) to the
    model repository ``repo_id`` as one commit on ``revision`` (default: main).

    Raises :class:`PushError` before anything is uploaded (bad arguments, no token, a
    token the Hub rejects, a public repo asked to be private, an export that cannot be
    made) and :class:`PushFailed` when the Hub fails once the push is under way."""
    say = progress or (lambda _line: None)
    source = Path(source)
    check_repo_id(repo_id)
    if revision is not None and not revision.strip():
        raise PushError("--revision: empty branch name")
    kind = _source_kind(source, include_onnx)
    config = _read_config(source) if kind == "folder" else None
    hub = _import_hub()
    token = _token(hub)
    api = hub.HfApi(token=token)
    branch = revision or "main"
    with _hub_errors(token, api.endpoint):
        _check_token(api)
    if config is not None:
        with _hub_errors(token, api.endpoint):
            return _push_folder(hub, api, source, config, repo_id, private, branch, say)
    with tempfile.TemporaryDirectory(prefix="emoconsole-push-") as tmp:
        folder = Path(tmp) / "bundle"
        _export(source, folder, include_onnx, checkpoint, trust_pickle, say)
        config = _read_config(folder)
        with _hub_errors(token, api.endpoint):
            return _push_folder(hub, api, folder, config, repo_id, private, branch, say)


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        return layout.read_config(folder)
    except layout.FolderError as exc:
        raise PushError(str(exc)) from None


def _check_token(api: Any) -> None:
    """Ask the Hub who the token belongs to before exporting or creating anything, so a
    revoked or mistyped token fails first, with the fix named."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        api.whoami()
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        if status == 401:
            raise PushError(
                f"{api.endpoint} rejected the Hugging Face token: {LOGIN_HINT}"
            ) from None
        raise


def _export(
    run: Path, folder: Path, include_onnx: bool, checkpoint: str, trust_pickle: bool, say: Progress
) -> None:
    from trainers.inference.bundle import BundleError
    from trainers.inference.export import ExportError, export_model

    fmt = "onnx" if include_onnx else "safetensors"
    say(f"exporting {run} ({checkpoint} checkpoint, {fmt}) ...")
    try:
        export_model(run, folder, fmt, checkpoint, trust_pickle)  # type: ignore[arg-type]
    except (BundleError, ExportError) as exc:
        raise PushError(f"cannot export {run}: {exc}") from None


def _push_folder(
    hub: Any,
    api: Any,
    folder: Path,
    config: dict[str, Any],
    repo_id: str,
    private: bool,
    branch: str,
    say: Progress,
) -> PushResult:
    title, description = commit_message(config)
    files = bundle_files(folder)

    url = api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.model_info(repo_id)
    if private and not info.private:
        # create_repo ignores `private` for a repo that exists: refuse rather than put the
        # model where the user asked it not to be.
        raise PushError(
            f"--private: {repo_id} already exists and is public; nothing was uploaded. Make "
            f"it private in its settings ({url}/settings) or push without --private"
        )
    if branch != "main":
        api.create_branch(repo_id, branch=branch, exist_ok=True)
        info = api.model_info(repo_id, revision=branch)
    head = info.sha
    on_hub = {s.rfilename for s in info.siblings or []}
    say(f"repo {repo_id} ({'private' if info.private else 'public'}), branch {branch}")

    names = {f.name for f in files}
    deleted = [n for n in OPTIONAL_FILES if n in on_hub and n not in names]
    operations: list[Any] = []
    for i, file in enumerate(files, 1):
        op = hub.CommitOperationAdd(path_in_repo=file.name, path_or_fileobj=str(file))
        size = file.stat().st_size
        say(f"[{i}/{len(files)}] {file.name} ({_size(size)})")
        # One file at a time: large files (the weights) go to the Hub's storage now,
        # so each line is real progress; small text files travel in the commit itself.
        api.preupload_lfs_files(repo_id, additions=[op], revision=branch, free_memory=False)
        operations.append(op)
    operations += [hub.CommitOperationDelete(path_in_repo=name) for name in deleted]

    commit = api.create_commit(
        repo_id,
        operations,
        commit_message=title,
        commit_description=description,
        revision=branch,
    )
    return PushResult(
        repo_id=repo_id,
        revision=branch,
        commit_url=str(commit.commit_url),
        commit_oid=str(commit.oid),
        new_commit=commit.oid != head,
        message=title,
        files=[(f.name, f.stat().st_size) for f in files],
        deleted=deleted,
    )


def _size(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} MB"
    if n >= 1_000:
        return f"{n / 1e3:.1f} kB"
    return f"{n} B"


@contextlib.contextmanager
def _hub_errors(token: str, endpoint: str) -> Iterator[None]:
    """The Hub client's errors as :class:`PushFailed` (a :class:`PushError` stays one),
    with the token masked: no message derived from a server's answer prints the secret."""
    try:
        yield
    except PushError as exc:
        raise PushError(str(exc).replace(token, "***")) from None
    except Exception as exc:
        text = str(exc).replace(token, "***").strip()
        first = text.splitlines()[0] if text else ""
        raise PushFailed(f"the push to {endpoint} failed: {type(exc).__name__}: {first}") from None
