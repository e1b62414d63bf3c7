"""A run's cost across the instances it ran on: spot from the price history (moto's EC2
server answers describe_spot_price_history; the expected figure is computed from what
that call itself returns), on-demand from the table; the interruption-aware projection;
and how the runs table and the run view's line show it."""

# ruff: noqa: F811 (pytest fixtures imported by name, then requested by that name)
from __future__ import annotations

import time
from datetime import UTC, datetime

import boto3
import pytest

from emoconsole.dashboard.cost import cost_text, run_cost, spans_run_cost
from emoconsole.dashboard.state import RunsListing, to_row
from remote.ec2.prices import (
    ON_DEMAND_USD_PER_HOUR,
    RATE_UNKNOWN,
    RECOVERY_OVERHEAD_S,
    CostSoFar,
    InstanceSpan,
    SpanCost,
    integrate_spot,
    spans_cost,
    spans_of,
)

# The moto server and a clean account per test, as tests/test_ec2.py makes them.
from tests.test_ec2 import REGION, Aws, aws, moto_endpoint  # noqa: F401

pytest_plugins = ["tests.sshd"]

H = 3600.0
TYPE = "g4dn.xlarge"


def test_a_run_on_a_spot_then_an_on_demand_instance_costs_both(aws: Aws):
    now = time.time()
    client = boto3.client("ec2", endpoint_url=aws.endpoint, region_name=REGION)
    # What the price history says for that type, asked directly: the expected figure.
    rows = client.describe_spot_price_history(
        InstanceTypes=[TYPE],
        StartTime=datetime.fromtimestamp(now - 3 * H, UTC),
        EndTime=datetime.fromtimestamp(now - H, UTC),
    )["SpotPriceHistory"]
    zone = rows[0]["AvailabilityZone"]
    in_zone = [r for r in rows if r["AvailabilityZone"] == zone]
    assert len(in_zone) == 1 and in_zone[0]["Timestamp"].timestamp() < now - 3 * H
    spot_price = float(in_zone[0]["SpotPrice"])

    run = {
        "instances": [
            # stored as the lead's recovery code writes them: the second one is still open
            {"instance_id": "i-second", "instance_type": TYPE, "az": zone,
             "market": "on-demand", "start": now - H, "end": None},
            {"instance_id": "i-first", "instance_type": TYPE, "az": zone, "market": "spot",
             "start": datetime.fromtimestamp(now - 3 * H, UTC).isoformat(), "end": now - H},
        ]
    }  # fmt: skip
    spans = spans_of(run)
    assert [s.instance_id for s in spans] == ["i-first", "i-second"]
    cache: dict = {}
    cost = spans_cost(client, spans, now, cache=cache)

    first, second = cost.spans
    assert first.usd == pytest.approx(spot_price * 2, rel=1e-6)
    assert first.basis == f"spot price history in {zone}"
    assert second.usd == pytest.approx(ON_DEMAND_USD_PER_HOUR[TYPE] * 1, rel=1e-6)
    assert cost.usd == pytest.approx(spot_price * 2 + ON_DEMAND_USD_PER_HOUR[TYPE])
    assert (cost.instances, cost.unpriced, cost.current) == (2, [], second)
    assert cost.usd_per_hour == ON_DEMAND_USD_PER_HOUR[TYPE]
    # One interruption in 2 spot hours: a rate, but the run is on-demand now.
    rate = cost.interruption_rate()
    assert (rate.interruptions, rate.spot_hours, rate.per_hour) == (
        1,
        pytest.approx(2),
        pytest.approx(0.5),
    )
    projection = cost.projection(2 * H)
    assert projection.to_finish == pytest.approx(ON_DEMAND_USD_PER_HOUR[TYPE] * 2)
    assert projection.note == "on-demand"
    # The ended instance was priced once: kept for the next refresh.
    assert list(cache) == [spans[0]]
    assert spans_cost(client, spans, now, cache=cache).spans[0] is first


def test_a_spot_price_that_changes_within_an_instance_counts_each_step():
    t0 = 1_700_000_000.0
    rows = [
        # the change before the start is the price in effect at the start
        {"AvailabilityZone": "us-east-1a", "ProductDescription": "Linux/UNIX",
         "SpotPrice": "0.100", "Timestamp": datetime.fromtimestamp(t0 - 100, UTC)},
        {"AvailabilityZone": "us-east-1a", "ProductDescription": "Linux/UNIX",
         "SpotPrice": "0.200", "Timestamp": datetime.fromtimestamp(t0 + 1800, UTC)},
        {"AvailabilityZone": "us-east-1a", "ProductDescription": "Linux/UNIX",
         "SpotPrice": "0.400", "Timestamp": datetime.fromtimestamp(t0 + 5400, UTC)},
        {"AvailabilityZone": "us-east-1b", "ProductDescription": "Linux/UNIX",
         "SpotPrice": "0.050", "Timestamp": datetime.fromtimestamp(t0 - 100, UTC)},
    ]  # fmt: skip
    usd, at_end, zone = integrate_spot(rows, "us-east-1a", t0, t0 + H)
    assert (usd, at_end, zone) == (pytest.approx(0.1 * 0.5 + 0.2 * 0.5), 0.2, "us-east-1a")
    # Zone unknown: the cheapest zone's total, said so.
    assert integrate_spot(rows, None, t0, t0 + H)[2] == "us-east-1b"
    assert integrate_spot(rows, "us-east-1c", t0, t0 + H) is None


def span_cost(span: InstanceSpan, usd_per_hour: float, now: float) -> SpanCost:
    hours = span.hours(now)
    return SpanCost(span, hours, usd_per_hour * hours, usd_per_hour, "test price")


def spot(instance_id: str, start: float, end: float | None) -> InstanceSpan:
    return InstanceSpan(instance_id, TYPE, "us-east-1a", "spot", start, end)


def test_the_projection_counts_interruptions_once_the_run_has_seen_some():
    now = 1_700_000_000.0
    price = 0.2
    # One open spot instance for half an hour: nothing observed, so no rate.
    young = CostSoFar((span_cost(spot("i-1", now - 0.5 * H, None), price, now),), now)
    projection = young.projection(3 * H)
    assert projection.note == RATE_UNKNOWN and projection.expected_interruptions is None
    assert projection.to_finish == pytest.approx(price * 3)
    # Two interruptions in three spot hours: 2/3 per hour, 2 more expected in 3 h.
    spans = [spot("i-1", now - 3 * H, now - 2 * H), spot("i-2", now - 2 * H, now - H),
             spot("i-3", now - H, None)]  # fmt: skip
    seasoned = CostSoFar(tuple(span_cost(s, price, now) for s in spans), now)
    rate = seasoned.interruption_rate()
    assert (rate.interruptions, rate.per_hour) == (2, pytest.approx(2 / 3))
    projection = seasoned.projection(3 * H)
    assert projection.expected_interruptions == pytest.approx(2.0)
    assert projection.extra_s == pytest.approx(2 * RECOVERY_OVERHEAD_S)
    assert projection.to_finish == pytest.approx(price * (3 * H + 2 * RECOVERY_OVERHEAD_S) / H)
    assert "2.0 more interruptions expected" in projection.note
    # An explicit record wins over the inference.
    calm = [InstanceSpan("i-1", TYPE, None, "spot", now - 2 * H, now - H, interrupted=False),
            spot("i-2", now - H, None)]  # fmt: skip
    assert CostSoFar(tuple(span_cost(s, price, now) for s in calm), now).projection(H).note == (
        RATE_UNKNOWN
    )


def test_spans_read_from_run_json_say_what_is_wrong():
    assert spans_of({}) is None and spans_of({"instances": []}) is None
    with pytest.raises(ValueError, match="market 'reserved'"):
        spans_of({"instances": [{"instance_id": "i-1", "instance_type": TYPE, "az": None,
                                 "market": "reserved", "start": 0, "end": None}]})  # fmt: skip
    span = InstanceSpan("i-1", TYPE, "us-east-1a", "spot", 10.0, 20.0)
    assert InstanceSpan.from_json(span.to_json()) == span


def test_the_table_and_the_run_view_show_the_cost_across_instances():
    now = time.time()
    spans = [spot("i-1", now - 3 * H, now - H), spot("i-2", now - H, None)]
    cost = CostSoFar(tuple(span_cost(s, 0.25, now) for s in spans), now)
    row = {"id": "r1", "model": "m", "status": "running", "started_at": now - 3 * H,
           "epoch": 2, "epochs": 4, "instances": [s.to_json() for s in spans]}  # fmt: skip
    listing = RunsListing()
    listing.update("gpu", [row], None, usd_per_hour=0.25, costs={"r1": cost})
    (table_row,) = listing.rows()
    assert table_row.instances == 2
    assert table_row.cost_so_far == pytest.approx(0.75, rel=1e-3)
    assert table_row.cost_text.endswith("(2 inst.)") and "→" in table_row.cost_text

    line = cost_text(spans_run_cost(cost, remaining_s=H))
    assert "$0.75 so far on 2 instances (1 interrupted)" in line
    # 1 interruption in 3 spot hours: 1/3 per hour, so 1/3 of one expected in the last hour.
    assert "(1h00m left; ~0.3 more interruptions expected at the 0.33/h seen so far" in line
    fresh = CostSoFar((span_cost(spot("i-1", now - 60, None), 0.25, now),), now)
    line = cost_text(spans_run_cost(fresh, remaining_s=H))
    assert "$0.25 to finish (1h00m left; interruption rate unknown)" in line
    # A run without "instances" keeps the single-instance figures and words.
    plain = to_row("gpu", {**row, "instances": None}, usd_per_hour=0.25)
    assert plain.instances == 1 and "inst." not in plain.cost_text
    assert cost_text(run_cost(0.526, H, H)) == (
        "cost ~$0.526/h, $0.53 so far, $0.53 to finish (1h00m left), ~$1.05 at the end"
    )
