"""What ``emoconsole monitor`` shows, as state fed by watch items and a rich renderable.

Kept apart from the command so it can be tested on items alone (no host, no
terminal): everything on screen comes from :meth:`MonitorState.add`.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from emoconsole.eta import EtaEstimator, format_duration
from remote.watch import ConnectionItem, CrashedItem, EventItem, LogItem, SysItem
from trainers.runlog import RunLog


@dataclass
class MonitorState:
    run: str
    host: str
    log_lines: int = 12
    status: str = "waiting"
    model: str = ""
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float | None = None
    connection: str = "connecting"
    crashed_log: list[str] = field(default_factory=list)
    sys: dict[str, Any] | None = None
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # a multi-node job's samples
    eta: EtaEstimator = field(default_factory=EtaEstimator)
    # The epochs' rows, best and final evaluation as the run ends up (resumes applied);
    # ``history``, ``best``, ``best_epoch``, ``monitor_metric`` and ``test`` read it.
    runlog: RunLog = field(default_factory=RunLog)
    log: deque[str] = field(default_factory=deque)
    _partial: str = ""

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.runlog.rows

    @property
    def best(self) -> float | None:
        return self.runlog.best

    @property
    def best_epoch(self) -> int | None:
        return self.runlog.best_epoch

    @property
    def monitor_metric(self) -> str:
        return self.runlog.monitor or ""

    @property
    def test(self) -> dict[str, Any] | None:
        return self.runlog.test

    @property
    def run_warnings(self) -> list[str]:
        """What the run itself warned about (``warning`` events), one sentence each, and
        its storage pushes failing (the guard's state, in the watcher's samples)."""
        warnings = [str(event.get("message")) for event in self.runlog.warnings]
        storage = (self.sys or {}).get("storage")
        if isinstance(storage, dict) and storage.get("ok") is False:
            warnings.append(
                f"storage: the last {storage.get('failures') or 1} push(es) to "
                f"{storage.get('url') or 'storage'} failed ({storage.get('error')}); the run "
                "trains on and the guard retries with backoff"
            )
        return warnings

    def add(self, item: object) -> None:
        if isinstance(item, EventItem):
            self._event(item.event)
            if self.connection != "live":
                self.connection = "live"
        elif isinstance(item, LogItem):
            text = self._partial + item.text
            *lines, self._partial = text.split("\n")
            self.log.extend(lines)
            while len(self.log) > self.log_lines:
                self.log.popleft()
        elif isinstance(item, SysItem):
            self.sys = item.sample
            if "node" in item.sample:
                self.nodes[str(item.sample["node"])] = item.sample
            self.connection = "live"
        elif isinstance(item, ConnectionItem):
            self.connection = {
                "lost": f"lost ({item.reason}); reconnecting",
                "retrying": f"reconnecting, attempt {item.attempt}",
                "restored": "live (reconnected)",
            }[item.state]
        elif isinstance(item, CrashedItem):
            self.status = "crashed"
            self.crashed_log = list(item.last_log)

    def _event(self, event: dict[str, Any]) -> None:
        self.eta.update(event)
        log = self.runlog
        log.add(event)
        kind = event.get("type")
        if kind == "status":
            self.status = str(log.status)
            if event.get("last_log"):  # the torchrun launcher's report of a dead rank
                self.crashed_log = [f"rank {event.get('rank')}:", *event["last_log"]]
        elif kind == "epoch_start" and log.epoch_start is not None:
            self.epoch = log.epoch_start["epoch"]
            self.epochs = log.epoch_start.get("epochs", self.epochs)
            self.steps, self.step = log.epoch_start.get("steps", 0), 0
        elif kind == "step":
            self.step, self.loss = event.get("step", self.step), event.get("loss")

    def render(self) -> Group:
        header = Table.grid(padding=(0, 2))
        header.add_row(
            Text(self.run, style="bold"),
            f"host {self.host}",
            Text(self.status, style=status_style(self.status)),
            f"connection: {self.connection}",
        )
        est = self.eta.estimate(time.time())
        progress = (
            f"epoch {self.epoch}/{self.epochs or '?'}  step {self.step}/{self.steps or '?'}"
            + (f"  loss {self.loss:.4f}" if self.loss is not None else "")
            + f"  ETA {format_duration(est.to_max_epochs)}"
        )
        if est.earliest_stop_epoch is not None and est.earliest_stop_epoch < (est.epochs or 0):
            progress += (
                f" (early stop possible from epoch {est.earliest_stop_epoch}: "
                f"{format_duration(est.to_earliest_stop)})"
            )
        if self.best is not None:
            progress += f"  best {self.monitor_metric} {self.best:.4f} @ {self.best_epoch}"
        parts: list[Any] = [header, Text(progress)]
        parts.extend(Text(f"⚠ {w}", style="bold yellow") for w in self.run_warnings)
        if self.history:
            table = Table("epoch", "train loss", "val loss", "acc", "macro F1", "w F1", "UAR", "s")
            for ev in self.history[-8:]:
                table.add_row(
                    str(ev.get("epoch")),
                    _f(ev.get("train_loss")),
                    _f(ev.get("loss")),
                    _f(ev.get("accuracy")),
                    _f(ev.get("macro_f1")),
                    _f(ev.get("weighted_f1")),
                    _f(ev.get("uar")),
                    _f(ev.get("epoch_s"), 1),
                )
            parts.append(table)
        if self.test is not None:
            parts.append(
                Text(
                    f"test: accuracy {_f(self.test.get('accuracy'))}  macro F1 "
                    f"{_f(self.test.get('macro_f1'))}  UAR {_f(self.test.get('uar'))}",
                    style="bold green",
                )
            )
        if len(self.nodes) > 1:
            for node, sample in sorted(self.nodes.items()):
                parts.append(Text(f"{node:<12} " + system_line(sample), style="cyan"))
        elif self.sys is not None:
            parts.append(Text(system_line(self.sys), style="cyan"))
        log = "\n".join(self.crashed_log or self.log) or "(no log yet)"
        title = "last log lines before the crash" if self.crashed_log else "log"
        parts.append(Panel(log, title=title, border_style="red" if self.crashed_log else "dim"))
        return Group(*parts)


def system_line(sample: dict[str, Any]) -> str:
    """One line of a system sample: monitor, the run view and ``watch --sys`` print it."""
    parts = []
    if sample.get("cpu_percent") is not None:
        parts.append(f"cpu {sample['cpu_percent']:.0f}%")
    if sample.get("ram_percent") is not None:
        parts.append(f"ram {sample['ram_percent']:.0f}%")
    if sample.get("disk_free") is not None:
        parts.append(f"disk free {sample['disk_free'] / 2**30:.1f} GiB")
    for gpu in sample.get("gpus") or []:
        parts.append(
            f"gpu{gpu.get('index')} {gpu.get('util_percent')}% "
            f"{gpu.get('mem_used_mib')}/{gpu.get('mem_total_mib')} MiB "
            f"{gpu.get('temp_c')}C {gpu.get('power_w')}W"
        )
    alive = {True: "alive", False: "gone", None: "?"}[sample.get("alive")]
    procs = sample.get("procs", 1)
    parts.append(f"process {alive}" + (f" ({procs} processes)" if procs > 1 else ""))
    return "system: " + "  ".join(parts)


def _f(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def status_style(status: str) -> str:
    """A run status's colour, the same in the monitor and the dashboard's run view."""
    return {
        "completed": "bold green",
        "running": "green",
        "failed": "bold red",
        "crashed": "bold red",
        "stopped": "yellow",
        "preempted": "bold magenta",  # its instance went away; checkpoint kept, resumable
    }.get(status, "")
