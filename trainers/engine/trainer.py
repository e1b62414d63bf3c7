"""The one training loop.

Everything model-specific comes from the registry entry (builder, data module,
config); this module owns what every run shares: device and AMP, gradient
accumulation and clipping, schedulers at their granularity, early stopping,
atomic checkpoints with exact resume, evaluation, and the run directory.

Exact resume: the batch order of epoch ``e`` is a pure function of
``(seed, e)`` and every other source of randomness (dropout, augmentation) is
restored from the checkpoint's RNG states. A run killed and resumed therefore
replays the same arithmetic as one that was never interrupted (on CPU; cuDNN
may differ in the last bits unless ``train.deterministic`` is set).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import random
import signal
import socket
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

import trainers
from trainers.config import ExperimentConfig, TrainConfig, to_dict
from trainers.data.face_counts import face_warnings, log_lines
from trainers.engine import distributed as D
from trainers.engine import metrics as M
from trainers.engine import samples as S
from trainers.engine.checkpoint import (
    load_checkpoint,
    load_model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from trainers.engine.early_stopping import EarlyStopping
from trainers.engine.grad_norms import (
    NonFiniteNorms,
    finite_or_none,
    group_norms,
    layer_groups,
    nonfinite_message,
    step_norm,
)
from trainers.engine.losses import build_loss, class_weights, mixed_loss
from trainers.engine.optim import build_optimizer, build_schedule, current_lr
from trainers.engine.signals import stop_signals
from trainers.engine.sinks import RunLogger, TensorBoardSink, TextLogSink
from trainers.engine.trackers import tracker_sinks
from trainers.events import EventType, RunStatus, stop_status
from trainers.registry import ModelEntry
from trainers.rundir import BadInputLog, RunDir, write_json_atomic
from trainers.runlog import ProgressRecord


class StopRequested(Exception):
    """SIGTERM/SIGINT/SIGHUP arrived; the loop saved a checkpoint and unwinds."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"train.device={spec!r} but CUDA is not available on {socket.gethostname()}"
        )
    return device


def amp_dtype(spec: str, device: torch.device) -> torch.dtype | None:
    """AMP only on CUDA: CPU autocast is slower than fp32 for these models."""
    if device.type != "cuda" or spec == "off":
        return None
    if spec == "bf16" or (spec == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def epoch_batches(
    n: int,
    batch_size: int,
    seed: int,
    epoch: int,
    drop_last: bool,
    weights: np.ndarray | None = None,
    rank: int = 0,
    world: int = 1,
) -> list[list[int]]:
    """One rank's batch order of one epoch, from (seed, epoch, rank, world) alone.

    The order is ``DistributedSampler``'s (with ``set_epoch``): one permutation of
    the epoch, of which rank ``r`` takes every ``world``-th index from ``r`` (padded
    by repetition so every rank takes the same number of steps). The union of the
    ranks' i-th batches is therefore the i-th batch one process with
    ``batch_size * world`` draws: the same global batches on any number of ranks.

    With ``weights`` the epoch draws ``n`` indices with replacement in proportion
    to them (a weighted random sampler, which DistributedSampler lacks), dealt out
    to the ranks the same way.
    """
    if weights is None:
        sampler = DistributedSampler(
            range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed
        )
        sampler.set_epoch(epoch)
        order = list(sampler)
    else:
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        w = torch.as_tensor(weights, dtype=torch.float64)
        drawn = torch.multinomial(w, n, replacement=True, generator=gen).tolist()
        total = -(-n // world) * world
        drawn += drawn[: total - n]
        order = drawn[rank:total:world]
    stop = (len(order) // batch_size) * batch_size if drop_last else len(order)
    return [order[i : i + batch_size] for i in range(0, stop, batch_size)]


def sampler_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-sample weights 1/count(class): every class is drawn equally often on average."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return 1.0 / np.maximum(counts[labels], 1.0)


def group_mean(
    probs: np.ndarray, labels: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average the rows that belong to one sample (several clips, TTA views).

    Returns probabilities, labels and sample ids ordered by sample id, which is
    the sample's row in its split, so the result aligns with ``samples(split)``.
    """
    ids, inverse = np.unique(groups, return_inverse=True)
    sums = np.zeros((len(ids), probs.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, probs)
    counts = np.bincount(inverse, minlength=len(ids))
    out_labels = np.zeros(len(ids), dtype=np.int64)
    out_labels[inverse] = labels
    if not np.array_equal(out_labels[inverse], labels):
        raise ValueError("rows of one sample carry different labels: check the eval data set")
    return (sums / counts[:, None]).astype(np.float32), out_labels, ids


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    non_blocking = device.type == "cuda"
    return {
        k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v
        for k, v in batch.items()
    }


class Trainer:
    def __init__(
        self,
        entry: ModelEntry,
        cfg: ExperimentConfig,
        run: RunDir,
        dist: D.DistInfo | None = None,
        supervised: bool = False,
    ) -> None:
        """``dist``: this process's rank (torchrun's environment when not given).
        ``supervised``: a launcher (``trainers.launch``) owns the run's pid and writes
        its final status when a rank fails, so this process records only the error."""
        self.entry = entry
        self.cfg = cfg
        self.tc: TrainConfig = cfg.train
        self.run = run
        self.dist = dist if dist is not None else D.from_env()
        self.supervised = supervised
        # The signal that asked the run to stop (set by the handlers, or by a caller to
        # request a stop); the loop checkpoints at the next step and raises StopRequested.
        self.stop_signal: int | None = None
        # A notice.json older than this process belongs to an earlier one of the same
        # run (preempted, then resumed here): see trainers.events.read_notice. Set before
        # fit() installs the stop handlers, so every notice that can stop this one is later.
        self.created_at = time.time()
        self.callbacks = entry.make_callbacks(cfg)

    # -- lifecycle -------------------------------------------------------------------------

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to the end (or early stop) and write summary.json. Re-raises failures
        after recording them, so the CLI exits non-zero."""
        tc = self.tc
        main = self.dist.is_main
        resume = resume or self.dist.restart > 0  # torchrun restarted us after a failure
        ckpt = (
            load_checkpoint(self.run.last_ckpt, trust_pickle=True)
            if main and resume and self.run.last_ckpt.exists()
            else None
        )
        if main:
            purge = ckpt["global_step"] + 1 if ckpt else None
            self.text = TextLogSink(self.run.train_log, echo=sys.stdout if tc.log_every else None)
            # ProgressRecord: run.json's "progress", what `hostctl list` reads.
            self.logger = RunLogger(
                self.run.events,
                [
                    TensorBoardSink(self.run.tb, purge),
                    self.text,
                    ProgressRecord(self.run),
                    *tracker_sinks(
                        self.cfg,
                        self.run,
                        resume,
                        lambda **w: self.logger.emit(EventType.WARNING, **w),
                    ),
                ],
            )
        else:
            self.run.ranks.mkdir(exist_ok=True)
            self.text = TextLogSink(self.run.rank_log(self.dist.rank), echo=None)
            self.logger = RunLogger(None, [self.text])
        self._install_signal_handlers()
        t_start = time.perf_counter()
        try:
            self.logger.emit(
                EventType.STATUS, status=RunStatus.STARTING, pid=os.getpid(), **self._rank_fields()
            )
            if main:
                fields = {"rank0_pid": os.getpid()} if self.supervised else {"pid": os.getpid()}
                self.run.update_manifest(status=RunStatus.RUNNING, **fields)
            self.device = pick_device(D.local_device(self.dist, tc.device))
            D.init(self.dist, self.device)
            # Rank 0 alone reads the checkpoint: on several nodes only its disk has it.
            ckpt = D.broadcast(ckpt, self.dist) if resume else None
            summary = self._fit(ckpt, t_start)
        except StopRequested:
            # The guard writes notice.json before it signals: the instance is going away.
            status, notice = stop_status(self.run.path, self.created_at)
            self.logger.emit(EventType.STATUS, status=status, signal=self.stop_signal, **notice)
            if main:
                self._record_stop(status, notice)
            self._close()
            raise
        except BaseException as exc:
            self.logger.emit(
                EventType.ERROR,
                message=f"{type(exc).__name__}: {exc}",
                exception=type(exc).__name__,
                traceback=traceback.format_exc(),
                **self._rank_fields(),
            )
            if not self.supervised:
                # Under the launcher the final word is its own: it knows which rank failed.
                self.logger.emit(EventType.STATUS, status=RunStatus.FAILED)
                if main:
                    self.run.update_manifest(status=RunStatus.FAILED, ended_at=time.time())
            self._close()
            raise
        self.logger.emit(
            EventType.STATUS, status=RunStatus.COMPLETED, reason=summary["stop_reason"]
        )
        if main:
            self.run.update_manifest(status=RunStatus.COMPLETED, ended_at=time.time())
        self._close()
        return summary

    def _record_stop(self, status: RunStatus, notice: dict[str, Any]) -> None:
        """run.json's final status; a preemption is also appended to ``preemptions``
        (one entry per instance lost, across resumes)."""
        fields: dict[str, Any] = {"status": status, "ended_at": time.time()}
        if status == RunStatus.PREEMPTED:
            earlier = self.run.read_manifest().get("preemptions") or []
            fields["preemptions"] = [*earlier, {**notice, "stopped_at": fields["ended_at"]}]
        self.run.update_manifest(**fields)

    def _rank_fields(self) -> dict[str, Any]:
        if not self.dist.enabled:
            return {}
        return {"rank": self.dist.rank, "world_size": self.dist.world_size}

    def _close(self) -> None:
        self.logger.close()
        D.shutdown()

    def _install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            self.stop_signal = signum

        for sig in stop_signals():
            # Only the main thread may install handlers (not so in some embedders' threads).
            with contextlib.suppress(ValueError):
                signal.signal(sig, handler)

    # -- setup -----------------------------------------------------------------------------

    def _setup(self) -> None:
        tc = self.tc
        if tc.threads:
            torch.set_num_threads(tc.threads)
        if tc.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        # Every rank its own dropout and augmentation stream; DDP copies rank 0's weights.
        seed_everything(tc.seed + self.dist.rank)
        self.amp = amp_dtype(tc.amp, self.device)

        self.logger.emit(EventType.STATUS, status=RunStatus.PREPARING)
        t0 = time.perf_counter()
        self.bad = BadInputLog(self.run.bad_inputs if self.dist.is_main else None)
        self.data = self.entry.data(self.cfg)
        last_report = [0.0]

        def progress(done: int, total: int, what: str) -> None:
            now = time.monotonic()
            if done == total or now - last_report[0] > 2.0:
                last_report[0] = now
                self.logger.emit(
                    EventType.STATUS, status=RunStatus.PREPARING, done=done, total=total, what=what
                )

        # One process per machine fills the data cache; the others read it afterwards.
        if self.dist.local_rank == 0:
            self.data.setup(report_bad=self.bad, progress=progress)
        D.barrier(self.dist)
        if self.dist.local_rank != 0:
            self.data.setup(report_bad=self.bad, progress=progress)
        self.prepare_s = time.perf_counter() - t0
        self.classes = list(self.data.classes)
        self.description = self.data.describe()
        # Saved in every checkpoint: computed once, from the set-up data module. A module
        # without the method (a test's tensors) leaves inference to the data set.
        inference_state = getattr(self.data, "inference_state", None)
        self.inference = inference_state() if callable(inference_state) else None
        self.logger.log(f"data: {self.description}")
        # A face crop that fell back to the frame's centre trains silently on whatever is
        # there: say how often, per split, and warn where it is common (face_counts).
        faces = self.description.get("faces") if isinstance(self.description, dict) else None
        for line in log_lines(faces):
            self.logger.log(line)
        for warning in face_warnings(faces):
            self.logger.emit(EventType.WARNING, **warning)
        if len(self.bad):
            self.logger.log(
                f"{len(self.bad)} input file(s) skipped: see {self.run.bad_inputs.name}"
            )

        self.model = self.entry.build(self.cfg, len(self.classes))
        if tc.pretrained:
            from trainers.engine.pretrained import load_pretrained

            sources = getattr(type(self.cfg), "pretrained_sources", None)
            report = load_pretrained(self.model, tc.pretrained, sources)
            self.logger.log(f"pretrained: {report}")
        self.model = self.model.to(self.device)
        if self.dist.enabled and tc.sync_bn:
            from trainers.engine.sync_bn import convert

            self.model, n_bn = convert(self.model, cuda=self.device.type == "cuda")
            self.logger.log(f"sync_bn: {n_bn} BatchNorm layer(s) use statistics of every rank")
        self.net: nn.Module = self.model  # what the train step calls: DDP's wrapper under torchrun
        self._trainable: tuple[bool, ...] = ()
        self.train_labels = np.asarray(self.data.labels("train"))
        weight = class_weights(self.train_labels, len(self.classes), tc.class_weights)
        self.criterion = build_loss(
            tc.loss,
            weight.to(self.device) if weight is not None else None,
            gamma=tc.focal_gamma,
            alpha=tc.focal_alpha,
            label_smoothing=tc.label_smoothing,
        ).to(self.device)
        self.train_set = self.data.dataset("train")
        n = len(self.train_set)
        if n == 0:
            raise RuntimeError("the train split is empty: check data.root and the split settings")
        per_rank = -(-n // self.dist.world_size)
        self.drop_last = per_rank > tc.batch_size  # a trailing batch of 1 breaks BatchNorm
        self.sample_weights = None
        if tc.sampler == "weighted":
            # A data set that expands samples (several clips per video) names its rows' labels.
            item_labels = getattr(self.train_set, "item_labels", None)
            item_labels = np.asarray(item_labels if item_labels is not None else self.train_labels)
            if len(item_labels) != n:
                raise RuntimeError(
                    f"train.sampler=weighted needs one label per train item ({n} items, "
                    f"{len(item_labels)} labels): give the data set an item_labels array"
                )
            self.sample_weights = sampler_weights(item_labels, len(self.classes))
        batches = len(self._epoch_batches(1))
        self.steps_per_epoch = math.ceil(batches / tc.grad_accum)
        # Every parameter, frozen or not: a callback may unfreeze some later (progressive
        # unfreezing), and optimizers skip parameters whose gradient is None.
        self.optimizer = build_optimizer(list(self.model.parameters()), tc)
        self.mode = "min" if tc.monitor == "loss" else "max"
        self.schedule = build_schedule(self.optimizer, tc, self.steps_per_epoch, self.mode)
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.amp == torch.float16 and self.device.type == "cuda"
        )
        self.stopper = EarlyStopping(tc.patience, self.mode, tc.min_delta, tc.min_epochs)
        self.params = list(self.model.parameters())
        self.nonfinite = NonFiniteNorms()
        self.grad_groups = layer_groups(self.model) if tc.log_grad_norms_every else []
        # Validation rows shown in the samples events, and their pictures (set on first use).
        self.sample_rows: list[int] | None = None
        self.sample_pictures: dict[int, str | None] = {}

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        tc = self.tc
        return epoch_batches(
            len(self.train_set),
            tc.batch_size,
            tc.seed,
            epoch,
            self.drop_last,
            self.sample_weights,
            self.dist.rank,
            self.dist.world_size,
        )

    def _wrap(self) -> None:
        """(Re)build the DDP wrapper when the set of trainable parameters changed.

        DDP registers its gradient hooks for the parameters that require grad when
        it is built, so a parameter unfrozen later (progressive unfreezing) would
        never be synchronised by the old wrapper.
        """
        if not self.dist.enabled:
            return
        trainable = tuple(p.requires_grad for p in self.model.parameters())
        if trainable == self._trainable:
            return
        from torch.nn.parallel import DistributedDataParallel

        self._trainable = trainable
        self.net = DistributedDataParallel(
            self.model,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
        )

    def _loader(self, dataset: Any, batches: Sequence[Sequence[int]]) -> DataLoader:
        return DataLoader(
            dataset,
            batch_sampler=batches,
            collate_fn=self.data.collate,
            num_workers=self.tc.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            # Its own generator: the default draws a base seed from the global RNG, which
            # would shift dropout masks after a mid-epoch resume.
            generator=torch.Generator().manual_seed(self.tc.seed),
        )

    def _eval_batches(self, n: int) -> list[list[int]]:
        rows = D.eval_indices(n, self.dist) if self.dist.enabled else list(range(n))
        bs = self.tc.batch_size
        return [rows[i : i + bs] for i in range(0, len(rows), bs)]

    # -- the loop --------------------------------------------------------------------------

    def _fit(self, ckpt: dict[str, Any] | None, t_start: float) -> dict[str, Any]:
        tc = self.tc
        self._setup()
        start_epoch, self.global_step, skip_batches, partial = 0, 0, 0, None
        if ckpt is not None:
            start_epoch, skip_batches, partial = self._restore(ckpt)
            self.logger.emit(
                EventType.STATUS,
                status=RunStatus.RESUMED,
                from_epoch=start_epoch,
                global_step=self.global_step,
                skip_batches=skip_batches,
            )
        for callback in self.callbacks:
            callback.on_fit_start(self)
        self.logger.emit(EventType.STATUS, status=RunStatus.RUNNING, device=str(self.device))
        t_train = time.perf_counter()
        epoch_times: list[float] = []
        stop_reason = "max_epochs"
        epoch = start_epoch
        for epoch in range(start_epoch + 1, tc.epochs + 1):
            t_epoch = time.perf_counter()
            train_loss = self._train_epoch(epoch, skip_batches, partial)
            skip_batches, partial = 0, None
            probs, labels, report = self._evaluate("val")
            value = report[tc.monitor]
            is_best = self.stopper.update(epoch, value)
            self.schedule.after_epoch(value)
            self.logger.emit(
                EventType.VAL,
                epoch=epoch,
                split="val",
                global_step=self.global_step,
                train_loss=train_loss,
                lr=current_lr(self.optimizer),
                is_best=is_best,
                monitor=tc.monitor,
                best=self.stopper.best,
                best_epoch=self.stopper.best_epoch,
                earliest_stop_epoch=self.stopper.earliest_stop_epoch(),
                epoch_s=time.perf_counter() - t_epoch,
                **report,
            )
            self._emit_samples(epoch, "val", probs, labels)
            self._save(epoch, batches_done=0, partial=None, is_best=is_best)
            epoch_times.append(time.perf_counter() - t_epoch)
            if self.stopper.should_stop(epoch):
                stop_reason = "early_stopping"
                break
        train_s = time.perf_counter() - t_train
        return self._finish(epoch, stop_reason, t_start, train_s, epoch_times)

    def _train_epoch(
        self, epoch: int, skip_batches: int, partial: dict[str, float] | None
    ) -> float:
        tc = self.tc
        batches = self._epoch_batches(epoch)
        total_batches = len(batches)
        for callback in self.callbacks:
            callback.on_epoch_start(self, epoch)
        self._wrap()
        self.logger.emit(
            EventType.EPOCH_START,
            epoch=epoch,
            epochs=tc.epochs,
            steps=self.steps_per_epoch,
            batches=total_batches,
            lr=current_lr(self.optimizer),
            global_step=self.global_step,
            # Before any validation the first one counts as an improvement, so the bound
            # is known from the first epoch on (the console's ETA shows it beside max).
            earliest_stop_epoch=max(
                self.stopper.min_epochs,
                (self.stopper.best_epoch if self.stopper.best_epoch >= 1 else epoch)
                + self.stopper.patience,
            ),
        )
        self.model.train()
        # Augmenting data sets draw from (seed, epoch, index), never from a shared stream,
        # so resume and any worker count see the same augmented samples.
        set_epoch = getattr(self.train_set, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        loss_sum = partial["loss_sum"] if partial else 0.0
        seen = int(partial["samples"]) if partial else 0
        window = {"loss": 0.0, "n": 0, "data_s": 0.0, "compute_s": 0.0, "samples": 0}
        loader = self._loader(self.train_set, batches[skip_batches:])
        autocast = (
            torch.autocast(self.device.type, dtype=self.amp)
            if self.amp is not None
            else nullcontext()
        )
        t_ready = time.perf_counter()
        for i, batch in enumerate(_timed(loader), start=skip_batches):
            batch, t_got = batch
            data_s = t_got - t_ready
            batch = to_device(batch, self.device)
            for callback in self.callbacks:
                batch = callback.on_train_batch(self, batch)
            labels = batch["label"]
            last_of_step = (i + 1) % tc.grad_accum == 0 or i + 1 == total_batches
            # Accumulating micro-batches skip DDP's all-reduce; the step's last one syncs.
            no_sync = self.net.no_sync if self.dist.enabled and not last_of_step else nullcontext
            with no_sync():
                with autocast:
                    logits = self.net(batch)
                    loss = mixed_loss(self.criterion, logits, batch)
                    penalty = getattr(self.model, "regularization_loss", None)
                    if penalty is not None:
                        loss = loss + penalty()
                self.scaler.scale(loss / tc.grad_accum).backward()
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise FloatingPointError(
                    f"loss is {loss_value} at epoch {epoch} batch {i}: lower train.lr, or check "
                    "the inputs (bad_inputs.jsonl) and train.amp"
                )
            bs = int(labels.shape[0])
            loss_sum += loss_value * bs
            seen += bs
            window["loss"] += loss_value
            window["n"] += 1
            window["samples"] += bs
            if last_of_step:
                # The gradients are all-reduced (DDP) and unscaled (AMP) here: measure them
                # before clipping. A disabled scaler's unscale_ does nothing.
                self.scaler.unscale_(self.optimizer)
                groups = (
                    group_norms(self.grad_groups)
                    if tc.log_grad_norms_every
                    and (self.global_step + 1) % tc.log_grad_norms_every == 0
                    else None
                )
                norm = step_norm(self.params, tc.clip_grad_norm)
                if math.isfinite(norm):
                    self.scaler.step(self.optimizer)
                elif self.nonfinite.record(norm, epoch):
                    # Skipped, as GradScaler skips it: one inf would turn every weight
                    # into nan. The warning names the count; summary.json has the total.
                    self.logger.emit(
                        EventType.WARNING,
                        kind="grad_norm_nonfinite",
                        message=nonfinite_message(
                            self.nonfinite.count, self.global_step + 1, self.scaler.is_enabled()
                        ),
                        count=self.nonfinite.count,
                        global_step=self.global_step + 1,
                        epoch=epoch,
                        amp=str(self.amp).replace("torch.", "") if self.amp else "off",
                    )
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.schedule.after_optimizer_step()
                self.global_step += 1
            if self.device.type == "cuda" and last_of_step and self.global_step % tc.log_every == 0:
                torch.cuda.synchronize()  # honest compute time, only when we report it
            t_done = time.perf_counter()
            window["data_s"] += data_s
            window["compute_s"] += t_done - t_got
            if last_of_step and self.global_step % tc.log_every == 0:
                self.logger.emit(
                    EventType.STEP,
                    epoch=epoch,
                    step=math.ceil((i + 1) / tc.grad_accum),
                    steps=self.steps_per_epoch,
                    global_step=self.global_step,
                    loss=window["loss"] / window["n"],
                    lr=current_lr(self.optimizer),
                    data_s=window["data_s"],
                    compute_s=window["compute_s"],
                    samples=window["samples"],
                    grad_norm=finite_or_none(norm),
                    **({"grad_norms": groups} if groups is not None else {}),
                )
                window = {"loss": 0.0, "n": 0, "data_s": 0.0, "compute_s": 0.0, "samples": 0}
            if last_of_step and D.any_rank(self.stop_signal is not None, self.dist):
                self.stop_signal = self.stop_signal or signal.SIGTERM
                self._save(
                    epoch - 1,
                    batches_done=i + 1,
                    partial={"loss_sum": loss_sum, "samples": seen},
                    is_best=False,
                )
                raise StopRequested
            t_ready = time.perf_counter()
        loss_sum, seen = D.sum_floats([loss_sum, seen], self.dist)
        return loss_sum / max(seen, 1)

    @torch.no_grad()
    def _predict(self, split: str) -> tuple[np.ndarray, np.ndarray, float]:
        """Probabilities, labels and mean loss over ``split``, one row per sample.

        An eval data set may yield several rows per sample (clips of one video,
        test-time augmentation views), each carrying ``"sample"`` (its sample's row in
        the split): their probabilities are averaged. The loss is the mean over rows.
        """
        self.model.eval()
        probs, labels, groups, loss_sum, n = [], [], [], 0.0, 0
        autocast = (
            torch.autocast(self.device.type, dtype=self.amp)
            if self.amp is not None
            else nullcontext()
        )
        dataset = self.data.dataset(split)
        batches = self._eval_batches(len(dataset))
        for batch in self._loader(dataset, batches):
            batch = to_device(batch, self.device)
            with autocast:
                logits = self.model(batch)
            logits = logits.float()
            loss_sum += float(self.criterion(logits, batch["label"])) * len(batch["label"])
            n += len(batch["label"])
            probs.append(torch.softmax(logits, dim=-1).cpu().numpy())
            labels.append(batch["label"].cpu().numpy())
            if "sample" in batch:
                groups.append(batch["sample"].cpu().numpy())
        if self.dist.enabled:
            probs, labels, groups, loss_sum, n = self._gather_predictions(
                batches, probs, labels, groups, loss_sum, n
            )
        if n == 0:
            return np.zeros((0, len(self.classes))), np.zeros(0, dtype=np.int64), float("nan")
        all_probs, all_labels = np.concatenate(probs), np.concatenate(labels)
        if groups:
            all_probs, all_labels, _ = group_mean(all_probs, all_labels, np.concatenate(groups))
        return all_probs, all_labels, loss_sum / n

    def _gather_predictions(
        self,
        batches: list[list[int]],
        probs: list[np.ndarray],
        labels: list[np.ndarray],
        groups: list[np.ndarray],
        loss_sum: float,
        n: int,
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], float, int]:
        """Every rank's rows, back in the split's order, on every rank: the metrics,
        the confusion matrix and the early-stopping decision then agree everywhere."""
        rows = np.asarray([i for b in batches for i in b], dtype=np.int64)
        mine = (
            rows,
            np.concatenate(probs) if probs else np.zeros((0, len(self.classes)), np.float32),
            np.concatenate(labels) if labels else np.zeros(0, np.int64),
            np.concatenate(groups) if groups else None,
            loss_sum,
            n,
        )
        parts = D.gather(mine, self.dist)
        order = np.argsort(np.concatenate([p[0] for p in parts]), kind="stable")
        out_probs = np.concatenate([p[1] for p in parts])[order]
        out_labels = np.concatenate([p[2] for p in parts])[order]
        has_groups = any(p[3] is not None for p in parts)
        out_groups = (
            [np.concatenate([p[3] for p in parts if p[3] is not None])[order]] if has_groups else []
        )
        total = sum(p[5] for p in parts)
        if total == 0:
            return [], [], [], 0.0, 0
        return [out_probs], [out_labels], out_groups, sum(p[4] for p in parts), total

    def _evaluate(self, split: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Probabilities and labels (one row per sample) and the metrics of ``split``."""
        probs, labels, loss = self._predict(split)
        cm = M.confusion_matrix(labels, probs.argmax(axis=1), len(self.classes))
        return probs, labels, {"loss": loss, **M.classification_report(cm, self.classes)}

    def _emit_samples(self, epoch: int, split: str, probs: np.ndarray, labels: np.ndarray) -> None:
        """The ``samples`` event: the fixed rows' predictions (grouped over clips and
        views, as the metrics are). Rank 0 only: every rank holds the gathered rows."""
        if not self.tc.sample_predictions or not self.dist.is_main or not len(probs):
            return
        if self.sample_rows is None:
            self.sample_rows = S.pick_rows(len(probs), self.tc.sample_predictions, self.tc.seed)
            # Reading data set items may draw random numbers (an augmenting eval set):
            # the pictures must not shift the training's streams, or resume would differ.
            saved = rng_state()
            try:
                self.sample_pictures = S.write_pictures(
                    self.run.path,
                    split,
                    self.sample_rows,
                    self.data.dataset(split),
                    self.data.collate,
                    len(probs),
                    ((self.inference or {}).get("preprocessing") or {}).get("normalize"),
                    self.logger.log,
                )
            finally:
                set_rng_state(saved)
        names = [info.key for info in self.data.samples(split)]
        self.logger.emit(
            EventType.SAMPLES,
            epoch=epoch,
            global_step=self.global_step,
            split=split,
            classes=self.classes,
            samples=S.records(
                self.sample_rows, probs, labels, names, self.classes, self.sample_pictures
            ),
        )

    # -- checkpoints -----------------------------------------------------------------------

    def _save(self, epoch: int, batches_done: int, partial: dict | None, is_best: bool) -> None:
        # Every rank's RNG travels with the checkpoint (a collective: all ranks call _save).
        rngs = D.gather(rng_state(), self.dist)
        if not self.dist.is_main:
            return
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "early_stopping": self.stopper.state_dict(),
            "epoch": epoch,  # completed epochs
            "batches_done": batches_done,  # of epoch + 1, when stopped mid-epoch
            "partial": partial,
            "global_step": self.global_step,
            "grad_norm_nonfinite": self.nonfinite.count,
            "rng": rngs[0],
            "rng_per_rank": rngs,
            "world_size": self.dist.world_size,
            "classes": self.classes,
            "model_name": self.entry.name,
            "config": to_dict(self.cfg),
            # What inference needs beyond the config (fitted statistics, the input spec):
            # the data module's to say, see trainers.data.base.DataModule.inference_state.
            "inference": self.inference,
        }
        if is_best:
            save_checkpoint(self.run.best_ckpt, payload)
            self.logger.emit(
                EventType.CHECKPOINT,
                epoch=epoch,
                path=str(self.run.best_ckpt.relative_to(self.run.path)),
                kind="best",
                metric=self.tc.monitor,
                value=self.stopper.best,
            )
        save_checkpoint(self.run.last_ckpt, payload)
        self.logger.emit(
            EventType.CHECKPOINT,
            epoch=epoch,
            path=str(self.run.last_ckpt.relative_to(self.run.path)),
            kind="last",
            batches_done=batches_done,
        )

    def _restore(self, ckpt: dict[str, Any]) -> tuple[int, int, dict | None]:
        load_model_state(self.model, ckpt["model"], self.run.last_ckpt)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.stopper.load_state_dict(ckpt["early_stopping"])
        self.global_step = ckpt["global_step"]
        self.nonfinite.count = int(ckpt.get("grad_norm_nonfinite", 0))
        saved_world = ckpt.get("world_size", 1)
        per_rank = ckpt.get("rng_per_rank") or [ckpt["rng"]]
        if saved_world == self.dist.world_size and len(per_rank) == saved_world:
            set_rng_state(per_rank[self.dist.rank])
        else:
            set_rng_state(ckpt["rng"])
            seed_everything(self.tc.seed + 7919 * self.dist.rank + ckpt["global_step"])
        batches_done, partial = ckpt["batches_done"], ckpt["partial"]
        if batches_done and saved_world != self.dist.world_size:
            # A half-done epoch was dealt out to another number of ranks: which samples
            # it saw does not map onto this world, so the epoch starts over.
            self.logger.log(
                f"checkpoint stopped mid-epoch on {saved_world} rank(s); now "
                f"{self.dist.world_size}: epoch {ckpt['epoch'] + 1} restarts from its first batch"
            )
            batches_done, partial = 0, None
        return ckpt["epoch"], batches_done, partial

    # -- the end ---------------------------------------------------------------------------

    def _finish(
        self,
        epochs_run: int,
        stop_reason: str,
        t_start: float,
        train_s: float,
        epoch_times: list[float],
    ) -> dict[str, Any]:
        t_eval = time.perf_counter()
        has_best = D.broadcast(self.run.best_ckpt.exists(), self.dist)
        if has_best:
            best = (
                load_checkpoint(self.run.best_ckpt, map_location="cpu", trust_pickle=True)
                if self.dist.is_main
                else None
            )
            state = D.broadcast(best["model"] if best else None, self.dist)
            load_model_state(self.model, state, self.run.best_ckpt)
        results: dict[str, Any] = {}
        rows = []
        for split in ("val", "test"):
            probs, labels, loss = self._predict(split)
            preds = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
            cm = M.confusion_matrix(labels, preds, len(self.classes))
            results[split] = {"loss": loss, **M.classification_report(cm, self.classes)}
            infos = self.data.samples(split)
            for i in range(len(labels)):
                rows.append(
                    {
                        "split": split,
                        "index": i,
                        "key": infos[i].key,
                        "actor": infos[i].actor,
                        "label": int(labels[i]),
                        "pred": int(preds[i]),
                        "probs": [round(float(p), 6) for p in probs[i]],
                    }
                )
            if split == "test":
                self.logger.emit(
                    EventType.VAL,
                    epoch=self.stopper.best_epoch,
                    split="test",
                    global_step=self.global_step,
                    **results[split],
                )
        if self.dist.is_main:
            with open(self.run.predictions, "w", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row) + "\n")
        test_labels = np.asarray(self.data.labels("test"))
        summary = {
            "run_id": self.run.path.name,
            "model": self.entry.name,
            "classes": self.classes,
            "monitor": self.tc.monitor,
            "best_epoch": self.stopper.best_epoch,
            "best_value": self.stopper.best,
            "epochs_run": epochs_run,
            "stop_reason": stop_reason,
            "val": results["val"],
            "test": results["test"],
            # What always predicting the training majority class scores: read any result
            # against it (MELD's "neutral" floor is ~0.31 weighted F1).
            "majority_floor": M.majority_floor(self.train_labels, test_labels, len(self.classes))
            if len(test_labels)
            else None,
            "data": self.description,
            "bad_inputs": len(self.bad),
            # Optimizer steps skipped for a non-finite gradient norm (fp16's first steps).
            "grad_norm_nonfinite": self.nonfinite.count,
            "timings": {
                "total_s": time.perf_counter() - t_start,
                "prepare_s": self.prepare_s,
                "train_s": train_s,
                "epoch_mean_s": float(np.mean(epoch_times)) if epoch_times else 0.0,
                "eval_s": time.perf_counter() - t_eval,
            },
            "device": str(self.device),
            "amp": str(self.amp).replace("torch.", "") if self.amp else "off",
            "world_size": self.dist.world_size,
        }
        if self.dist.is_main:
            write_json_atomic(self.run.summary, summary)
        return summary


def _timed(loader: DataLoader) -> Iterator[tuple[dict[str, Any], float]]:
    for batch in loader:
        yield batch, time.perf_counter()


def new_manifest(
    run: RunDir, entry: ModelEntry, cfg: ExperimentConfig, argv: list[str]
) -> dict[str, Any]:
    return {
        "id": run.path.name,
        "model": entry.name,
        "config": to_dict(cfg),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "argv": argv,
        "version": trainers.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "started_at": time.time(),
        "status": RunStatus.STARTING,
        "cwd": str(Path.cwd()),
    }
