"""The one shape every benchmark reports in, so `make bench` can write one table.

Each figure is measured side by side with a peer in the same run and reported as a ratio; a goal says
which way is better. Never a wall-clock assert: these are records, not tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass
class Figure:
    name: str  # e.g. "e2e throughput, page of 20 residents"
    ours: float  # our measured value
    peer: float | None  # the peer's value in the same run (None: no peer, e.g. memory)
    unit: str  # "req/s", "µs", "ms", "MB", "values/s", "events/s"
    peer_name: str  # e.g. "direct call to the departmental system"
    goal: str  # human-readable goal, e.g. "≥ 0.6× direct"
    met: bool | None  # whether the goal is met (None: not judged)
    higher_is_better: bool = True
    conditions: str = ""  # load generator, CPU used, sizes, durations
    area: Literal["e2e", "policy", "masking", "audit", "scale"] = "e2e"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.peer in (None, 0):
            return None
        return self.ours / self.peer  # type: ignore[operator]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        return data
