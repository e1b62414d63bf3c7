"""The comparison table: runs grouped by configuration, their test scores as mean ± std.

Pure and stdlib-only (no torch, no UI, no SSH): it reads run directories and experiment
directories through a ``read_json(path) -> object | None`` callable, so the same code
reads a folder here (:func:`read_local_json`) or one on a host (``remote.layout.
read_host_json`` bound to the host). ``emoconsole compare`` and the dashboard's compare
screen both build their table with :func:`build_table` and print it with
:func:`render`.

What a row holds, and the rules behind it:

- one row per configuration: an experiment's runs group by their ``cell`` (within
  that experiment); runs named
  one by one group by their resolved config less the seed, the fold and where files
  live (:data:`POOLED_KEYS`), and by model. Seeds, split seeds and folds are pooled.
- test ``accuracy``, ``macro_f1``, ``weighted_f1``, ``uar`` (summary.json's ``test``
  block) as mean ± sample std (n-1), with n; the std of one run is undefined (``-``);
- per-class recall: the mean over the group of ``test.per_class[class].recall``;
- the majority floor: summary.json's ``majority_floor`` (mean over the group: folds
  test different actors, so their floors differ);
- the difference to the baseline row's mean on one metric, and whether it exceeds
  the spread: ``|diff| > max(std of the row, std of the baseline)``; with fewer than
  two runs on either side the spread is unknown and nothing is claimed (``?``);
- epochs: mean best epoch / mean epochs run;
- GPU-hours: ``timings.total_s * world_size / 3600`` summed over the group's runs whose
  ``device`` is not ``cpu``; wall hours: ``timings.total_s / 3600`` summed over all.

A run without summary.json (running, stopped, failed) is counted in ``unfinished`` and
listed by the renderers, never averaged.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainers.config import flatten
from trainers.rundir import EXPERIMENT_FORMAT, EXPERIMENT_JSON

EXPERIMENT_FILE = EXPERIMENT_JSON
SUMMARY_FILE = "summary.json"
MANIFEST_FILE = "run.json"

METRICS = ("accuracy", "macro_f1", "weighted_f1", "uar")
METRIC_LABELS = {"accuracy": "acc", "macro_f1": "macro-F1", "weighted_f1": "weighted-F1",
                 "uar": "UAR"}  # fmt: skip
# Config keys that differ between repeats of one configuration, or only say where
# files live: runs differing in these alone are the same configuration. The split
# seed is a repeat too: which actors are held out is a draw, and a number from one
# draw is an anecdote (the spread over draws is what a comparison needs).
POOLED_KEYS = frozenset({
    "train.seed", "data.fold", "data.split_seed", "data.cache_dir", "data.root",
    "train.out", "train.run_id",
})  # fmt: skip
FORMATS = ("table", "markdown", "csv")

ReadJson = Callable[[str], object | None]


class CompareError(Exception):
    """An argument names nothing comparable; the message says what and what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def read_local_json(path: str) -> object | None:
    """A JSON file here, or None when it is missing or not (yet) whole JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


@dataclass
class RunRecord:
    """One run as the table sees it: where it is and its two JSON files."""

    run_id: str
    host: str
    path: str
    manifest: dict[str, Any] | None
    summary: dict[str, Any] | None
    cell: dict[str, Any] | None = None  # from experiment.json, or run.json's "experiment"
    experiment: str | None = None
    status: str | None = None  # the experiment's or run.json's last known status
    model: str | None = None  # the experiment's model, for a run not started yet

    @property
    def finished(self) -> bool:
        return isinstance(self.summary, dict) and isinstance(self.summary.get("test"), dict)


def load_run(read_json: ReadJson, path: str, host: str = "local") -> RunRecord:
    """The run directory at ``path``: run.json and summary.json, either may be missing
    (a run not started yet, or not finished). Raises :class:`CompareError` when neither
    is there: ``path`` is then no run directory."""
    base = path.rstrip("/")
    manifest = read_json(f"{base}/{MANIFEST_FILE}")
    summary = read_json(f"{base}/{SUMMARY_FILE}")
    manifest = manifest if isinstance(manifest, dict) else None
    summary = summary if isinstance(summary, dict) else None
    if manifest is None and summary is None:
        raise CompareError(
            f"{host}:{base} has neither {MANIFEST_FILE} nor {SUMMARY_FILE}",
            "pass a run directory, a run id, or an experiment directory (with experiment.json)",
        )
    run_id = str((manifest or {}).get("id") or (summary or {}).get("run_id") or base.split("/")[-1])
    exp = (manifest or {}).get("experiment")
    cell = exp.get("cell") if isinstance(exp, dict) and isinstance(exp.get("cell"), dict) else None
    return RunRecord(
        run_id=run_id, host=host, path=base, manifest=manifest, summary=summary, cell=cell,
        experiment=str(exp.get("id")) if isinstance(exp, dict) and exp.get("id") else None,
        status=(manifest or {}).get("status"),
    )  # fmt: skip


def load_experiment(read_json: ReadJson, path: str, host: str = "local") -> list[RunRecord]:
    """Every run an experiment directory lists (experiment.json), with its cell. A run
    whose directory is not written yet is kept, as unfinished."""
    base = path.rstrip("/")
    doc = read_json(f"{base}/{EXPERIMENT_FILE}")
    if not isinstance(doc, dict):
        raise CompareError(f"{host}:{base}/{EXPERIMENT_FILE} is missing or not JSON")
    fmt = doc.get("format")
    if fmt != EXPERIMENT_FORMAT:
        raise CompareError(
            f"{host}:{base}/{EXPERIMENT_FILE}: format {fmt!r}, expected {EXPERIMENT_FORMAT!r}",
            "update emoconsole to read experiments written by a newer trainer",
        )
    runs = doc.get("runs")
    if not isinstance(runs, list):
        raise CompareError(f"{host}:{base}/{EXPERIMENT_FILE}: key 'runs' is not a list")
    exp_id = str(doc.get("id") or base.split("/")[-1])
    records = []
    for entry in runs:
        if not isinstance(entry, dict) or not entry.get("dir"):
            raise CompareError(f"{host}:{base}/{EXPERIMENT_FILE}: a run without 'dir': {entry!r}")
        run_path = f"{base}/{entry['dir']}"
        try:
            record = load_run(read_json, run_path, host)
        except CompareError:  # listed, not started yet
            record = RunRecord(str(entry.get("run_id") or entry["dir"]), host, run_path, None, None)
        cell = entry.get("cell")
        record.cell = cell if isinstance(cell, dict) else record.cell or {}
        record.experiment = exp_id
        record.model = record.model or doc.get("model")
        record.status = record.status or entry.get("status")
        records.append(record)
    return records


# -- grouping --------------------------------------------------------------------------------


def _config_of(record: RunRecord) -> dict[str, Any]:
    """What identifies the run's configuration: its cell when it has one, else its
    resolved config less :data:`POOLED_KEYS`, with the model."""
    model = (
        (record.manifest or {}).get("model") or (record.summary or {}).get("model") or record.model
    )
    if record.cell is not None:
        # The experiment too: two experiments' equal cells differ in their fixed settings.
        cell = {str(k): v for k, v in record.cell.items()}
        return {"model": model, "experiment": record.experiment, **cell}
    config = (record.manifest or {}).get("config")
    flat = flatten(config) if isinstance(config, dict) else {}
    return {"model": model, **{k: v for k, v in flat.items() if k not in POOLED_KEYS}}


def _key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def _value(v: Any) -> str:
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def group_runs(records: Iterable[RunRecord]) -> list[tuple[str, list[RunRecord]]]:
    """(label, runs) per configuration, in the order the configurations first appear.
    The label names what differs between the groups (``key=value ...``), the model
    when nothing does, and the run id of a group of one without a config."""
    groups: dict[str, list[RunRecord]] = {}
    configs: dict[str, dict[str, Any]] = {}
    for record in records:
        config = _config_of(record)
        key = _key(config)
        groups.setdefault(key, []).append(record)
        configs[key] = config
    keys = list(groups)
    all_names = sorted({name for c in configs.values() for name in c})
    varying = [
        name for name in all_names
        if len({_value(configs[k].get(name, "<unset>")) for k in keys}) > 1
    ]  # fmt: skip
    out = []
    for key in keys:
        config = configs[key]
        parts = [f"{name}={_value(config.get(name, '-'))}" for name in varying if name != "model"]
        if "model" in varying or not parts:
            parts.insert(0, str(config.get("model") or groups[key][0].run_id))
        out.append((" ".join(parts), groups[key]))
    return out


# -- the table -------------------------------------------------------------------------------


@dataclass
class Stat:
    """mean ± sample std over n runs (std None when n < 2)."""

    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat:
        xs = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        if not xs:
            return cls(None, None, 0)
        return cls(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None, len(xs))


@dataclass
class Row:
    label: str
    runs: list[RunRecord]
    metrics: dict[str, Stat]
    recall: dict[str, float | None]  # class -> mean test recall
    floor: Stat  # majority floor on the diff metric
    best_epoch: Stat
    epochs_run: Stat
    gpu_hours: float
    wall_hours: float
    devices: list[str]
    diff: float | None = None  # row mean - baseline mean, on Table.metric
    beyond_spread: bool | None = None  # None: the spread is unknown (n < 2 on a side)
    is_baseline: bool = False

    @property
    def finished(self) -> list[RunRecord]:
        return [r for r in self.runs if r.finished]

    @property
    def unfinished(self) -> list[RunRecord]:
        return [r for r in self.runs if not r.finished]


@dataclass
class Table:
    rows: list[Row]
    classes: list[str]
    metric: str
    baseline: int | None  # index into rows
    notes: list[str] = field(default_factory=list)


def _hours(summary: dict[str, Any]) -> tuple[float, float]:
    """(GPU-hours, wall hours) of one finished run."""
    timings = summary.get("timings") if isinstance(summary.get("timings"), dict) else {}
    total = timings.get("total_s")
    if not isinstance(total, (int, float)):
        return 0.0, 0.0
    wall = total / 3600
    device = str(summary.get("device") or "cpu")
    world = summary.get("world_size") if isinstance(summary.get("world_size"), int) else 1
    return (0.0 if device.startswith("cpu") else wall * max(world, 1)), wall


def _row(label: str, runs: list[RunRecord], metric: str) -> Row:
    done = [r.summary for r in runs if r.finished]
    assert all(isinstance(s, dict) for s in done)
    tests = [s["test"] for s in done]  # type: ignore[index]
    classes: list[str] = []
    for s in done:
        for c in s.get("classes") or []:  # type: ignore[union-attr]
            if c not in classes:
                classes.append(c)
    recall = {
        c: Stat.of((t.get("per_class") or {}).get(c, {}).get("recall") for t in tests).mean
        for c in classes
    }
    hours = [_hours(s) for s in done]  # type: ignore[arg-type]
    floors = [(s.get("majority_floor") or {}).get(metric) for s in done]  # type: ignore[union-attr]
    return Row(
        label=label,
        runs=runs,
        metrics={m: Stat.of(t.get(m) for t in tests) for m in METRICS},
        recall=recall,
        floor=Stat.of(floors),
        best_epoch=Stat.of(s.get("best_epoch") for s in done),  # type: ignore[union-attr]
        epochs_run=Stat.of(s.get("epochs_run") for s in done),  # type: ignore[union-attr]
        gpu_hours=sum(h[0] for h in hours),
        wall_hours=sum(h[1] for h in hours),
        devices=sorted({str(s.get("device") or "?") for s in done}),  # type: ignore[union-attr]
    )


def build_table(
    records: Iterable[RunRecord], *, baseline: str | None = None, metric: str = "macro_f1"
) -> Table:
    """The table over ``records``. ``baseline``: a run id (or unique prefix) among them
    whose row the others are compared with; None: the first row."""
    if metric not in METRICS:
        raise CompareError(f"--metric {metric!r} is not one of {', '.join(METRICS)}")
    records = list(records)
    if not records:
        raise CompareError("nothing to compare", "pass run ids, run directories or experiments")
    rows = [_row(label, runs, metric) for label, runs in group_runs(records)]
    classes: list[str] = []
    for row in rows:
        classes += [c for c in row.recall if c not in classes]
    base_index: int | None = 0
    if baseline is not None:
        hits = [i for i, row in enumerate(rows)
                if any(r.run_id == baseline or r.path == baseline for r in row.runs)]  # fmt: skip
        if not hits:
            hits = sorted({i for i, row in enumerate(rows)
                           for r in row.runs if r.run_id.startswith(baseline)})  # fmt: skip
        if len(hits) != 1:
            raise CompareError(
                f"--baseline {baseline!r} names {'no' if not hits else 'more than one'} "
                "configuration among the compared runs",
                "pass the id of one run being compared (it is also added when not)",
            )
        base_index = hits[0]
    table = Table(rows=rows, classes=classes, metric=metric, baseline=base_index)
    base = rows[base_index] if base_index is not None else None
    if base is not None:
        base.is_baseline = True
        b = base.metrics[metric]
        for row in rows:
            s = row.metrics[metric]
            if row is base or s.mean is None or b.mean is None:
                continue
            row.diff = s.mean - b.mean
            if s.std is not None and b.std is not None:
                row.beyond_spread = abs(row.diff) > max(s.std, b.std)
    return table


# -- rendering -------------------------------------------------------------------------------


def _ms(stat: Stat, digits: int = 4) -> str:
    if stat.mean is None:
        return "-"
    if stat.std is None:
        return f"{stat.mean:.{digits}f}"
    return f"{stat.mean:.{digits}f} ± {stat.std:.{digits}f}"


def _num(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _epochs(row: Row) -> str:
    def one(s: Stat) -> str:
        if s.mean is None:
            return "-"
        return str(int(s.mean)) if s.mean == int(s.mean) else f"{s.mean:.1f}"

    return f"{one(row.best_epoch)}/{one(row.epochs_run)}"


def _diff(row: Row) -> str:
    if row.is_baseline:
        return "baseline"
    if row.diff is None:
        return "-"
    mark = {True: " *", False: "", None: " ?"}[row.beyond_spread]
    return f"{row.diff:+.4f}{mark}"


def _hours_text(row: Row) -> str:
    if row.gpu_hours == 0 and row.devices and all(d.startswith("cpu") for d in row.devices):
        return f"0 GPU-h (cpu, {row.wall_hours:.3f} h wall)"
    return f"{row.gpu_hours:.3f} GPU-h ({row.wall_hours:.3f} h wall)"


def header(table: Table) -> list[str]:
    """The display columns, in order (table and markdown)."""
    m = METRIC_LABELS[table.metric]
    return [
        "configuration", "n", *[METRIC_LABELS[k] for k in METRICS],
        *[f"recall {c}" for c in table.classes],
        f"floor {m}", f"Δ {m} vs baseline", "epochs best/run", "hours", "unfinished",
    ]  # fmt: skip


def display_rows(table: Table) -> list[list[str]]:
    out = []
    for row in table.rows:
        out.append([
            row.label, str(row.metrics[table.metric].n),
            *[_ms(row.metrics[k]) for k in METRICS],
            *[_num(row.recall.get(c), 3) for c in table.classes],
            _num(row.floor.mean), _diff(row), _epochs(row), _hours_text(row),
            str(len(row.unfinished)),
        ])  # fmt: skip
    return out


def footnotes(table: Table) -> list[str]:
    notes = [
        f"mean ± sample std (n-1) of the test scores over each configuration's finished runs; "
        f"Δ is on {METRIC_LABELS[table.metric]}: * |Δ| exceeds the larger std of the two rows, "
        "? fewer than 2 runs on a side (spread unknown)",
    ]
    for row in table.rows:
        for r in row.unfinished:
            notes.append(
                f"unfinished (no summary.json): {r.run_id} [{row.label}] "
                f"status {r.status or 'unknown'} at {r.host}:{r.path}"
            )
    return notes + table.notes


def _plain(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _markdown(head: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(head), "|" + "---|" * len(head), *map(line, rows)])


def csv_rows(table: Table) -> list[dict[str, Any]]:
    """One dict per row, every number in its own column (mean and std apart)."""
    out = []
    for row in table.rows:
        d: dict[str, Any] = {"configuration": row.label, "n": row.metrics[table.metric].n}
        for k in METRICS:
            d[f"{k}_mean"] = row.metrics[k].mean
            d[f"{k}_std"] = row.metrics[k].std
        for c in table.classes:
            d[f"recall_{c}"] = row.recall.get(c)
        d[f"majority_floor_{table.metric}"] = row.floor.mean
        d[f"diff_{table.metric}"] = 0.0 if row.is_baseline else row.diff
        d["beyond_spread"] = row.beyond_spread
        d["baseline"] = row.is_baseline
        d["best_epoch_mean"] = row.best_epoch.mean
        d["epochs_run_mean"] = row.epochs_run.mean
        d["gpu_hours"] = row.gpu_hours
        d["wall_hours"] = row.wall_hours
        d["devices"] = " ".join(row.devices)
        d["unfinished"] = len(row.unfinished)
        d["runs"] = " ".join(r.run_id for r in row.runs)
        out.append(d)
    return out


def render(table: Table, fmt: str = "table") -> str:
    """The table as plain aligned text, GitHub markdown, or CSV (no notes in CSV: its
    ``unfinished`` and ``runs`` columns carry them)."""
    if fmt == "csv":
        rows = csv_rows(table)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for d in rows:
            writer.writerow({k: "" if v is None else v for k, v in d.items()})
        return buf.getvalue()
    head, rows = header(table), display_rows(table)
    if fmt == "markdown":
        body = _markdown(head, rows)
        return body + "\n\n" + "\n".join(f"- {n}" for n in footnotes(table)) + "\n"
    if fmt == "table":
        return _plain(head, rows) + "\n\n" + "\n".join(footnotes(table)) + "\n"
    raise CompareError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
