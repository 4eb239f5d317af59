"""The slot stage: which values a matched route's slots take, and the reader's say on the route.

Where the leading routes have `sentences:`, Whisper's decoder reads the utterance held to those
routes' own phrasings (`voice_router.slot_reader.SlotReader`): a reading it is confident of
decides the route among them and gives every slot value exactly; speech that fits none of them
is "not understood" and calls no tool (`voice_router.decision.overrule`, the one rule for the
router and `eval`). Without a reading (no reader, or a model without encoder frames), slot
values come from embeddings: the route's template phrasings nearest to the utterance
(`slots_from_embeddings`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from voice_router.decision import overrule
from voice_router.point_schema import KIND_TEXT, P_KIND, P_ROUTE, P_SLOTS
from voice_router.scoring import normalised

if TYPE_CHECKING:
    from voice_router.index import RouteIndex
    from voice_router.slot_reader import Reading, SlotReader

#: How many of the best-scoring routes the slot stage reads against (those with `sentences:`).
SLOT_TOP_K = 10
#: Most text points of the matched route read back to resolve its slots from embeddings.
MAX_SLOT_POINTS = 512


class SlotStage:
    """Reads utterances against the phrasings of their leading routes.

    Args:
        reader: the constrained decoder over the route set's phrasings (None: slots from
            embeddings only).
        route_names: the route set's routes, in its order (the rows of `overrule`).
        top_k: how many of the best-scoring routes a reading is held to.
    """

    def __init__(
        self, reader: SlotReader | None, route_names: Sequence[str], top_k: int = SLOT_TOP_K
    ) -> None:
        if top_k < 1:
            raise ValueError(f"slot_top_k must be >= 1, got {top_k}")
        self.reader = reader
        self.top_k = top_k
        self._names = list(route_names)
        self._row = {n: i for i, n in enumerate(self._names)}
        readable = set() if reader is None else set(reader.readable)
        self._readable = np.array([n in readable for n in self._names])  # (R,)

    def read(self, frames: np.ndarray | None, scores: Mapping[str, float]) -> Reading | None:
        """The reader's `Reading` of an utterance's encoder `frames` (T', Da), held to the
        phrasings of the best `top_k` routes by `scores` that have them; None when it does not
        run (no frames, no reader, or none of those routes has phrasings)."""
        if frames is None or self.reader is None:
            return None
        ranked = sorted(scores, key=lambda n: (-scores[n], n))
        top = [n for n in ranked[: self.top_k] if self._readable[self._row[n]]]
        return self.reader.read(frames, top) if top else None

    def decide(self, route: str | None, reading: Reading | None) -> tuple[str | None, bool]:
        """(route, vetoed) after the reading's say over the embedding decision `route`
        (`decision.overrule`); vetoed is True when a route was decided and the reading
        understood none of the phrasings."""
        if reading is None:
            return route, False
        row = self._row
        pred = np.array([-1 if route is None else row[route]])  # (1,)
        read = np.array([True])  # (1,)
        understood = np.array([row[reading.route] if reading.understood else -1])  # (1,)
        got = int(overrule(pred, read, understood, self._readable)[0])
        if got >= 0:
            return self._names[got], False
        return None, route is not None

    @staticmethod
    def from_reading(reading: Reading | None, route: str) -> dict[str, dict[str, Any]] | None:
        """Per slot {value, confidence} of a reading that understood `route`, else None."""
        if reading is None or not reading.understood or reading.route != route:
            return None
        conf = round(float(reading.confidence), 4)
        return {k: {"value": v, "confidence": conf} for k, v in reading.slots.items()}


def slots_from_embeddings(
    index: RouteIndex, vector: np.ndarray, route: str
) -> dict[str, dict[str, Any]]:
    """The slot values of `route` heard in `vector`, scored one slot at a time.

    One Qdrant query returns the route's text points (filtered by route; every point up to
    MAX_SLOT_POINTS) with their payloads. For each slot, the template phrasings that carry it
    are candidates (they differ from one another in that slot only, the others being at their
    first value: voice_router.templates); the best one's value is the slot's value, its cosine
    the slot's score and its lead over the best phrasing with another value the margin. An
    optional slot that the best phrasing without it beats stays unset.
    """
    q = normalised(vector, index.dim)
    n = index.counts().get((route, KIND_TEXT), 0)
    hits = index.query_payloads(q, {P_ROUTE: route, P_KIND: KIND_TEXT}, min(n, MAX_SLOT_POINTS))
    best: dict[str, tuple[float, Any]] = {}  # slot -> (score, value) of its best phrasing
    second: dict[str, float] = {}  # slot -> best score of a phrasing with another value
    without: dict[str, float] = {}  # slot -> best score of a phrasing that lacks it
    names: set[str] = set()
    phrasings = [(s, p.get(P_SLOTS)) for s, p in hits if isinstance(p.get(P_SLOTS), dict)]
    for _, slots in phrasings:
        names.update(slots)
    for score, slots in phrasings:  # best first
        for name in names:
            if name not in slots:
                without.setdefault(name, score)
            elif name not in best:
                best[name] = (score, slots[name])
            elif name not in second and slots[name] != best[name][1]:
                second[name] = score
    out: dict[str, dict[str, Any]] = {}
    for name, (score, value) in sorted(best.items()):
        if without.get(name, -2.0) > score:
            continue  # optional, and the phrasings without it fit better: not said
        runner = second.get(name)
        margin = None if runner is None else round(score - runner, 6)
        out[name] = {"value": value, "score": round(score, 6), "margin": margin}
    return out
