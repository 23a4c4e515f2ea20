"""Request metrics keep their labelled series at hand, within a bound, and count the same."""

from __future__ import annotations

from gateway.observability import MAX_KEPT_SERIES, Metrics


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_every_answer_is_counted_and_timed_by_its_labels() -> None:
    metrics = Metrics.create()
    for _ in range(3):
        metrics.answered("api", "GET", 200, 0.002)
    metrics.answered("api", "POST", 403, 0.004)
    metrics.request_made_io("sql", 2)
    metrics.request_made_io("sql", 1)
    requests = "gateway_requests_total"
    assert _sample(metrics, requests, route_class="api", method="GET", status="200") == 3
    assert _sample(metrics, requests, route_class="api", method="POST", status="403") == 1
    duration = "gateway_request_duration_seconds_count"
    assert _sample(metrics, duration, route_class="api") == 4
    assert _sample(metrics, "gateway_request_io_total", kind="sql") == 3


def test_label_values_past_the_bound_are_still_counted_but_not_kept() -> None:
    """Methods are the client's to choose: a client inventing them cannot grow the kept series
    without bound, and what it sends is counted all the same."""
    metrics = Metrics.create()
    for n in range(MAX_KEPT_SERIES + 50):
        metrics.answered("other", f"M{n}", 403, 0.001)
    metrics.answered("other", f"M{MAX_KEPT_SERIES + 1}", 403, 0.001)
    assert len(metrics._answered) == MAX_KEPT_SERIES
    last = {"route_class": "other", "method": f"M{MAX_KEPT_SERIES + 1}", "status": "403"}
    assert _sample(metrics, "gateway_requests_total", **last) == 2
