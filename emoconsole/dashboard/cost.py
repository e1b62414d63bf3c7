"""What a run on an EC2 instance costs: per hour, so far, and to finish. No Textual.

The instance is what is paid for, not the run: "so far" is the instance's
uptime (since its last start) times its hourly price, and "to finish" is the
ETA estimator's remaining time at the same price. Prices are
:mod:`remote.ec2`'s estimates (the on-demand table or the current spot
price), so every figure here is an estimate too, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from emoconsole.eta import format_duration

PRICE_REFRESH_S = 300.0  # an EC2 price (and uptime) is asked again every 5 minutes


@dataclass(frozen=True)
class RunCost:
    usd_per_hour: float
    so_far: float  # USD for the instance's uptime
    to_finish: float | None  # USD for the remaining time; None while no ETA is known
    remaining_s: float | None

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


def cost_text(cost: RunCost) -> str:
    """One line for the run view, e.g. ``cost ~$0.526/h, $1.05 so far, $0.53 to finish
    (1h00m left), ~$1.58 at the end``."""
    text = f"cost ~${cost.usd_per_hour:.3f}/h, ${cost.so_far:.2f} so far"
    if cost.to_finish is None:
        return text + ", to finish: no ETA yet"
    return (
        text + f", ${cost.to_finish:.2f} to finish ({format_duration(cost.remaining_s)} left)"
        f", ~${cost.at_end:.2f} at the end"
    )
