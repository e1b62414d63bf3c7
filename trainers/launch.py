"""Runs one run directory under torchrun and gives the run its final word.

``python -m trainers train MODEL --nproc-per-node N`` creates the run directory
as usual, then calls :func:`launch`, which runs torchrun (its own
``torch.distributed.run``, in this process, so its failure report arrives as a
structured ``ChildFailedError`` rather than text to parse). Each rank runs
``python -m trainers worker RUN_DIR``; rank 0 writes the run directory.

This process is the run's ``pid`` in run.json: ``stop`` signals it, torchrun
forwards SIGTERM (or SIGHUP, the terminal closing) to every rank, the ranks
agree on the step to stop at and rank 0 saves a checkpoint. When a rank dies,
torchrun stops the others (or restarts all of them from the last checkpoint,
``--max-restarts``); if it gives up, this process writes the final status:
``crashed`` for a rank killed by a signal, ``failed`` for one that raised, with
the rank and its last log lines.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from trainers.engine.signals import stop_signals
from trainers.events import EventType, EventWriter, RunStatus, stop_status
from trainers.rundir import RunDir, tail_lines
from trainers.session import fit_exit_code, trainer_from_manifest

# The environment variable that tells a worker a launcher owns the run's final status.
SUPERVISED_ENV = "TRAINERS_SUPERVISED"
# The signals torchrun turns into SignalException and sends on to the ranks.
TORCHRUN_SIGNALS_ENV = "TORCHELASTIC_SIGNALS_TO_HANDLE"
LAST_LINES = 50


def torchrun_argv(
    run: RunDir,
    nproc: int,
    nnodes: int = 1,
    rdzv_endpoint: str = "",
    max_restarts: int = 0,
    node_rank: int | None = None,
) -> list[str]:
    """torchrun's own command line for this run (also what ``--dry-run`` would show)."""
    argv = [f"--nproc-per-node={nproc}", f"--max-restarts={max_restarts}"]
    argv += ["--monitor-interval=0.5"]
    if nnodes > 1:
        if not rdzv_endpoint:
            raise ValueError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (the first node)")
        argv += [
            f"--nnodes={nnodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rdzv_endpoint}",
            f"--rdzv-id={run.path.name}",
        ]
        if node_rank is not None:
            argv.append(f"--node-rank={node_rank}")
    else:
        argv.append("--standalone")
    return [*argv, "-m", "trainers", "worker", str(run.path)]


def launch(
    run: RunDir,
    nproc: int,
    nnodes: int = 1,
    rdzv_endpoint: str = "",
    max_restarts: int = 0,
    node_rank: int | None = None,
) -> int:
    """Run torchrun to the end; the exit code the CLI returns (0, 1, or 128+signal)."""
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    started = time.time()  # a notice.json older than this is an earlier process's
    argv = torchrun_argv(run, nproc, nnodes, rdzv_endpoint, max_restarts, node_rank)
    print("torchrun " + " ".join(argv), flush=True)
    args = get_args_parser().parse_args(argv)
    os.environ[SUPERVISED_ENV] = "1"
    # The stop signals and torchrun's SIGQUIT: SIGHUP is forwarded like SIGTERM (the
    # ranks checkpoint and stop), unless this process ignores it (nohup), when it
    # stays ignored here and in the ranks.
    names = [sig.name for sig in stop_signals()] + ["SIGQUIT"]
    os.environ.setdefault(TORCHRUN_SIGNALS_ENV, ",".join(names))
    # The ranks' process group gets a store of its own rather than sharing the
    # rendezvous store: shared, a restarted rank can read the previous attempt's
    # addresses and its gloo/NCCL set-up hangs (pytorch/pytorch#135712; seen here
    # as both ranks stuck in ProcessGroupGloo's constructor after --max-restarts).
    os.environ.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    try:
        torchrun(args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        record_rank_failure(run, rank, failure.exitcode, failure.message)
        return 1
    except SignalException as exc:
        # torchrun has stopped the ranks with the same signal; rank 0 wrote "stopped" (or
        # "preempted", on the guard's notice) if they agreed on a step, else the run is
        # recorded here by the same rule.
        status, notice = stop_status(run.path, started)
        _finish_if_open(run, status, signal=int(exc.sigval), **notice)
        return 128 + int(exc.sigval)
    manifest = run.read_manifest() if run.run_json.exists() else {}
    if not manifest.get("rank0_pid"):
        # Another node of the job had rank 0 and wrote the run; this node's copy of
        # run.json says so instead of staying "starting" forever.
        run.update_manifest(status=RunStatus.COMPLETED, ended_at=time.time(), rank0="elsewhere")
    return 0


def record_rank_failure(run: RunDir, rank: int, exitcode: int, message: str) -> None:
    """The run's final events when torchrun gave up on a failed rank."""
    status = RunStatus.CRASHED if exitcode < 0 else RunStatus.FAILED
    how = f"killed by {_signal_name(-exitcode)}" if exitcode < 0 else f"exited with code {exitcode}"
    last = last_lines(run, rank)
    with EventWriter(run.events) as writer:
        writer.write(
            EventType.ERROR,
            message=f"rank {rank} {how}",
            rank=rank,
            exitcode=exitcode,
            detail=message,
            last_log=last,
        )
        writer.write(EventType.STATUS, status=status, rank=rank, last_log=last)
    if run.run_json.exists():
        run.update_manifest(status=status, ended_at=time.time(), failed_rank=rank)
    print(f"rank {rank} {how}; its last log lines:", file=sys.stderr)
    for line in last[-10:]:
        print(f"  {line}", file=sys.stderr)


def last_lines(run: RunDir, rank: int, n: int = LAST_LINES) -> list[str]:
    """Rank 0's train.log, any other rank's own log: the last ``n`` lines."""
    path = run.train_log if rank == 0 else run.rank_log(rank)
    return tail_lines(path, n) or [f"(no log at {path})"]


def _finish_if_open(run: RunDir, status: RunStatus, **fields: Any) -> None:
    manifest = run.read_manifest() if run.run_json.exists() else {}
    if RunStatus(manifest.get("status", "starting")).is_terminal():
        return
    with EventWriter(run.events) as writer:
        writer.write(EventType.STATUS, status=status, **fields)
    final: dict[str, Any] = {"status": status, "ended_at": time.time()}
    if status == RunStatus.PREEMPTED:  # as the engine records it (Trainer._record_stop)
        notice = {k: fields.get(k) for k in ("source", "action", "notice_time", "noticed_at")}
        earlier = manifest.get("preemptions") or []
        final["preemptions"] = [*earlier, {**notice, "stopped_at": final["ended_at"]}]
    run.update_manifest(**final)


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def worker_main(run_dir: Path) -> int:
    """One rank: the run's model and config from run.json; resume when a checkpoint
    exists (torchrun's elastic restart, or ``resume`` on another number of ranks)."""
    run = RunDir(run_dir)
    trainer = trainer_from_manifest(run, supervised=os.environ.get(SUPERVISED_ENV) == "1")
    return fit_exit_code(trainer, resume=run.last_ckpt.exists())
