"""What an instance costs per hour (the spot price now, else the on-demand table), and
what a run has cost across every instance it ran on (:func:`spans_cost`): each spot
instance priced from the price history over its own hours, each on-demand one from the
table, and a projection to finish that counts interruptions where the run's own record
can estimate a rate (:class:`CostSoFar`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from remote.config import Ec2Profile
from remote.ec2.api import Ec2Error, Instance, aws_errors

# On-demand Linux list prices in us-east-1 (USD per hour), from
# https://aws.amazon.com/ec2/pricing/on-demand/ as published in 2024. A fallback
# when no better figure is at hand: other regions differ (often by 10-30 %) and
# prices change, so every figure from it is shown as an estimate.
ON_DEMAND_USD_PER_HOUR: dict[str, float] = {
    "t3.medium": 0.0416,
    "t3.large": 0.0832,
    "t3.xlarge": 0.1664,
    "c6i.xlarge": 0.17,
    "g4dn.xlarge": 0.526,
    "g4dn.2xlarge": 0.752,
    "g4dn.4xlarge": 1.204,
    "g4dn.8xlarge": 2.176,
    "g4dn.12xlarge": 3.912,
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g5.4xlarge": 1.624,
    "g5.8xlarge": 2.448,
    "g5.12xlarge": 5.672,
    "g6.xlarge": 0.8048,
    "g6.2xlarge": 0.9776,
    "g6e.xlarge": 1.861,
    "p3.2xlarge": 3.06,
    "p3.8xlarge": 12.24,
}
ON_DEMAND_BASIS = "us-east-1 on-demand list price, 2024 table"


# -- prices -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Price:
    usd_per_hour: float | None
    basis: str

    @property
    def short(self) -> str:
        if self.usd_per_hour is None:
            return "?"
        value = self.usd_per_hour
        return f"~${value:.5f}/h" if value < 0.01 else f"~${value:.3f}/h"

    def __str__(self) -> str:
        return f"{self.short} ({self.basis}; estimate)"


def on_demand_price(instance_type: str) -> Price:
    price = ON_DEMAND_USD_PER_HOUR.get(instance_type)
    if price is None:
        return Price(None, f"{instance_type} not in the price table; see {_PRICING_URL}")
    return Price(price, ON_DEMAND_BASIS)


_PRICING_URL = "https://aws.amazon.com/ec2/pricing/"


def spot_price(client: Any, instance_type: str, zone: str | None = None) -> Price | None:
    """The latest Linux spot price (in ``zone``, else the cheapest zone), or None."""
    try:
        with aws_errors(f"reading spot prices for {instance_type}"):
            rows = client.describe_spot_price_history(
                InstanceTypes=[instance_type],
                ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
                StartTime=datetime.now(UTC),
                **({"AvailabilityZone": zone} if zone else {}),
            ).get("SpotPriceHistory", [])
    except Ec2Error:
        return None
    if zone:
        rows = [r for r in rows if r.get("AvailabilityZone") == zone]
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        az = row.get("AvailabilityZone", "?")
        if az not in latest or row["Timestamp"] > latest[az]["Timestamp"]:
            latest[az] = row
    if not latest:
        return None
    az, row = min(latest.items(), key=lambda kv: float(kv[1]["SpotPrice"]))
    return Price(float(row["SpotPrice"]), f"spot price now in {az}")


def hourly_price(client: Any, instance: Instance) -> Price:
    """What the instance costs per hour while it runs: the current spot price for a
    spot instance, the on-demand table otherwise (both estimates; disks extra)."""
    return _price(client, instance.instance_type, instance.spot, instance.availability_zone)


def profile_price(client: Any, profile: Ec2Profile) -> Price:
    """What an instance of the profile would cost per hour (before launching it)."""
    return _price(client, profile.instance_type, profile.spot, profile.availability_zone)


def _price(client: Any, instance_type: str, spot: bool, zone: str | None) -> Price:
    if not spot:
        return on_demand_price(instance_type)
    found = spot_price(client, instance_type, zone)
    if found is not None:
        return found
    ceiling = on_demand_price(instance_type)  # a spot price never exceeds on-demand
    return Price(ceiling.usd_per_hour, f"at most; no spot price to hand, {ceiling.basis}")


# -- a run's cost across the instances it ran on ----------------------------------------------

Market = Literal["spot", "on-demand"]
_PRODUCTS = ("Linux/UNIX", "Linux/UNIX (Amazon VPC)")
# An interruption costs more than the hours around it: a new instance boots, the code is
# shipped, the run directory restored, and the steps since the last checkpoint are done
# again. Nothing in a run's record measures that yet, so it is a stated guess (10 min).
RECOVERY_OVERHEAD_S = 600.0
# The run's own interruption rate is trusted only after at least one interruption in at
# least this many spot instance-hours; fewer hours say more about luck than the market.
MIN_RATE_HOURS = 1.0
RATE_UNKNOWN = "interruption rate unknown"


@dataclass(frozen=True)
class InstanceSpan:
    """One instance a run ran on, from ``start`` to ``end`` (epoch seconds; ``end``
    None while it still runs there). run.json keeps these under ``instances``.

    ``interrupted`` says whether the instance was taken from the run (a spot
    interruption, a termination, an instance lost): None means "inferred", i.e. an
    instance followed by another one was interrupted, the last one was not."""

    instance_id: str
    instance_type: str
    az: str | None
    market: Market
    start: float
    end: float | None = None
    interrupted: bool | None = None

    @classmethod
    def from_json(cls, raw: dict[str, Any], where: str = "run.json instances") -> InstanceSpan:
        """One entry of run.json's ``instances``; times as epoch seconds or ISO 8601."""
        try:
            market = raw["market"]
            if market not in ("spot", "on-demand"):
                raise ValueError(f"market {market!r} is not 'spot' or 'on-demand'")
            end = raw.get("end")
            interrupted = raw.get("interrupted")
            return cls(
                instance_id=str(raw["instance_id"]),
                instance_type=str(raw["instance_type"]),
                az=raw.get("az") or None,
                market=market,
                start=_epoch(raw["start"]),
                end=None if end is None else _epoch(end),
                interrupted=None if interrupted is None else bool(interrupted),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {raw!r} is not an instance span ({exc})") from exc

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "instance_id": self.instance_id,
            "instance_type": self.instance_type,
            "az": self.az,
            "market": self.market,
            "start": self.start,
            "end": self.end,
        }
        if self.interrupted is not None:
            out["interrupted"] = self.interrupted
        return out

    def until(self, now: float) -> float:
        return now if self.end is None else self.end

    def hours(self, now: float) -> float:
        return max(0.0, self.until(now) - self.start) / 3600.0


def _epoch(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    raise ValueError(f"{value!r} is not a time")


def spans_of(manifest: dict[str, Any]) -> list[InstanceSpan] | None:
    """run.json's (or a listing row's) ``instances`` as spans, oldest first; None when
    the run has no such list (a run from before recovery existed, or not on EC2)."""
    raw = manifest.get("instances")
    if not isinstance(raw, list) or not raw:
        return None
    return sorted((InstanceSpan.from_json(r) for r in raw), key=lambda s: s.start)


@dataclass(frozen=True)
class SpanCost:
    """What one instance cost the run: ``usd`` None where no price is known."""

    span: InstanceSpan
    hours: float
    usd: float | None
    usd_per_hour_now: float | None  # the price in effect at the span's end (or now)
    basis: str


@dataclass(frozen=True)
class InterruptionRate:
    """Interruptions per spot instance-hour, as this run observed them. EC2's price
    history says nothing about interruptions (AWS publishes only coarse frequency
    bands, per type and region, outside the API), so the run's own record is all
    there is: ``per_hour`` None until it says enough."""

    interruptions: int
    spot_hours: float
    per_hour: float | None

    @property
    def text(self) -> str:
        if self.per_hour is None:
            return RATE_UNKNOWN
        return (
            f"{self.interruptions} interruption{'s' * (self.interruptions != 1)} in "
            f"{self.spot_hours:.1f} spot instance-h ({self.per_hour:.2f}/h)"
        )


@dataclass(frozen=True)
class Projection:
    """The cost to finish at the current instance's price, with the time expected to be
    lost to interruptions on top when a rate is known."""

    to_finish: float | None
    remaining_s: float | None
    expected_interruptions: float | None
    extra_s: float
    note: str


@dataclass(frozen=True)
class CostSoFar:
    """A run's cost so far: every instance it ran on, each at its own price."""

    spans: tuple[SpanCost, ...]
    now: float

    @property
    def usd(self) -> float:
        """The sum of the spans whose price is known (see :attr:`unpriced`)."""
        return sum(s.usd for s in self.spans if s.usd is not None)

    @property
    def unpriced(self) -> list[str]:
        return [s.span.instance_id for s in self.spans if s.usd is None]

    @property
    def instances(self) -> int:
        return len(self.spans)

    @property
    def current(self) -> SpanCost | None:
        """The instance the run is on now (an open span), if any."""
        open_spans = [s for s in self.spans if s.span.end is None]
        return open_spans[-1] if open_spans else None

    @property
    def usd_per_hour(self) -> float | None:
        """The price the run pays now (the open span's), else the last instance's."""
        last = self.current or (self.spans[-1] if self.spans else None)
        return None if last is None else last.usd_per_hour_now

    def interruption_rate(self) -> InterruptionRate:
        spans = [s.span for s in self.spans]
        count = 0
        hours = 0.0
        for i, span in enumerate(spans):
            if span.market != "spot":
                continue
            hours += span.hours(self.now)
            interrupted = span.interrupted
            if interrupted is None:
                interrupted = span.end is not None and i + 1 < len(spans)
            count += bool(interrupted)
        known = count >= 1 and hours >= MIN_RATE_HOURS
        return InterruptionRate(count, hours, count / hours if known else None)

    def projection(
        self, remaining_s: float | None, overhead_s: float = RECOVERY_OVERHEAD_S
    ) -> Projection:
        """To finish: ``remaining_s`` at the current price; on spot, plus
        ``rate x remaining hours`` interruptions expected, each losing ``overhead_s``
        (first order: the extra time's own interruptions are not counted)."""
        current = self.current
        price = None if current is None else current.usd_per_hour_now
        if remaining_s is None or price is None or current is None:
            return Projection(None, remaining_s, None, 0.0, "")
        remaining_s = max(0.0, remaining_s)
        if current.span.market != "spot":
            return Projection(price * remaining_s / 3600.0, remaining_s, 0.0, 0.0, "on-demand")
        rate = self.interruption_rate()
        if rate.per_hour is None:
            return Projection(price * remaining_s / 3600.0, remaining_s, None, 0.0, RATE_UNKNOWN)
        expected = rate.per_hour * remaining_s / 3600.0
        extra = expected * overhead_s
        note = (
            f"~{expected:.1f} more interruptions expected at the {rate.per_hour:.2f}/h "
            f"seen so far, +{extra / 60:.0f} min"
        )
        return Projection(
            price * (remaining_s + extra) / 3600.0, remaining_s, expected, extra, note
        )


def spot_history(
    client: Any, instance_type: str, az: str | None, start: float, end: float
) -> list[dict[str, Any]]:
    """Linux spot price rows for the type (and zone) from ``start`` to ``end``. AWS
    also returns the last change before ``start``: the price in effect at ``start``."""
    rows: list[dict[str, Any]] = []
    with aws_errors(f"reading the spot price history of {instance_type}"):
        pages = client.get_paginator("describe_spot_price_history").paginate(
            InstanceTypes=[instance_type],
            ProductDescriptions=list(_PRODUCTS),
            StartTime=datetime.fromtimestamp(start, UTC),
            EndTime=datetime.fromtimestamp(end, UTC),
            **({"AvailabilityZone": az} if az else {}),
        )
        for page in pages:
            rows.extend(page.get("SpotPriceHistory", []))
    return rows


def integrate_spot(
    rows: list[dict[str, Any]], az: str | None, start: float, end: float
) -> tuple[float, float, str] | None:
    """(USD, price at ``end``, zone) for running from ``start`` to ``end`` on the price
    steps in ``rows``: each price holds from its timestamp to the next change (spot is
    billed by the second). One product description is used (the VPC one where AWS
    gives both, as for instances in a VPC). Without a zone, the cheapest zone's total.
    None when no row applies."""
    if az:
        rows = [r for r in rows if r.get("AvailabilityZone") == az]
    products = {r.get("ProductDescription") for r in rows}
    if len(products) > 1:
        want = "Linux/UNIX (Amazon VPC)" if "Linux/UNIX (Amazon VPC)" in products else "Linux/UNIX"
        rows = [r for r in rows if r.get("ProductDescription") == want]
    by_zone: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        stamp = row["Timestamp"]
        t = stamp.timestamp() if isinstance(stamp, datetime) else _epoch(stamp)
        by_zone.setdefault(row.get("AvailabilityZone", "?"), []).append(
            (t, float(row["SpotPrice"]))
        )
    totals: list[tuple[float, float, str]] = []
    for zone, steps in by_zone.items():
        steps.sort()
        # The price in effect at start is the last change at or before it; with none
        # (history reaches back 90 days), the earliest known price stands in for it.
        before = [p for t, p in steps if t <= start]
        price = before[-1] if before else steps[0][1]
        usd, at = 0.0, start
        for t, p in steps:
            if t <= start:
                continue
            if t >= end:
                break
            usd += price * (t - at) / 3600.0
            price, at = p, t
        usd += price * max(0.0, end - at) / 3600.0
        totals.append((usd, price, zone))
    return min(totals) if totals else None


def span_cost(client: Any, span: InstanceSpan, now: float) -> SpanCost:
    """One instance's cost: spot from the price history over its hours (the on-demand
    price as a ceiling where there is none), on-demand from the table."""
    hours = span.hours(now)
    ceiling = on_demand_price(span.instance_type)
    if span.market == "spot":
        try:
            rows = spot_history(client, span.instance_type, span.az, span.start, span.until(now))
        except Ec2Error:
            rows = []
        found = integrate_spot(rows, span.az, span.start, span.until(now))
        if found is not None:
            usd, price, zone = found
            where = zone if span.az else f"{zone}, the cheapest zone (the zone is not known)"
            return SpanCost(span, hours, usd, price, f"spot price history in {where}")
        if ceiling.usd_per_hour is None:
            return SpanCost(span, hours, None, None, f"no spot price; {ceiling.basis}")
        return SpanCost(
            span,
            hours,
            ceiling.usd_per_hour * hours,
            ceiling.usd_per_hour,
            f"at most; no spot price history, {ceiling.basis}",
        )
    if ceiling.usd_per_hour is None:
        return SpanCost(span, hours, None, None, ceiling.basis)
    return SpanCost(span, hours, ceiling.usd_per_hour * hours, ceiling.usd_per_hour, ceiling.basis)


def spans_cost(
    client: Any,
    spans: list[InstanceSpan],
    now: float | None = None,
    *,
    cache: dict[InstanceSpan, SpanCost] | None = None,
) -> CostSoFar:
    """A run's cost so far over every instance it ran on (see :class:`CostSoFar`).

    A closed span's cost never changes: with ``cache`` (a dict kept by the caller)
    each is asked of the price history once; the open span is asked every time."""
    now = time.time() if now is None else now
    out = []
    for span in sorted(spans, key=lambda s: s.start):
        if cache is not None and span.end is not None and span in cache:
            out.append(cache[span])
            continue
        cost = span_cost(client, span, now)
        if cache is not None and span.end is not None:
            cache[span] = cost
        out.append(cost)
    return CostSoFar(tuple(out), now)
