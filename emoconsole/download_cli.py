"""``emoconsole download``: a run's files, checked by SHA-256, then its summary.md.

Thin: resolve the host and the run, call :func:`remote.download.download_run`
with a progress bar, call :func:`emoconsole.report.write_report`, print. rich,
paramiko and matplotlib are imported inside the command, so ``emoconsole
--help`` pays for none of them.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated

import typer

from emoconsole.runref import HostOpt, host_for, known_errors, resolve_run

if TYPE_CHECKING:
    from remote.download import DownloadReport


def download(
    run: Annotated[
        str,
        typer.Argument(
            help="A run id or a unique prefix of one (found where deploy puts runs: "
            "<workdir>/runs on the host, ./runs for local) or the run directory's path "
            "on the host."
        ),
    ],
    host: HostOpt = None,
    to: Annotated[
        Path, typer.Option(help="Local parent directory: the run lands in TO/<run-id>.")
    ] = Path("downloads"),
    method: Annotated[
        str,
        typer.Option(
            help="How the bytes travel: auto (scp when the OpenSSH client is installed, "
            "else SFTP; a plain copy for local), rsync, scp, sftp or copy."
        ),
    ] = "auto",
) -> None:
    """Download a run: every file checked by SHA-256, then summary.md with plots.

    Without --host, a run this console deployed is fetched from its host.
    Files identical to the local copy are skipped, and an interrupted download
    continues where it stopped when the same command is run again.
    """
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from emoconsole.report import write_report
    from remote.download import DownloadProgress, download_run
    from remote.hosts import get_host
    from remote.layout import remote_run_dir

    # No --host: the host this console deployed the run to (its ledger), else local.
    host, run, settled = host_for(run, host)
    with known_errors():
        target = get_host(host)
        try:
            run = resolve_run(target, host, run, settled)  # an id prefix: the one run it names
            remote_dir = remote_run_dir(target, run)
            name = PurePosixPath(remote_dir).name
            if name in ("", ".", "..", "~"):
                typer.secho(f"error: {run!r} names no run directory", fg="red", err=True)
                raise typer.Exit(1)
            local_dir = to / name
            bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
            )
            task = bar.add_task(remote_dir, total=None)

            def show(p: DownloadProgress) -> None:
                if not bar.live.is_started:  # only once there is something to show
                    bar.start()
                label = f"{p.path} (skipped: identical)" if p.state == "skipped" else p.path
                bar.update(task, description=label, completed=p.done, total=p.total)

            try:
                report = download_run(target, remote_dir, local_dir, progress=show, method=method)
                bar.update(task, description=f"{len(report.files)} files")
            finally:
                if bar.live.is_started:
                    bar.stop()
        except KeyboardInterrupt:
            typer.secho(
                "interrupted: partial files are kept; run the same command to continue",
                err=True,
            )
            raise typer.Exit(130) from None
        except OSError as exc:  # the local disk: full, read-only, permissions
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None
        finally:
            target.close()
    typer.echo(_describe(report, host))
    try:
        summary = write_report(local_dir, report.files)
    except (OSError, ValueError) as exc:
        typer.secho(f"error: files downloaded, but summary.md failed: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"summary: {summary}")


def _describe(report: DownloadReport, host: str) -> str:
    fetched = [f for f in report.files if f.action != "skipped"]
    parts = [f"{len(fetched)} fetched", f"{len(report.skipped)} already identical"]
    resumed = [f for f in report.files if f.action == "resumed"]
    if resumed:
        parts.append(f"{len(resumed)} resumed")
    if report.refetched:
        parts.append(f"{len(report.refetched)} refetched after a failed check")
    if report.missing:
        parts.append(f"{len(report.missing)} vanished on the host: {', '.join(report.missing)}")
    mb = report.bytes_transferred / 1e6
    return (
        f"{host}:{report.remote_dir} -> {report.local_dir}: {', '.join(parts)}; "
        f"{mb:.1f} MB in {report.seconds:.1f} s via {report.method}, every file SHA-256 checked"
    )
