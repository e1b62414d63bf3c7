"""Weights & Biases as an engine sink (``track.wandb=true``).

Everything is logged against ``global_step`` as W&B's *step metric*
(``define_metric``), never as ``wandb.log(step=...)``: W&B refuses a step
lower than one it has seen, and a run resumed from its checkpoint replays the
steps its killed predecessor logged past that checkpoint. W&B's own ``_step``
just counts log calls; charts use ``global_step`` on their x-axis.

The W&B run lives in ``<run dir>/wandb/`` (offline: ``offline-run-*``, for
``wandb sync`` later), so it travels with the run directory. The console
stays W&B's own: ``console="off"`` keeps wandb from wrapping the trainer's
stdout, and ``silent`` keeps its banner out of train.log's echo.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

from trainers.engine.trackers.base import (
    TrackerSink,
    class_names,
    export_bundle,
    flat_config,
    step_metrics,
    val_metrics,
)
from trainers.events import EventType, RunStatus


def artifact_name(text: str) -> str:
    """W&B artifact names allow letters, digits, dashes, underscores and dots."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)


class WandbSink(TrackerSink):
    name = "wandb"
    label = "W&B"

    def start(self) -> None:
        import wandb

        track = self.cfg.track
        run_id = self.saved.get("id")
        self.wb = wandb.init(
            project=track.wandb_project,
            entity=track.wandb_entity or None,
            mode=track.wandb_mode,
            dir=str(self.run.path),
            id=run_id,
            # "allow": the id in run.json may belong to an offline run never synced, which
            # "must" would refuse; W&B continues it when it knows it.
            resume="allow" if run_id else None,
            name=self.run.path.name,
            config=flat_config(self.cfg),
            settings=wandb.Settings(console="off", silent=True, reinit="create_new"),
        )
        self.wb.define_metric("global_step", hidden=True)
        self.wb.define_metric("*", step_metric="global_step", step_sync=True)
        files_dir = Path(self.wb.dir)
        run_dir = files_dir.parent if files_dir.name == "files" else files_dir
        try:
            where = str(run_dir.relative_to(self.run.path))
        except ValueError:
            where = str(run_dir)
        self.set_record(
            {
                "id": self.wb.id,
                "project": self.wb.project or track.wandb_project,
                "entity": self.wb.entity or track.wandb_entity,
                "mode": track.wandb_mode,
                # Offline runs have none (and asking makes wandb print a warning).
                "url": self.wb.url if track.wandb_mode == "online" else None,
                "dir": where,
            }
        )

    def process(self, event: dict[str, Any]) -> None:
        etype = event["type"]
        if etype == EventType.STEP:
            self.wb.log(
                {
                    **step_metrics(event),
                    "epoch": event["epoch"],
                    "global_step": event["global_step"],
                }
            )
        elif etype == EventType.VAL:
            self._log_val(event)
        elif etype == "samples":
            self._log_samples(event)

    def _log_val(self, event: dict[str, Any]) -> None:
        import wandb

        data: dict[str, Any] = {**val_metrics(event), "epoch": event["epoch"]}
        matrix = event.get("confusion")
        if matrix:
            # W&B's chart takes one (true, predicted) pair per sample: the matrix unrolled.
            y_true, preds = [], []
            for i, row in enumerate(matrix):
                for j, count in enumerate(row):
                    y_true += [i] * int(count)
                    preds += [j] * int(count)
            if y_true:
                data[f"{event['split']}/confusion_matrix"] = wandb.plot.confusion_matrix(
                    y_true=y_true,
                    preds=preds,
                    class_names=class_names(event),
                    title=f"{event['split']} confusion matrix, epoch {event['epoch']}",
                )
        if "global_step" in event:
            data["global_step"] = event["global_step"]
        self.wb.log(data)

    def _log_samples(self, event: dict[str, Any]) -> None:
        import wandb

        classes = [str(c) for c in event.get("classes") or []]

        def name_of(value: Any) -> Any:
            if isinstance(value, int) and 0 <= value < len(classes):
                return classes[value]
            return value

        columns = ["epoch", "index", "name", "label", "pred", "correct", "image"]
        columns += [f"p_{c}" for c in classes]
        rows = []
        for sample in event.get("samples") or []:
            image = None
            if sample.get("image"):
                path = self.run.path / sample["image"]
                if path.is_file():
                    image = wandb.Image(str(path))
            probs = [float(p) for p in sample.get("probs") or []]
            probs += [float("nan")] * (len(classes) - len(probs))
            rows.append(
                [
                    event.get("epoch"),
                    sample.get("index"),
                    sample.get("name"),
                    name_of(sample.get("label")),
                    name_of(sample.get("pred")),
                    sample.get("label") == sample.get("pred"),
                    image,
                    *probs[: len(classes)],
                ]
            )
        table = wandb.Table(columns=columns, data=rows)
        data: dict[str, Any] = {f"{event.get('split', 'val')}/samples": table}
        if "global_step" in event:
            data["global_step"] = event["global_step"]
        self.wb.log(data)

    def end(self, status: str) -> None:
        if status == RunStatus.COMPLETED:
            self._log_model()
        self.wb.finish(exit_code=0 if status in (RunStatus.COMPLETED, "") else 1)

    def _log_model(self) -> None:
        """best.pt, the export bundle and summary.json as one W&B model artifact."""
        import wandb

        if not self.run.best_ckpt.exists():
            return
        bundle, problem = export_bundle(self.run)
        if problem:
            self.note(f"the export bundle is not in the model artifact: {problem}")
        art = wandb.Artifact(
            artifact_name(f"{self.run.path.name}-model"),
            type="model",
            metadata={"run_dir": self.run.path.name},
        )
        art.add_file(str(self.run.best_ckpt), name="best.pt")
        for path in sorted(bundle.iterdir()) if bundle else ():
            # File by file: add_dir prints a progress line on the trainer's console.
            art.add_file(str(path), name=f"export/{path.name}")
        if self.run.summary.exists():
            art.add_file(str(self.run.summary), name="summary.json")
        self.wb.log_artifact(art, aliases=["best", "latest"])

    def abandon(self) -> None:
        wb = getattr(self, "wb", None)
        if wb is not None:
            # Already failed: the warning event says why; finishing is best effort.
            with contextlib.suppress(Exception):
                wb.finish(exit_code=1)
