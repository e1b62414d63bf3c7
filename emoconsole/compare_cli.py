"""``emoconsole compare``: runs and experiments in one table, mean ± std per configuration.

Thin: resolve each argument to run directories (a folder here, a run id through the
ledger and the host as ``download`` does, an experiment directory's experiment.json),
call :func:`emoconsole.comparison.build_table`, print :func:`emoconsole.comparison.render`.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from emoconsole.comparison import (
    EXPERIMENT_FILE,
    FORMATS,
    METRICS,
    CompareError,
    RunRecord,
    build_table,
    load_experiment,
    load_run,
    read_local_json,
    render,
)
from emoconsole.runref import HostOpt, fail, host_for, known_errors, resolve_run

if TYPE_CHECKING:
    from remote.host import Host
    from remote.layout import HostLayout


def compare(
    targets: Annotated[
        list[str],
        typer.Argument(
            metavar="RUN|EXPERIMENT...",
            help="Run directories, run ids (or unique prefixes; a run this console "
            "deployed is read on its host) and experiment directories (holding "
            "experiment.json: their runs group by cell).",
        ),
    ],
    baseline: Annotated[
        str | None,
        typer.Option(
            help="The run (directory or id) whose configuration the others are compared "
            "with (default: the first row). A run not among the others is read and added."
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help=f"Output: {', '.join(FORMATS)}.")] = "table",
    metric: Annotated[
        str,
        typer.Option(help=f"The score the difference to the baseline is on: {', '.join(METRICS)}."),
    ] = "macro_f1",
    host: HostOpt = None,
) -> None:
    """One row per configuration: test accuracy, macro-F1, weighted-F1 and UAR as mean ±
    sample std over its runs (seeds and folds pooled, n shown), per-class recall (mean),
    the majority floor, the difference to the baseline, epochs and hours.

    A configuration is an experiment's cell; for runs named one by one, the resolved
    config less train.seed, data.fold and where files live. The difference is marked
    `*` when |diff| exceeds the larger of the two rows' stds, `?` when either row has
    fewer than 2 finished runs (its spread is unknown). GPU-hours: the summary's
    timings.total_s x world_size for runs on a GPU (CPU runs: 0 GPU-h, wall hours
    shown). Runs without summary.json are listed as unfinished, not averaged.
    """
    if fmt not in FORMATS:
        fail(f"--format {fmt!r} is not one of {', '.join(FORMATS)}", "e.g. --format markdown")
    hosts: dict[str, Host] = {}
    layouts: dict[str, HostLayout] = {}
    try:
        with known_errors():
            records: list[RunRecord] = []
            for target in targets:
                records += _records(target, host, hosts, layouts)
            base_path = None
            if baseline is not None:
                found = _records(baseline, host, hosts, layouts)
                if len(found) != 1:
                    fail(
                        f"--baseline {baseline!r} is an experiment of {len(found)} runs",
                        "name one run of it: its configuration is the baseline row",
                    )
                base = found[0]
                if not any((r.host, r.path) == (base.host, base.path) for r in records):
                    records.append(base)  # its own row, or it joins its configuration's
                base_path = base.path
            table = build_table(records, baseline=base_path, metric=metric)
            typer.echo(render(table, fmt), nl=False)
    except CompareError as exc:
        fail(str(exc), exc.hint)
    finally:
        for h in hosts.values():
            h.close()


def _records(
    target: str, host: str | None, hosts: dict[str, Host], layouts: dict[str, HostLayout]
) -> list[RunRecord]:
    """The runs ``target`` names: one run, or every run of an experiment. ``hosts`` and
    ``layouts``: the hosts opened so far and their workdirs, by name (kept across
    arguments: one connection and one `mkdir -p && pwd` per host)."""
    local = Path(target).expanduser()
    if host in (None, "local") and local.is_dir():
        path = str(local)
        if (local / EXPERIMENT_FILE).is_file():
            return load_experiment(read_local_json, path)
        return [load_run(read_local_json, path)]
    name, run, settled = host_for(target, host)
    h = hosts.get(name)
    if h is None:
        from remote.hosts import get_host

        h = hosts[name] = get_host(name)
    from remote.layout import read_host_json, resolve_layout

    read = partial(read_host_json, h)
    layout = layouts.get(name) or layouts.setdefault(name, resolve_layout(h))  # 1 round trip
    path = layout.run_dir(run) if settled else None
    if path is not None and isinstance(read(f"{path}/{EXPERIMENT_FILE}"), dict):
        return load_experiment(read, path, name)
    if path is None:
        path = layout.run_dir(resolve_run(h, name, run, settled))
    return [load_run(read, path, name)]
