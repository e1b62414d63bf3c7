"""MLflow as an engine sink (``track.mlflow_uri``, ``track.mlflow_experiment``).

One MLflow run per run directory: its id goes into run.json, and a resumed
run (or a restarted one) continues it. Params are the flattened config;
metrics carry TensorBoard's names with ``global_step`` as MLflow's step (MLflow
keeps every point, so steps a killed run logged past its checkpoint simply
appear twice). Confusion matrices and sample predictions are JSON artifacts;
at the end summary.json, best.pt and the export bundle (``model/``) are
artifacts too. The bundle is uploaded as files rather than an MLflow
"logged model": that flavour would pickle the model and resolve a Python
environment, seconds to minutes of work a tiny run should not pay for, and the
bundle is already what ``predict`` and ``export`` read.

MLflow's HTTP client retries a refused connection 7 times with exponential
backoff (minutes); unless the user set them, this sink lowers that to a cheap
retry so a dead server is reported promptly (the calls run on the sink's own
thread either way).
"""

from __future__ import annotations

import os
import time
from typing import Any

from trainers.engine.trackers.base import (
    TrackerSink,
    class_names,
    export_bundle,
    flat_config,
    step_metrics,
    val_metrics,
)
from trainers.engine.trackers.packages import public_uri
from trainers.events import EventType, RunStatus

RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
PARAM_VALUE_MAX = 6000  # MLflow's limit on a param value's length
BATCH_PARAMS = 100  # log_batch takes at most 100 params ...
BATCH_METRICS = 1000  # ... and 1000 metrics per call

END_STATUS = {
    RunStatus.COMPLETED: "FINISHED",
    RunStatus.STOPPED: "KILLED",
    RunStatus.PREEMPTED: "KILLED",
    RunStatus.FAILED: "FAILED",
}


class MlflowSink(TrackerSink):
    name = "mlflow"
    label = "MLflow"

    def start(self) -> None:
        for key, value in RETRY_DEFAULTS.items():
            os.environ.setdefault(key, value)
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        self.Metric = Metric
        self.pending: list[Any] = []
        self.images_sent = False
        track = self.cfg.track
        self.client = MlflowClient(tracking_uri=track.mlflow_uri)
        run_id = self.saved.get("run_id")
        if run_id:
            self.client.update_run(run_id, status="RUNNING")
            experiment_id = (
                self.saved.get("experiment_id") or self.client.get_run(run_id).info.experiment_id
            )
        else:
            experiment_id = self._experiment_id(track.mlflow_experiment)
            created = self.client.create_run(
                experiment_id,
                run_name=self.run.path.name,
                tags={"emoconsole.run_id": self.run.path.name},
            )
            run_id = created.info.run_id
            params = [
                Param(key, str(value)[:PARAM_VALUE_MAX])
                for key, value in flat_config(self.cfg).items()
            ]
            for i in range(0, len(params), BATCH_PARAMS):
                self.client.log_batch(run_id, params=params[i : i + BATCH_PARAMS])
        self.run_id = run_id
        self.set_record(
            {
                "run_id": run_id,
                "experiment_id": experiment_id,
                "tracking_uri": public_uri(track.mlflow_uri),
            }
        )

    def _experiment_id(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self.client.create_experiment(name)
        except Exception:
            # Another run created it meanwhile (a sweep's runs start together on hosts).
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _metrics(self, values: dict[str, float], step: int, when: float) -> None:
        stamp = int(when * 1000)
        self.pending += [self.Metric(k, v, stamp, step) for k, v in values.items()]

    def process(self, event: dict[str, Any]) -> None:
        etype = event["type"]
        when = float(event.get("time") or time.time())
        if etype == EventType.STEP:
            values = {**step_metrics(event), "epoch": float(event["epoch"])}
            self._metrics(values, int(event["global_step"]), when)
        elif etype == EventType.VAL:
            step = int(event.get("global_step", 0))
            self._metrics({**val_metrics(event), "epoch": float(event["epoch"])}, step, when)
            if event.get("confusion"):
                self.flush()
                self.client.log_dict(
                    self.run_id,
                    {
                        "split": event["split"],
                        "epoch": event["epoch"],
                        "global_step": step,
                        "classes": class_names(event),
                        "matrix": event["confusion"],
                    },
                    f"confusion/{event['split']}_epoch{int(event['epoch']):03d}.json",
                )
        elif etype == "samples":
            self.flush()
            self._log_samples(event)

    def _log_samples(self, event: dict[str, Any]) -> None:
        split = event.get("split", "val")
        record = {k: event.get(k) for k in ("split", "epoch", "global_step", "classes")}
        record["samples"] = event.get("samples") or []
        self.client.log_dict(
            self.run_id, record, f"samples/{split}_epoch{int(event.get('epoch') or 0):03d}.json"
        )
        if self.images_sent:
            return  # the same samples every epoch: their images once
        for sample in record["samples"]:
            image = sample.get("image")
            if image and (self.run.path / image).is_file():
                folder = os.path.dirname(image)
                self.client.log_artifact(
                    self.run_id, str(self.run.path / image), f"samples/{folder}".rstrip("/")
                )
        self.images_sent = True

    def flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[:BATCH_METRICS], self.pending[BATCH_METRICS:]
            self.client.log_batch(self.run_id, metrics=batch)

    def end(self, status: str) -> None:
        self.flush()
        if status == RunStatus.COMPLETED:
            if self.run.summary.exists():
                self.client.log_artifact(self.run_id, str(self.run.summary))
            if self.run.best_ckpt.exists():
                self.client.log_artifact(self.run_id, str(self.run.best_ckpt), "checkpoints")
            bundle, problem = export_bundle(self.run)
            if problem:
                self.note(f"the export bundle was not logged: {problem}")
            if bundle is not None:
                self.client.log_artifacts(self.run_id, str(bundle), "model")
        self.client.set_terminated(self.run_id, END_STATUS.get(status, "KILLED"))
