"""What a run on EC2 costs: per hour, so far, and to finish. No Textual.

Two cases. A run whose run.json lists the instances it ran on (``instances``:
a managed run, recovered onto new instances after interruptions) costs the sum
of those instances, each at its own price over its own hours
(:func:`remote.ec2.prices.spans_cost`), and the projection to finish counts
the interruptions expected from the run's own record, or says the rate is
unknown. A run without that list is priced as before: the instance is what is
paid for, so "so far" is the instance's uptime (since its last start) times
its hourly price, and "to finish" is the ETA estimator's remaining time at the
same price. Prices are :mod:`remote.ec2`'s estimates (the on-demand table, the
spot price history), so every figure here is an estimate too, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from emoconsole.eta import format_duration

if TYPE_CHECKING:  # remote.ec2 stays unloaded until an EC2 run is priced
    from remote.ec2.prices import CostSoFar

PRICE_REFRESH_S = 300.0  # an EC2 price (and uptime) is asked again every 5 minutes


@dataclass(frozen=True)
class RunCost:
    usd_per_hour: float
    so_far: float  # USD: the instance's uptime, or every instance the run ran on
    to_finish: float | None  # USD for the remaining time; None while no ETA is known
    remaining_s: float | None
    instances: int = 1  # how many instances the run ran on (1: the uptime case)
    interruptions: int = 0
    note: str = ""  # what the projection counted: "interruption rate unknown", ...
    unpriced: tuple[str, ...] = ()  # instances with no known price: left out of so_far

    @property
    def at_end(self) -> float | None:
        """Projected total when the run ends, if the instance stops then."""
        return None if self.to_finish is None else self.so_far + self.to_finish


def run_cost(usd_per_hour: float, uptime_s: float, remaining_s: float | None) -> RunCost:
    """Hourly price x hours. Negative inputs (clock skew) count as zero."""
    hours_up = max(0.0, uptime_s) / 3600.0
    left = None if remaining_s is None else max(0.0, remaining_s)
    return RunCost(
        usd_per_hour=usd_per_hour,
        so_far=usd_per_hour * hours_up,
        to_finish=None if left is None else usd_per_hour * left / 3600.0,
        remaining_s=left,
    )


def spans_run_cost(
    cost: CostSoFar, remaining_s: float | None, since_s: float = 0.0
) -> RunCost | None:
    """The cost of a run over every instance it ran on, ``since_s`` seconds after
    ``cost`` was priced (the open instance's price counts on meanwhile), and the
    projection to finish with interruptions where a rate is known. None while no
    instance has a price."""
    price = cost.usd_per_hour
    if price is None:
        return None
    so_far = cost.usd
    current = cost.current
    if current is not None and current.usd_per_hour_now is not None:
        so_far += current.usd_per_hour_now * max(0.0, since_s) / 3600.0
    left = None if remaining_s is None else max(0.0, remaining_s)
    projection = cost.projection(left)
    return RunCost(
        usd_per_hour=price,
        so_far=so_far,
        to_finish=projection.to_finish,
        remaining_s=left,
        instances=cost.instances,
        interruptions=cost.interruption_rate().interruptions,
        note=projection.note,
        unpriced=tuple(cost.unpriced),
    )


def cost_text(cost: RunCost) -> str:
    """One line for the run view, e.g. ``cost ~$0.526/h, $1.05 so far, $0.53 to finish
    (1h00m left), ~$1.58 at the end``; across instances, e.g. ``cost ~$0.160/h, $2.10
    so far on 3 instances (2 interrupted), $0.80 to finish (5h00m left; interruption
    rate unknown), ~$2.90 at the end``."""
    text = f"cost ~${cost.usd_per_hour:.3f}/h, ${cost.so_far:.2f} so far"
    if cost.instances > 1:
        text += f" on {cost.instances} instances ({cost.interruptions} interrupted)"
    if cost.unpriced:
        text += f" + ? for {', '.join(cost.unpriced)} (no price)"
    if cost.to_finish is None:
        return text + ", to finish: no ETA yet"
    left = format_duration(cost.remaining_s)
    note = f"; {cost.note}" if cost.note else ""
    return (
        text + f", ${cost.to_finish:.2f} to finish ({left} left{note})"
        f", ~${cost.at_end:.2f} at the end"
    )
