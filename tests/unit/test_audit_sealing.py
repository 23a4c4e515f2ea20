"""An event is serialised once when it is chained; what is stored verifies like before."""

from __future__ import annotations

import json

from gateway.audit.events import GENESIS, base_event, canonical, chain_hash, sealed


def test_the_stored_form_reads_back_as_the_chained_event() -> None:
    first = base_event("request", "gw-test")
    first.update(actor={"subject": "zoë", "groups": ["a", "b"]}, latency_ms=1.5, reason=None)
    stored = sealed(GENESIS, first)
    assert json.loads(stored) == first
    assert first["hash"] == chain_hash(GENESIS, json.loads(stored))

    second = base_event("security", "gw-test")
    second["prev"] = first["hash"]
    stored_second = sealed(first["hash"], second)
    assert chain_hash(first["hash"], json.loads(stored_second)) == second["hash"]
    # Same content as the canonical form, the hash only moved to the end.
    assert json.loads(canonical(second)) == json.loads(stored_second)
