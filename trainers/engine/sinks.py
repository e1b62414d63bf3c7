"""One metric-logging interface, several sinks (torchtune's habit).

The engine emits every record once, as an event: :class:`RunLogger` writes it
to events.jsonl (which assigns its ``seq``) and hands the same dict to each
sink. TensorBoard and train.log are therefore views of events.jsonl and can
never disagree with it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Protocol, TextIO

from trainers.events import EventType, EventWriter

# Scalars mirrored to TensorBoard from val events.
VAL_SCALARS = ("loss", "accuracy", "macro_f1", "weighted_f1", "uar")


class Sink(Protocol):
    def handle(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class RunLogger:
    """With ``events_path=None`` nothing reaches events.jsonl: the sinks alone see the
    records (ranks other than 0 log to their own file and write no events)."""

    def __init__(self, events_path: Path | None, sinks: list[Sink]) -> None:
        self.writer = EventWriter(events_path) if events_path is not None else None
        self.sinks = sinks

    def emit(self, etype: EventType, **fields: Any) -> dict[str, Any]:
        if self.writer is not None:
            event = self.writer.write(etype, **fields)
        else:
            event = {"seq": 0, "type": str(EventType(etype)), "time": time.time(), **fields}
        for sink in self.sinks:
            sink.handle(event)
        return event

    def log(self, message: str) -> None:
        """A human line with no event behind it (e.g. data-set description)."""
        for sink in self.sinks:
            if isinstance(sink, TextLogSink):
                sink.line(message)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        if self.writer is not None:
            self.writer.close()


class TensorBoardSink:
    """Every scalar on the global-step axis, so a resumed run can purge the
    steps its killed predecessor wrote past the checkpoint (``purge_step``).

    ``run_dir`` (default: ``log_dir``'s parent) is where the ``samples`` event's
    picture paths point."""

    def __init__(
        self, log_dir: Path, purge_step: int | None = None, run_dir: Path | None = None
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)
        self.global_step = purge_step or 0
        self.run_dir = Path(run_dir) if run_dir is not None else Path(log_dir).parent

    def handle(self, event: dict[str, Any]) -> None:
        etype = event["type"]
        if etype == EventType.STEP:
            step = event["global_step"]
            self.global_step = step
            self.writer.add_scalar("train/loss", event["loss"], step)
            self.writer.add_scalar("train/lr", event["lr"], step)
            self.writer.add_scalar("perf/data_s", event["data_s"], step)
            self.writer.add_scalar("perf/compute_s", event["compute_s"], step)
            if event.get("grad_norm") is not None:
                self.writer.add_scalar("train/grad_norm", event["grad_norm"], step)
            for group, norm in (event.get("grad_norms") or {}).items():
                if norm is not None:
                    self.writer.add_scalar(f"grad_norm/{group}", norm, step)
        elif etype == EventType.SAMPLES:
            self._samples(event)
        elif etype == EventType.VAL:
            step = event.get("global_step", self.global_step)
            split = event["split"]
            for key in VAL_SCALARS:
                self.writer.add_scalar(f"{split}/{key}", event[key], step)
            for name, stats in event.get("per_class", {}).items():
                self.writer.add_scalar(f"{split}_recall/{name}", stats["recall"], step)
            if "train_loss" in event:
                self.writer.add_scalar("train/epoch_loss", event["train_loss"], step)

    def _samples(self, event: dict[str, Any]) -> None:
        from trainers.engine.samples import markdown_table

        step = event.get("global_step", self.global_step)
        split = event["split"]
        self.writer.add_text(f"samples/{split}", markdown_table(event), step)
        if event["epoch"] != 1:
            # The pictures never change: written with epoch 1's validation, whose step a
            # resume never purges once that epoch's checkpoint exists.
            return
        import numpy as np
        from PIL import Image

        for sample in event["samples"]:
            if not sample.get("image"):
                continue
            with Image.open(self.run_dir / sample["image"]) as img:
                pixels = np.asarray(img.convert("RGB"))
            tag = f"samples/{split}_{sample['index']:04d}"
            self.writer.add_image(tag, pixels, step, dataformats="HWC")

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


class TextLogSink:
    """train.log, the human log; also echoed to a stream when one is given."""

    def __init__(self, path: Path, echo: TextIO | None = sys.stdout, step_every: int = 10) -> None:
        self.fh = open(path, "a", encoding="utf-8")  # noqa: SIM115
        self.echo = echo
        self.step_every = step_every

    def line(self, message: str, level: str = "INFO") -> None:
        text = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {level:<5} {message}\n"
        self.fh.write(text)
        self.fh.flush()
        if self.echo is not None:
            self.echo.write(text)
            self.echo.flush()

    def handle(self, event: dict[str, Any]) -> None:
        etype = event["type"]
        if etype == EventType.STATUS:
            extra = {k: v for k, v in event.items() if k not in ("seq", "type", "time", "status")}
            if event["status"] == "preparing" and "done" in extra:
                return
            detail = " ".join(f"{k}={v}" for k, v in extra.items())
            self.line(f"status {event['status']} {detail}".rstrip())
        elif etype == EventType.EPOCH_START:
            self.line(
                f"epoch {event['epoch']}/{event['epochs']} start: "
                f"{event['steps']} steps, lr {event.get('lr', 0):.3g}"
            )
        elif etype == EventType.STEP:
            if event["step"] % self.step_every == 0:
                self.line(
                    f"epoch {event['epoch']} step {event['step']}/{event.get('steps', '?')} "
                    f"loss {event['loss']:.4f} lr {event['lr']:.3g} "
                    f"grad-norm {_norm_text(event.get('grad_norm', 'n/a'))} "
                    f"data {event['data_s'] * 1000:.0f}ms compute {event['compute_s'] * 1000:.0f}ms"
                )
        elif etype == EventType.VAL:
            self.line(
                f"epoch {event['epoch']} {event['split']}: loss {event['loss']:.4f} "
                f"acc {event['accuracy']:.4f} macro-F1 {event['macro_f1']:.4f} "
                f"weighted-F1 {event['weighted_f1']:.4f} UAR {event['uar']:.4f}"
                + (" *best*" if event.get("is_best") else "")
            )
        elif etype == EventType.CHECKPOINT:
            self.line(f"checkpoint {event['kind']} epoch {event['epoch']} -> {event['path']}")
        elif etype == EventType.WARNING:
            self.line(f"{event['message']}", level="WARNING")
        elif etype == EventType.ERROR:
            self.line(f"{event['message']}", level="ERROR")
            if event.get("traceback"):
                self.fh.write(event["traceback"])
                self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def _norm_text(norm: float | str | None) -> str:
    """A step's gradient norm for train.log: ``inf/nan`` where the event has null."""
    if norm is None:
        return "inf/nan"
    return norm if isinstance(norm, str) else f"{norm:.3g}"
