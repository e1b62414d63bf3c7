"""``emoconsole download``: a run's files, checked by SHA-256, then its summary.md.

Thin: resolve the host and the run, call :func:`remote.download.download_run`
with a progress bar, call :func:`emoconsole.report.write_report`, print. rich,
paramiko, boto3 and matplotlib are imported inside the command, so ``emoconsole
--help`` pays for none of them.

From storage: ``--from-storage s3://bucket/prefix`` fetches the run's pushed copy
with :func:`remote.storage.pull_run` (the same SHA-256 checks, atomic landing and
resume). Without it, a run whose ledger row names a ``storage`` falls back to it
when its host cannot give the run (instance terminated, address gone, run
directory missing): the host's error is printed, then the storage copy fetched.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any

import typer

from emoconsole.runref import HostOpt, host_for, known_errors, resolve_run
from remote.errors import RemoteError

if TYPE_CHECKING:
    from remote.download import DownloadReport
    from remote.storage import PullReport, StorageUrl


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
    from_storage: Annotated[
        str | None,
        typer.Option(
            "--from-storage",
            help="Fetch the run from its durable storage (s3://BUCKET/PREFIX) instead of "
            "its host: RUN is the run id or a unique prefix of one stored there.",
        ),
    ] = None,
    endpoint_url: Annotated[
        str | None,
        typer.Option(
            help="The S3 endpoint for storage (an S3-compatible server); default: AWS's "
            "(or the one the run's ledger row names)."
        ),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(help="The storage bucket's AWS region (default: boto3's configuration)."),
    ] = None,
) -> None:
    """Download a run: every file checked by SHA-256, then summary.md with plots.

    Without --host, a run this console deployed is fetched from its host.
    Files identical to the local copy are skipped, and an interrupted download
    continues where it stopped when the same command is run again.
    """
    from emoconsole.report import write_report
    from remote.download import DownloadProgress, download_run
    from remote.hosts import get_host
    from remote.layout import remote_run_dir

    if from_storage is not None:
        with known_errors():
            from remote.storage import StorageUrl

            url = StorageUrl.parse(from_storage, "--from-storage")
            _from_storage(run, url, endpoint_url, region, to)
        return

    # No --host: the host this console deployed the run to (its ledger), else local.
    host, run, settled = host_for(run, host)
    stored = _stored_copy(run, host) if settled else None
    host_failed: RemoteError | None = None
    with known_errors():
        target = None
        try:
            target = get_host(host)
            run = resolve_run(target, host, run, settled)  # an id prefix: the one run it names
            remote_dir = remote_run_dir(target, run)
            name = PurePosixPath(remote_dir).name
            if name in ("", ".", "..", "~"):
                typer.secho(f"error: {run!r} names no run directory", fg="red", err=True)
                raise typer.Exit(1)
            local_dir = to / name
            bar = _transfer_bar()
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
        except RemoteError as exc:
            if stored is None:
                raise
            host_failed = exc  # the host cannot give the run: its storage copy can
        finally:
            if target is not None:
                target.close()
    if host_failed is not None:
        assert stored is not None
        with known_errors():
            from remote.storage import StorageUrl

            url = StorageUrl.parse(stored["storage"], f"the ledger's storage of run {run}")
            typer.secho(
                f"{host}: {host_failed}; fetching run {run} from its storage {url} instead",
                err=True,
            )
            _from_storage(
                run,
                url,
                endpoint_url or stored.get("endpoint_url"),
                region or stored.get("region"),
                to,
            )
        return
    typer.echo(_describe(report, host))
    try:
        summary = write_report(local_dir, report.files)
    except (OSError, ValueError) as exc:
        typer.secho(f"error: files downloaded, but summary.md failed: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"summary: {summary}")


def _transfer_bar() -> Any:
    """The one progress bar of a download, from a host or from storage (rich: lazily)."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )


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


def _stored_copy(run: str, host: str) -> dict | None:
    """The ledger row of a run this console deployed with storage, else None."""
    from remote import ledger

    row = ledger.matches(run, host).get(run)
    return row if row and row.get("storage") else None


def _from_storage(
    run: str, url: StorageUrl, endpoint_url: str | None, region: str | None, to: Path
) -> None:
    """Pull a run from storage with a progress bar, then write its summary.md."""
    from emoconsole.report import write_report
    from remote.storage import StorageProgress, pull_run, resolve_stored_run, s3_client

    client = s3_client(endpoint_url, region)
    run_id = resolve_stored_run(url, run, client)
    local_dir = to / run_id
    bar = _transfer_bar()
    task = bar.add_task(str(url), total=None)

    def show(p: StorageProgress) -> None:
        if not bar.live.is_started:
            bar.start()
        label = f"{p.path} (skipped: identical)" if p.state == "skipped" else p.path
        bar.update(task, description=label, completed=p.done, total=p.total)

    try:
        report = pull_run(url, run_id, local_dir, client, progress=show)
        bar.update(task, description=f"{len(report.files)} files")
    except KeyboardInterrupt:
        typer.secho(
            "interrupted: finished files are kept; run the same command to continue", err=True
        )
        raise typer.Exit(130) from None
    except OSError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    finally:
        if bar.live.is_started:
            bar.stop()
    typer.echo(_describe_pull(report))
    try:
        summary = write_report(local_dir, report.files)
    except (OSError, ValueError) as exc:
        typer.secho(f"error: files downloaded, but summary.md failed: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"summary: {summary}")


def _describe_pull(report: PullReport) -> str:
    fetched = [f for f in report.files if f.action == "fetched"]
    parts = [f"{len(fetched)} fetched", f"{len(report.skipped)} already identical"]
    if report.newer:
        parts.append(f"{len(report.newer)} newer than the manifest: {', '.join(report.newer)}")
    mb = report.bytes_transferred / 1e6
    return (
        f"{report.url}/{report.run_id} -> {report.dest}: {', '.join(parts)}; "
        f"{mb:.1f} MB in {report.seconds:.1f} s, every file SHA-256 checked"
    )
