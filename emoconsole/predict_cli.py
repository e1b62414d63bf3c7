"""``emoconsole predict``: a run's model on local media files, where the run lives.

Thin: resolve the host and the run, call :func:`remote.predict.predict_on_host`,
print its rows as ``python -m trainers predict`` prints them (the same table,
or the same JSON lines with --json; one ``error: FILE: why`` line on stderr
per failed input; exit 1 if any failed). paramiko is imported inside the
command, so ``emoconsole --help`` pays for none of it.
"""

from __future__ import annotations

import json
import re
from contextlib import closing
from enum import StrEnum
from typing import Annotated

import typer

from emoconsole.runref import HostOpt, host_for, known_errors, resolve_run


class Checkpoint(StrEnum):
    best = "best"
    last = "last"


def _device(value: str) -> str:
    if not re.fullmatch(r"cpu|cuda(:\d+)?", value):
        raise typer.BadParameter(f"{value!r}: expected cpu, cuda or cuda:N")
    return value


def predict(
    run: Annotated[
        str,
        typer.Argument(
            help="A run id or a unique prefix of one, or a run directory's path "
            "(on the host; here for a downloaded run)."
        ),
    ],
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT",
            help="Media files or folders here (sent to the host when the run is elsewhere).",
        ),
    ],
    host: HostOpt = None,
    checkpoint: Annotated[
        Checkpoint, typer.Option(help="Which of the run's checkpoints to use.")
    ] = Checkpoint.best,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per input on stdout, no table.")
    ] = False,
    device: Annotated[
        str,
        typer.Option(
            callback=_device, help="Where the model runs on the host: cpu, cuda or cuda:N."
        ),
    ] = "cpu",
) -> None:
    """Predict the emotion of media files with a trained run's model.

    The run's own preprocessing and stored statistics are applied on the run's
    host (no data set needed there); files and folders given here are sent to
    a temporary directory there and removed afterwards. A run directory here
    (e.g. from `emoconsole download`) needs no host. An input that fails gets
    one line on stderr and the others go on; exit 1 if any failed.
    """
    from remote.hosts import get_host
    from remote.predict import predict_on_host
    from trainers.inference.table import table_header, table_line

    # No --host: the host this console deployed the run to (its ledger), else local.
    name, run, settled = host_for(run, host)
    failed = 0
    header = False
    with known_errors():
        target = get_host(name)
        try:
            run = resolve_run(target, name, run, settled)
            rows = predict_on_host(target, run, inputs, checkpoint=checkpoint.value, device=device)
            # Closed here, before the host: an interrupted prediction's files are removed.
            with closing(rows):
                for row in rows:
                    if not row.ok:
                        failed += 1
                        typer.echo(f"error: {row.input}: {row.error}", err=True)
                    if as_json:
                        typer.echo(json.dumps(row.to_json()))
                    elif row.ok:
                        assert row.probabilities is not None
                        classes = list(row.probabilities)
                        if not header:
                            typer.echo(table_header(classes))
                            header = True
                        typer.echo(
                            table_line(row.input, row.prediction, row.probabilities, classes)
                        )
        except KeyboardInterrupt:
            typer.secho("interrupted", err=True)
            raise typer.Exit(130) from None
        except OSError as exc:  # a local input that cannot be read
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None
        finally:
            target.close()
    if failed:
        raise typer.Exit(1)
