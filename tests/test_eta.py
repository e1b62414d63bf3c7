"""The ETA estimator on recorded-style timelines with known answers."""

from __future__ import annotations

import pytest

from emoconsole.eta import EtaEstimator, format_duration, naive_eta


def timeline(
    epochs: int,
    steps: int,
    step_s: float,
    val_s: float,
    first_epoch_extra: float = 0.0,
    overhead_s: float = 0.0,
    stop_after: int | None = None,
    patience: int | None = None,
):
    """Events of a synthetic run: (epoch_start, steps, val) per epoch with exact times. The
    returned end time includes the engine's closing evaluation (val and test with the best
    checkpoint: two val passes), which writes no event an estimator could see coming."""
    t = 1000.0
    events = []
    last = stop_after or epochs
    for epoch in range(1, last + 1):
        events.append(
            {"type": "epoch_start", "epoch": epoch, "epochs": epochs, "steps": steps, "time": t}
        )
        t += overhead_s + (first_epoch_extra if epoch == 1 else 0.0)
        for step in range(1, steps + 1):
            t += step_s
            events.append({"type": "step", "epoch": epoch, "step": step, "steps": steps, "time": t})
        t += val_s
        val = {"type": "val", "split": "val", "epoch": epoch, "time": t}
        if patience is not None:
            val["earliest_stop_epoch"] = 1 + patience  # best stays epoch 1
        events.append(val)
    return events, t + 2 * val_s


def feed(events):
    eta = EtaEstimator()
    for event in events:
        eta.update(event)
    return eta


def test_steady_steps_with_validation_predict_the_exact_end():
    events, end = timeline(epochs=10, steps=20, step_s=0.5, val_s=3.0)
    # Cut the timeline mid epoch 4, at its 10th step.
    cut = next(i for i, e in enumerate(events) if e.get("epoch") == 4 and e.get("step") == 10)
    eta = feed(events[: cut + 1])
    now = events[cut]["time"]
    est = eta.estimate(now)
    assert est.step_s == pytest.approx(0.5)
    assert est.val_s == pytest.approx(3.0)
    assert est.to_max_epochs == pytest.approx(end - now, rel=1e-6)


def test_a_slow_first_epoch_does_not_inflate_the_estimate():
    events, end = timeline(epochs=10, steps=20, step_s=0.5, val_s=3.0, first_epoch_extra=60.0)
    cut = next(i for i, e in enumerate(events) if e.get("epoch") == 3 and e["type"] == "val")
    eta = feed(events[: cut + 1])
    now = events[cut]["time"]
    remaining = end - now
    assert eta.estimate(now).to_max_epochs == pytest.approx(remaining, rel=0.01)
    # The naive estimate carries the first epoch's minute into every remaining epoch.
    naive = naive_eta(now - 1000.0, 3 / 10)
    assert abs(naive - remaining) > 0.5 * remaining * 0.5


def test_early_stopping_bound_is_reported_beside_max_epochs():
    events, _ = timeline(epochs=50, steps=10, step_s=1.0, val_s=2.0, stop_after=4, patience=10)
    eta = feed(events)
    est = eta.estimate(events[-1]["time"])
    assert est.earliest_stop_epoch == 11
    per_epoch, closing = 10 * 1.0 + 2.0, 2 * 2.0
    assert est.to_earliest_stop == pytest.approx((11 - 4) * per_epoch + closing, rel=1e-6)
    assert est.to_max_epochs == pytest.approx((50 - 4) * per_epoch + closing, rel=1e-6)


def test_finished_run_has_no_time_left_and_unknown_rate_says_so():
    assert EtaEstimator().estimate().to_max_epochs is None
    events, _ = timeline(epochs=2, steps=3, step_s=1.0, val_s=1.0)
    eta = feed([*events, {"type": "status", "status": "completed", "time": 2000.0}])
    assert eta.estimate().to_max_epochs == 0.0


def test_the_closing_evaluation_is_counted_after_the_last_epoch():
    """After the last epoch's val the engine still evaluates val and test with the best
    checkpoint. Replayed from a real run's shape (bench/eta.py): 10 s of it after a 5 s val,
    where the estimator used to say 0 s left."""
    events, end = timeline(epochs=3, steps=10, step_s=1.0, val_s=5.0)
    eta = feed(events)
    now = events[-1]["time"]
    assert end - now == pytest.approx(10.0)
    assert eta.estimate(now).to_max_epochs == pytest.approx(10.0)
    without = EtaEstimator(final_eval_passes=0)
    for event in events:
        without.update(event)
    assert without.estimate(now).to_max_epochs == pytest.approx(0.0)


def test_format_duration():
    assert format_duration(None) == "--"
    assert format_duration(59.4) == "59s"
    assert format_duration(61) == "1m01s"
    assert format_duration(3 * 3600 + 5 * 60) == "3h05m"


def test_the_early_stopping_bound_is_known_before_the_first_validation():
    """epoch_start carries the bound (the first val always counts as an improvement)."""
    eta = EtaEstimator()
    eta.update({"type": "epoch_start", "time": 100.0, "epoch": 1, "epochs": 50, "steps": 10,
                "earliest_stop_epoch": 11})  # fmt: skip
    eta.update({"type": "step", "time": 105.0, "epoch": 1, "step": 5, "steps": 10})
    est = eta.estimate(105.0)
    assert est.earliest_stop_epoch == 11
    assert est.to_earliest_stop is not None and est.to_max_epochs is not None
    assert est.to_earliest_stop < est.to_max_epochs
