"""The one table every benchmark adds its rows to: what was measured against which target."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    section: str
    what: str
    measured: str
    target: str  # "—" when the row is reported, not judged
    reference: str  # the comparison beside it: direct to MLflow, the peer, pycasbin
    met: bool | None  # None: not judged (no target, or a smoke run)

    @property
    def verdict(self) -> str:
        return {True: "met", False: "**missed**", None: "—"}[self.met]


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def summary_table(targets: list[Target]) -> str:
    return table(
        ["Benchmark", "What", "Measured", "Target", "Beside it", ""],
        [[t.section, t.what, t.measured, t.target, t.reference, t.verdict] for t in targets],
    )
