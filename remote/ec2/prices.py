"""What an instance costs per hour: the spot price history, else the on-demand table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
