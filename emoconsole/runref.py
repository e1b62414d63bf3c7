"""Which run a user means, and on which host: the argument every run command takes.

A run is named by its id, a unique prefix of one, or its path on the host;
the host comes from ``--host``, else from the ledger of runs this console
deployed, else ``local``. Known errors (every ``RemoteError``) exit 1 with one
line and a hint, never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer

from remote.errors import RemoteError

HostOpt = Annotated[
    str | None,
    typer.Option("--host", help="A host from `emoconsole hosts list` (default: local)."),
]


RUN_HELP = "A run id, or a unique prefix of one (or the run's path on the host)."
LIST_RUNS_HINT = "list runs with: emoconsole runs"


def fail(message: str, hint: str | None = None) -> NoReturn:
    typer.secho(f"error: {message}", fg="red", err=True)
    if hint:
        typer.secho(f"hint: {hint}", err=True)
    raise typer.Exit(1)


def _candidates(ids: list[str]) -> str:
    return ", ".join(sorted(ids))


def host_for(run: str, host: str | None) -> tuple[str, str, bool]:
    """(host name, run as the host knows it, whether that is settled).

    Settled: a path, or a run this console deployed (its ledger), named by its id
    or a unique prefix of it. Otherwise the host is --host, else local, and
    :func:`find_run` settles the id from the host's own list of runs.
    """
    from remote import ledger
    from remote.layout import is_run_path

    if is_run_path(run):
        return host or "local", run, True
    found = ledger.matches(run, host)
    if len(found) == 1:
        ((run_id, row),) = found.items()
        return row["host"], run_id, True
    if len(found) > 1:
        fail(f"{run!r} matches several runs: {_candidates(list(found))}", "type more of the run id")
    return host or "local", run, False


def find_run(target: Any, name: str, run: str) -> str:
    """The id of the one run on the host that ``run`` names, exactly or as a unique
    prefix; exit 1 with the candidates, or with how to list runs, otherwise."""
    from remote.deploy import list_runs

    ids = [row["id"] for row in list_runs(target)]
    if run in ids:
        return run
    matches = [i for i in ids if i.startswith(run)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        fail(
            f"{run!r} matches several runs on {name}: {_candidates(matches)}",
            "type more of the run id",
        )
    fail(f"no run {run!r} on {name}", LIST_RUNS_HINT)


def resolve_run(target: Any, name: str, run: str, settled: bool) -> str:
    return run if settled else find_run(target, name, run)


@contextmanager
def known_errors() -> Iterator[None]:
    """Every ``RemoteError`` as one red line and its hint, exit 1."""
    try:
        yield
    except RemoteError as exc:
        fail(str(exc), exc.hint)
