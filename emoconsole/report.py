"""summary.md and its plots, from a run directory on this machine.

    write_report(Path("downloads/<run-id>"))  # -> summary.md, learning_curves.png,
                                               #    confusion_matrix.png beside it

Reads only the run-directory contract (docs/run-directory.md): the per-epoch
``val`` events of events.jsonl for the learning curves, summary.json for the
final numbers and the confusion matrix, evaluations/*/evaluation.json for the
scores on other data. A run without summary.json (stopped, failed, or still
going when it was downloaded) still gets its curves and a note saying so.
matplotlib is imported only here, on the Agg backend, so listing hosts or
watching a run never pays for it and no display is needed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from trainers.events import read_events
from trainers.rundir import RunDir
from trainers.runlog import RunLog

SUMMARY_MD = "summary.md"
LEARNING_CURVES_PNG = "learning_curves.png"
CONFUSION_PNG = "confusion_matrix.png"
CURVE_KEYS = ("train_loss", "loss", "accuracy", "macro_f1", "weighted_f1")


class VerifiedFile(Protocol):
    """What the Files table shows (remote.download.FileReport fits)."""

    path: str
    size: int
    sha256: str


def epoch_metrics(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per epoch from the per-epoch ``val`` events, as the run ended up
    (the resume rule is :class:`trainers.runlog.RunLog`'s)."""
    return [
        {"epoch": int(row["epoch"]), **{k: row.get(k) for k in CURVE_KEYS}}
        for row in RunLog.from_events(events).rows
    ]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(rows: Sequence[dict[str, Any]], best_epoch: int | None, out: Path) -> Path:
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    try:
        for key, label in (("train_loss", "train loss"), ("loss", "val loss")):
            ax_loss.plot(epochs, [_nan(r[key]) for r in rows], marker="o", ms=3, label=label)
        ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
        for key, label in (
            ("accuracy", "accuracy"),
            ("macro_f1", "macro F1"),
            ("weighted_f1", "weighted F1"),
        ):
            ax_metric.plot(epochs, [_nan(r[key]) for r in rows], marker="o", ms=3, label=label)
        ax_metric.set(xlabel="epoch", ylabel="validation score", title="Validation", ylim=(0, 1))
        for ax in (ax_loss, ax_metric):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs: 1, 2, 3, not 1.2
            if best_epoch is not None:
                ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best ({best_epoch})")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out


def plot_confusion(
    confusion: Sequence[Sequence[int]], classes: Sequence[str], title: str, out: Path
) -> Path:
    """Rows are true classes, normalised per row (recall on the diagonal), with
    the counts written in each cell: colour for the pattern, numbers to read."""
    plt = _plt()
    n = len(classes)
    shares = []
    for row in confusion:
        total = sum(row)
        shares.append([c / total if total else 0.0 for c in row])
    size = max(4.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    try:
        image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(n), classes, rotation=45, ha="right")
        ax.set_yticks(range(n), classes)
        ax.set(xlabel="predicted", ylabel="true", title=title)
        for i, row in enumerate(confusion):
            for j, count in enumerate(row):
                colour = "white" if shares[i][j] > 0.5 else "black"
                ax.text(j, i, str(count), ha="center", va="center", color=colour, fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
        fig.tight_layout()
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out


def _nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_num(v) for v in row) + " |" for row in rows]
    return lines


def _split_row(name: str, metrics: dict[str, Any]) -> list[Any]:
    return [
        name,
        metrics.get("accuracy"),
        metrics.get("macro_f1"),
        metrics.get("weighted_f1"),
        metrics.get("uar"),
        metrics.get("loss"),
    ]


def _has_samples(metrics: dict[str, Any] | None) -> bool:
    confusion = (metrics or {}).get("confusion") or []
    return sum(sum(row) for row in confusion) > 0


def write_report(run_dir: str | Path, files: Iterable[VerifiedFile] | None = None) -> Path:
    """Write summary.md (and the PNGs it shows) into ``run_dir``; returns its path.

    ``files``: the verified files of a download, listed with their SHA-256.
    """
    run = RunDir(Path(run_dir))
    if not run.path.is_dir():
        raise FileNotFoundError(f"no run directory at {run.path}")
    summary = run.read_summary()
    manifest = _read_json(run.run_json)
    events = read_events(run.events) if run.events.exists() else []
    rows = epoch_metrics(events)
    run_id = (summary or {}).get("run_id") or manifest.get("id") or run.path.name
    model = (summary or {}).get("model") or manifest.get("model") or "?"
    best_epoch = (summary or {}).get("best_epoch")

    md = [f"# {run_id}", ""]
    if summary is None:
        status = manifest.get("status", "unknown")
        md += [
            f"Model **{model}**. No summary.json: the run has not finished "
            f"(last status: {status}); the curves below show the epochs so far.",
            "",
        ]
    else:
        md += [
            f"Model **{model}**, best epoch **{best_epoch}** of {summary.get('epochs_run')} "
            f"({summary.get('stop_reason')}), monitored {summary.get('monitor')} = "
            f"{_num(summary.get('best_value'))}.",
            "",
            "Final evaluation with the best checkpoint:",
            "",
        ]
        header = ["split", "accuracy", "macro F1", "weighted F1", "UAR", "loss"]
        table = [_split_row(split, summary.get(split) or {}) for split in ("val", "test")]
        floor = summary.get("majority_floor")
        if floor:
            table.append(_split_row("test, majority-class floor", floor))
        md += [*_table(header, table), ""]
        if floor:
            md += [
                "Read every score against the floor: always predicting the training "
                "set's majority class scores that much.",
                "",
            ]
        split = "test" if _has_samples(summary.get("test")) else "val"
        per_class = (summary.get(split) or {}).get("per_class") or {}
        if per_class:
            md += [f"## Per class ({split})", ""]
            md += _table(
                ["class", "precision", "recall", "F1", "support"],
                (
                    [name, m.get("precision"), m.get("recall"), m.get("f1"), m.get("support")]
                    for name, m in per_class.items()
                ),
            )
            md.append("")

    md += _evaluations_section(run, summary)

    md += ["## Learning curves", ""]
    if rows:
        plot_learning_curves(rows, best_epoch, run.path / LEARNING_CURVES_PNG)
        md += [f"![Learning curves]({LEARNING_CURVES_PNG})", ""]
        md += _table(
            ["epoch", "train loss", "val loss", "accuracy", "macro F1", "weighted F1"],
            ([r["epoch"], *(r[k] for k in CURVE_KEYS)] for r in rows),
        )
        md.append("")
    else:
        md += ["No validation epochs in events.jsonl yet.", ""]

    if summary is not None:
        split = "test" if _has_samples(summary.get("test")) else "val"
        confusion = (summary.get(split) or {}).get("confusion")
        classes = summary.get("classes") or []
        if confusion and classes:
            title = f"Confusion matrix ({split}, best checkpoint)"
            plot_confusion(confusion, classes, title, run.path / CONFUSION_PNG)
            md += [
                f"## Confusion matrix ({split})",
                "",
                "Rows are the true classes; colour is the share of each row, numbers are counts.",
                "",
                f"![Confusion matrix]({CONFUSION_PNG})",
                "",
            ]
        md += _run_facts(summary)

    listed = list(files or [])
    if listed:
        md += ["## Files (SHA-256 checked against the host)", ""]
        md += ["| file | bytes | SHA-256 |", "|---|---:|---|"]
        md += [f"| {f.path} | {f.size} | `{f.sha256}` |" for f in sorted(listed, key=_path)]
        md.append("")

    out = run.path / SUMMARY_MD
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("\n".join(md), encoding="utf-8")
    tmp.replace(out)
    return out


def _evaluations_section(run: RunDir, summary: dict[str, Any] | None) -> list[str]:
    """One row per evaluation under evaluations/ (``python -m trainers evaluate``), beside
    the run's own test; each evaluation's metrics cover only its shared classes."""
    evaluations = run.read_evaluations()
    if not evaluations:
        return []
    header = ["evaluation", "data", "n", "classes", "accuracy", "macro F1", "weighted F1", "UAR"]
    rows: list[list[Any]] = []
    test = (summary or {}).get("test")
    if _has_samples(test):
        assert test is not None
        n = sum(sum(row) for row in test["confusion"])
        classes = len((summary or {}).get("classes") or [])
        rows.append(["the run's own test", "its data, test", n, classes, *_metrics(test)])
    notes = []
    for name, ev in evaluations:
        data = ev.get("data") or {}
        where = f"{data.get('layout', '?')}, {data.get('split', '?')}"
        shared = len(ev.get("shared_classes") or [])
        rows.append([name, where, ev.get("n"), shared, *_metrics(ev.get("metrics") or {})])
        floor = ev.get("majority_floor")
        if floor:
            rows.append([f"{name}, majority floor", where, ev.get("n"), shared, *_metrics(floor)])
        notes.append(f"- **{name}**: {data.get('root', '?')}; {_exclusions(ev)}")
    return [
        "## Evaluations on other data",
        "",
        "Each evaluation's metrics cover only the classes the run and that corpus share "
        "(classes: how many); its floor is the run's training majority among them.",
        "",
        *_table(header, rows),
        "",
        *notes,
        "",
    ]


def _metrics(metrics: dict[str, Any]) -> list[Any]:
    return [metrics.get(k) for k in ("accuracy", "macro_f1", "weighted_f1", "uar")]


def _exclusions(evaluation: dict[str, Any]) -> str:
    excluded = evaluation.get("excluded") or {}
    not_learned = excluded.get("not_learned") or {}
    missing = excluded.get("not_in_corpus") or []
    parts = [
        "recordings of classes the run never learned: "
        + (", ".join(f"{c} {n}" for c, n in not_learned.items()) if not_learned else "none"),
        "run classes the corpus lacks: " + (", ".join(missing) if missing else "none"),
    ]
    by_layout = excluded.get("by_layout") or []
    if by_layout:
        parts.append(
            "left out by the layout's label map: "
            + ", ".join(f"{e['corpus']} {e['class']} {e['recordings']}" for e in by_layout)
        )
    return "; ".join(parts)


def _path(f: VerifiedFile) -> str:
    return f.path


def _run_facts(summary: dict[str, Any]) -> list[str]:
    timings = summary.get("timings") or {}
    facts = [
        f"device {summary.get('device', '?')}, AMP {summary.get('amp', '?')}",
        f"{summary.get('bad_inputs', 0)} input files skipped (bad_inputs.jsonl)",
    ]
    if timings:
        facts.append(
            "time: "
            + ", ".join(
                f"{label} {_duration(timings.get(key))}"
                for key, label in (
                    ("total_s", "total"),
                    ("prepare_s", "data preparation"),
                    ("train_s", "training"),
                    ("epoch_mean_s", "per epoch"),
                    ("eval_s", "final evaluation"),
                )
                if timings.get(key) is not None
            )
        )
    return ["## Run", "", *(f"- {fact}" for fact in facts), ""]


def _duration(seconds: Any) -> str:
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
