"""Waiting for a run in its host's queue, as every view of a run does before it can
follow one: ``emoconsole monitor`` and the dashboard's run view call this one loop.

It asks the host's listing (``hostctl list``, the one the runs table polls) rather
than reading ``RUNS/.queue`` itself: the listing already says each waiting run's
place and works the same over SSH as here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from remote.deploy import list_runs
from remote.errors import RemoteError
from remote.host import Host

# The listing is one hostctl call (a Python start on the host): no faster than this.
MIN_POLL_S = 1.0


class LeftQueueError(RemoteError):
    """The run was waiting and is no longer listed: it was taken out of the queue
    (``stop``) or its launch failed, so it never started; there is nothing to follow."""


def queue_places(
    host: Host,
    run_id: str,
    *,
    interval: float = MIN_POLL_S,
    sleep: Callable[[float], object] = time.sleep,
) -> Iterator[int]:
    """The run's place (1 starts next) each time it changes while it waits; ends as
    soon as the run is not waiting (started, or never queued). ``sleep`` returning
    a true value (a cancelled worker's ``Event.wait``) ends it too: the caller asked
    to stop. Raises :class:`LeftQueueError` when a run seen waiting disappears."""
    run_id = run_id.rstrip("/").rsplit("/", 1)[-1]  # a run's path names it too
    said: int | None = None
    while True:
        rows = list_runs(host)
        row = next((r for r in rows if r["id"] == run_id), None)
        if row is None and any(r.get("experiment") == run_id for r in rows):
            return  # a sweep that started: its experiment.json lists its runs instead
        if row is None and said is not None:
            raise LeftQueueError(
                f"{run_id} left the queue on {host.name} without starting (stopped?)"
            )
        if row is None or row.get("status") != "queued":
            return
        place = int(row.get("place") or 0)
        if place != said:
            said = place
            yield place
        if sleep(max(interval, MIN_POLL_S)):
            return
