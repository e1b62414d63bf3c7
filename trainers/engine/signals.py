"""The signals that stop a run cleanly: the loop saves a checkpoint at the next step,
records status ``stopped`` and the process exits 128+N.

SIGTERM is ``stop`` and the console's ``q``, SIGINT is Ctrl-C, SIGHUP is the
terminal that ran the process closing: all three mean "stop, keep what was
done". A process started with SIGHUP ignored (``nohup``) keeps ignoring it.
Standard library only: the torchrun launcher reads this before importing torch.
"""

from __future__ import annotations

import signal


def stop_signals() -> list[signal.Signals]:
    """SIGTERM, SIGINT and SIGHUP, less SIGHUP where this process ignores it (nohup)."""
    signals = [signal.SIGTERM, signal.SIGINT]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signals.append(signal.SIGHUP)
    return signals
