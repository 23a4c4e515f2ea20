"""What a request event keeps of a value, and the index's order."""

from __future__ import annotations

import random

from gateway.audit import index
from gateway.audit.record import MAX_PARAM_CHARS, _clip


def test_values_lose_credentials_and_signed_queries_and_are_bounded() -> None:
    assert _clip("s3://AKIA:secret@bucket/m?X-Amz-Signature=abc") == "s3://***@bucket/m?…"
    assert _clip("runs:/0123/model") == "runs:/0123/model"
    long = _clip("x" * 5000)
    assert len(long) == MAX_PARAM_CHARS and long.endswith("…")


def test_index_members_sort_as_the_stream_does() -> None:
    rnd = random.Random(3)
    ids = [f"{rnd.randrange(10**12, 10**13)}-{rnd.randrange(0, 3000)}" for _ in range(2000)]
    ids += ["1700000000000-9", "1700000000000-10", "999-1"]

    def order(sid: str) -> tuple[int, int]:
        ms, seq = sid.split("-")
        return int(ms), int(seq)

    assert sorted(ids, key=index.member) == sorted(ids, key=order)
    assert all(index.stream_id(index.member(sid)) == sid for sid in ids)
    assert index.ms_member(1700000000000) <= index.member("1700000000000-0")
    assert index.member("1700000000000-99") <= index.ms_member(1700000000000, last=True)


def test_an_event_is_indexed_under_what_the_filters_test() -> None:
    event = {
        "actor": {"subject": "ann"},
        "decisions": [
            {"resource": "registered_model:fraud", "action": "promote:production"},
            {"resource": "registered_model:fraud", "action": "read"},
        ],
        "resources": ["registered_model:fraud"],
        "action": "read",
    }
    assert index.keys(event) == [
        index.ACTOR + "ann",
        index.RESOURCE + "registered_model:fraud",
        index.ACTION + "promote:production",
        index.ACTION + "read",
    ]
    assert index.keys({"type": "security", "actor": {"subject": None}}) == []
