"""A run's model applied to local media files on the host where the run lives.

:func:`predict_on_host` runs ``python -m trainers predict RUN_DIR ... --json``
on the host and yields one :class:`Prediction` per input as its JSON lines
arrive. On this checkout (the ``local`` host without a workdir) the inputs
are read where they are. Elsewhere they are shipped first: each INPUT (a
file, or a folder's files with their relative names, hidden ones skipped) to
``<workdir>/predict/<token>/<i>/<its name>``, removed again when the
prediction ends, fails or is abandoned. Rows name the inputs as the user
typed them, never by the host's temporary paths, so the output is what
``python -m trainers predict`` prints here for the same arguments.

The host's interpreter is the one the run was started with (its launch record
under ``runs/.launches``) when the run is one deploy started, else the host's
configured one; the code is the shipped ``code/current`` (found by
:func:`remote.layout.python_module`, as the watcher finds it).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from remote.errors import RemoteError
from remote.host import Host
from remote.layout import (
    HostLayout,
    is_this_checkout,
    launched_python,
    python_module,
    quote_path,
    remote_run_dir,
    resolve_layout,
)
from trainers.data.files import walk_files
from trainers.inference.table import Prediction

# Long enough for a cold host to import torch and build the model, and for one long
# video's face crops; a host silent for longer than this is taken for a dead link.
IDLE_TIMEOUT_S = 900.0
PREDICT_SUBDIR = "predict"


class PredictError(RemoteError):
    """The prediction could not run at all (no run there, no code, a bad checkpoint);
    one input that fails is a row with an ``error``, not this."""


@dataclass
class _Shipment:
    """Where each input went on the host: ``<root>/<i>/<name>`` stands for ``local``."""

    root: str
    names: list[tuple[str, str]] = field(default_factory=list)  # (host path, local name)
    files: list[tuple[str, str]] = field(default_factory=list)  # (local file, host path)

    def local(self, path: str) -> str:
        for remote, local in self.names:
            if path == remote:
                return local
            if path.startswith(remote + "/"):
                return os.path.join(local, path[len(remote) + 1 :])
        return path

    def key(self, key: str, remote_name: str, local_name: str) -> str:
        # Files not named the RAVDESS way are keyed "<folder>/<stem>" of their path: a
        # top-level input's folder on the host is the shipment's, not the user's.
        remote = PurePosixPath(remote_name)
        if key == f"{remote.parent.name}/{remote.stem}":
            local = Path(local_name)
            return f"{local.parent.name}/{local.stem}"
        return key

    def text(self, text: str) -> str:
        for remote, local in self.names:
            text = text.replace(remote, local)
        return text

    def row(self, row: Prediction) -> Prediction:
        name = self.local(row.input)
        return Prediction(
            input=name,
            key=self.key(row.key, row.input, name),
            probabilities=row.probabilities,
            sources=tuple(self.local(s) for s in row.sources),
            error=None if row.error is None else self.text(row.error),
        )


def plan_shipment(root: str, inputs: Sequence[str]) -> _Shipment:
    """Host paths for existing local inputs under ``root`` (no I/O on the host)."""
    shipment = _Shipment(root)
    for i, given in enumerate(inputs):
        name = Path(given).name or Path(given).resolve().name or "root"
        if name in (".", ".."):
            name = Path(given).resolve().name or "root"
        remote = f"{root}/{i}/{name}"
        shipment.names.append((remote, given.rstrip("/") or given))
        if os.path.isdir(given):
            shipment.files += [
                (path, f"{remote}/{PurePosixPath(*Path(os.path.relpath(path, given)).parts)}")
                for path in walk_files(given)
            ]
        else:
            shipment.files.append((given, remote))
    return shipment


def _ship(host: Host, shipment: _Shipment) -> None:
    folders = sorted({str(PurePosixPath(remote).parent) for _, remote in shipment.files})
    result = host.run(["mkdir", "-p", shipment.root, *folders], timeout=120)
    if not result.ok:
        raise PredictError(f"{host.name}: cannot create {shipment.root}: {result.tail(1)}")
    for local, remote in shipment.files:  # a few media files: one SFTP put each
        host.put(local, remote)


def _remove(host: Host, path: str) -> None:
    result = host.run(["rm", "-rf", path], timeout=120)
    if not result.ok:
        raise PredictError(f"{host.name}: could not remove {path}: {result.tail(1)}")


def _host_run_dir(host: Host, run: str) -> str:
    """The run directory as an absolute path on the host (the command runs in the
    workdir, so a relative path or a ``~`` would name another place there)."""
    run_dir = remote_run_dir(host, run)
    result = host.run(f"cd {quote_path(run_dir)} && pwd", timeout=60)
    if not result.ok:
        raise PredictError(f"{host.name}: no run directory {run_dir}")
    return result.stdout.strip().splitlines()[-1]


def _interpreter(host: Host, layout: HostLayout, run_dir: str) -> str:
    """The python the run was started with, where deploy recorded it: it has torch."""
    if str(PurePosixPath(run_dir).parent) != layout.runs:
        return host.python
    return launched_python(host, layout, PurePosixPath(run_dir).name)


def _missing(inputs: Sequence[str]) -> list[Prediction]:
    # As trainers predict reports them: first, keyed by the path's stem.
    return [
        Prediction(p, Path(p).stem, error="no such file or directory")
        for p in inputs
        if not os.path.exists(p)
    ]


def predict_on_host(
    host: Host,
    run: str,
    inputs: Sequence[str],
    *,
    checkpoint: str = "best",
    device: str = "cpu",
    idle_timeout: float | None = IDLE_TIMEOUT_S,
) -> Generator[Prediction, None, None]:
    """One row per input as the host answers (inputs that do not exist here first).

    ``run``: a run id (under the host's runs/) or the run directory's path there.
    Raises :class:`PredictError` when the prediction cannot run at all: the
    message is trainers predict's own one line (exit 2: no such run directory,
    a checkpoint that cannot be loaded, a bad --device), or what is missing.
    """
    missing = _missing(inputs)
    yield from missing
    present = [p for p in inputs if os.path.exists(p)]
    if not present:
        return
    options = ["--checkpoint", checkpoint, "--device", device, "--json"]
    if is_this_checkout(host):
        argv = python_module(host, "trainers", ["predict", remote_run_dir(host, run), *present])
        yield from _stream(host, argv + options, _Shipment(""), idle_timeout)
        return
    layout = resolve_layout(host)
    run_dir = _host_run_dir(host, run)
    python = _interpreter(host, layout, run_dir)
    shipment = plan_shipment(f"{layout.root}/{PREDICT_SUBDIR}/{secrets.token_hex(6)}", present)
    try:
        _ship(host, shipment)
        args = ["predict", run_dir, *(remote for remote, _ in shipment.names), *options]
        yield from _stream(host, python_module(host, "trainers", args, python=python),
                           shipment, idle_timeout)  # fmt: skip
    except BaseException:
        # The first error is the one to report; a failed clean-up after it is not news.
        with contextlib.suppress(RemoteError):
            _remove(host, shipment.root)
        raise
    _remove(host, shipment.root)


def _stream(
    host: Host, cmd: str | list[str], shipment: _Shipment, idle_timeout: float | None
) -> Iterator[Prediction]:
    failed = 0
    with host.stream(cmd, idle_timeout=idle_timeout) as lines:
        for line in lines:
            if not line.startswith("{"):
                continue  # not a result (a library's print): trainers writes rows as JSON
            row = shipment.row(Prediction.from_json(json.loads(line)))
            failed += not row.ok
            yield row
        code = lines.wait_exit(30.0)
        stderr = shipment.text(lines.stderr_tail)
    if code == 0 or (code == 1 and failed):
        return
    last = next((s for s in reversed(stderr.splitlines()) if s.strip()), "")
    if "No module named" in last:
        where = host.workdir or "its home directory"
        error = PredictError(f"{host.name} has no emoconsole code in {where} ({last})")
        error.hint = f"deploy to {host.name} first: emoconsole deploy MODEL --host {host.name}"
        raise error
    status = "no exit status (the connection dropped?)" if code is None else f"exit {code}"
    raise PredictError(f"{host.name}: trainers predict failed ({status}): "
                       f"{last.removeprefix('error: ') or 'no output'}")  # fmt: skip
