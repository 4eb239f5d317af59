"""Scoring: an utterance's embedding -> a fused score per route, from the route set's points.

Routing is a Qdrant query: per utterance, the nearest text points and audio-exemplar points of
the route set's collection (one filtered query per kind for small sets, one query for both in
large ones; see below), on Qdrant Edge or a Qdrant server alike. Per route, from those hits:
- text score  = max over its text points (description, examples);
- audio score = mean of the top-k over its audio exemplar points (TTS voices, enrolment clips);
- fused score = `Fusion.combine(text, audio)`; a route without audio points uses its text score.

Up to EXACT_TEXT_POINTS text and EXACT_AUDIO_POINTS audio points every point is returned, and
the scores are exactly those of the numpy oracle (`score_matrix`, which reads every vector).
Larger sets take the best TEXT_HITS + AUDIO_HITS points of either kind in ONE query without a
filter (a kind too rare among them gets its own filtered query): a decision is made among the
routes that have a point among them (a route missing from the text or the audio hits gets the
lowest cosine returned, an upper bound of its own), and `scores(every_route=True)` gives every
other route those bounds too, so only routes far from the utterance are approximated.

What the scores decide is `voice_router.decision`'s; this module never sees a threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from voice_router.errors import ModelError
from voice_router.point_schema import KIND_AUDIO, KIND_TEXT

if TYPE_CHECKING:
    from voice_router.decision import Fusion
    from voice_router.index import RouteIndex

#: Route sets up to this many points of a kind get every point back from a query (exact).
EXACT_TEXT_POINTS = 256
EXACT_AUDIO_POINTS = 256
#: Hits per query for larger sets (see the module docstring). Each hit costs (~15 us to read
#: back); the decision needs a few points of the leading routes, which are the nearest ones.
TEXT_HITS = 32
AUDIO_HITS = 64
#: Fewest hits of a kind that the one unfiltered query of a large set must bring back; below
#: it that kind gets its own filtered query.
MIN_KIND_HITS = 8

Hits = list[tuple[str, float]]


@dataclass(frozen=True)
class _OracleState:
    """What the numpy oracle reads: the point matrix and, per route, its text and audio rows."""

    matrix: np.ndarray  # (N, D)
    text_rows: list[np.ndarray]
    audio_rows: list[np.ndarray]


class RouteScorer:
    """Per-route scores of embeddings against one route index.

    Args:
        index: the synced `RouteIndex` of the route set (its queries and point counts).
        route_names: the route set's routes, in its order; hits of any other route (a stale
            point of a removed route) never count.
        fusion: how text and audio-exemplar scores combine.
    """

    def __init__(self, index: RouteIndex, route_names: Sequence[str], fusion: Fusion) -> None:
        self.index = index
        self.route_names = list(route_names)
        self._known = frozenset(self.route_names)
        self.fusion = fusion
        self._oracle: _OracleState | None = None

    def invalidate(self) -> None:
        """Forget the oracle's matrix (after the index changed: sync, enrolment)."""
        self._oracle = None

    # -- one utterance: Qdrant queries ---------------------------------------------------------

    def scores(self, vector: np.ndarray, *, every_route: bool = False) -> dict[str, float]:
        """Fused score per route for one embedding (D,): every route, or (`every_route=False`,
        the per-utterance path) the routes among the hits only, which include every route
        whenever the queries returned every point."""
        text, audio = self.components(vector, every_route=every_route)
        combine = self.fusion.combine
        return {n: combine(t, audio.get(n)) for n, t in text.items()}

    def component_scores(self, vector: np.ndarray) -> dict[str, dict[str, float | None]]:
        """Per route: {"text": ..., "audio": ... or None, "score": fused}."""
        text, audio = self.components(vector, every_route=True)
        combine = self.fusion.combine
        return {
            n: {"text": t, "audio": audio.get(n), "score": combine(t, audio.get(n))}
            for n, t in text.items()
        }

    def components(
        self, vector: np.ndarray, *, every_route: bool = False
    ) -> tuple[dict[str, float], dict[str, float]]:
        """(text score per route, audio score per route that has exemplars). This runs on
        every utterance: one pass over at most TEXT_HITS + AUDIO_HITS hits, no per-route
        objects."""
        q = normalised(vector, self.index.dim)
        count = self.index.counts().get
        known = self._known
        k = self.fusion.top_k
        with_audio = self.fusion.mode != "text"
        text_hits, t_floor, audio_hits, a_floor = self._query(q, with_audio)
        best_text: dict[str, float] = {}
        for route, score in text_hits:  # best first: the first hit of a route is its text score
            if route not in best_text and route in known:
                best_text[route] = score
        top_audio: dict[str, list[float]] = {}
        for route, score in audio_hits:  # a stale point of a removed route never counts
            got = top_audio.get(route)
            if got is None:
                if route in known:
                    top_audio[route] = [score]
            elif len(got) < k:
                got.append(score)
        names = self.route_names if every_route else list({**best_text, **top_audio})
        text: dict[str, float] = {}
        audio: dict[str, float] = {}
        for name in names:
            t = best_text.get(name)
            if t is None:  # below the cut: at most the floor (-1 when it has no text points)
                t = t_floor if count((name, KIND_TEXT)) else -1.0
            text[name] = t
            if with_audio:
                n_audio = count((name, KIND_AUDIO), 0)
                if n_audio:
                    got = top_audio.get(name, [])
                    want = min(k, n_audio)  # the missing ones are below the cut: at most a_floor
                    audio[name] = (sum(got) + a_floor * (want - len(got))) / want
        return text, audio

    def _query(self, q: np.ndarray, with_audio: bool) -> tuple[Hits, float, Hits, float]:
        """(text hits, text floor, audio hits, audio floor) of one utterance. Sets with few
        points of a kind get every point of it back (one filtered query per kind: exact).
        Larger sets with both kinds take one unfiltered query of TEXT_HITS + AUDIO_HITS points
        split by kind: its last score bounds every point not returned, of either kind. A kind
        with fewer than MIN_KIND_HITS points among them gets its own filtered query instead.
        Faster than a filtered query per kind, and closer to the exact numpy scores (Qdrant's
        HNSW search finds the true neighbours better without a filter): see
        benchmarks/route_query_ab.py and the README's figures."""
        total = self.index.total
        large = total(KIND_TEXT) > EXACT_TEXT_POINTS and total(KIND_AUDIO) > EXACT_AUDIO_POINTS
        if with_audio and large:
            limit = TEXT_HITS + AUDIO_HITS
            hits = self.index.query_all(q, limit)  # [(route, kind, cosine)], best first
            floor = float(hits[-1][2]) if len(hits) >= limit else -1.0
            text = [(r, s) for r, k, s in hits if k == KIND_TEXT]
            audio = [(r, s) for r, k, s in hits if k == KIND_AUDIO]
            t_floor = a_floor = floor
            if len(text) < MIN_KIND_HITS:
                text, t_floor = self.hits(q, KIND_TEXT, EXACT_TEXT_POINTS, TEXT_HITS)
            if len(audio) < MIN_KIND_HITS:
                audio, a_floor = self.hits(q, KIND_AUDIO, EXACT_AUDIO_POINTS, AUDIO_HITS)
            return text, t_floor, audio, a_floor
        text, t_floor = self.hits(q, KIND_TEXT, EXACT_TEXT_POINTS, TEXT_HITS)
        if not with_audio:
            return text, t_floor, [], -1.0
        audio, a_floor = self.hits(q, KIND_AUDIO, EXACT_AUDIO_POINTS, AUDIO_HITS)
        return text, t_floor, audio, a_floor

    def hits(self, q: np.ndarray, kind: str, exact_up_to: int, approx: int) -> tuple[Hits, float]:
        """(route, cosine) of the points of `kind` one filtered query returns, best first, and
        the floor for routes below the cut (-1 when every point came back)."""
        total = self.index.total(kind)
        if total == 0:
            return [], -1.0
        limit = total if total <= exact_up_to else approx
        hits = self.index.query(q, kind, limit)  # [(route, cosine)], best first
        floor = float(hits[-1][1]) if hits and limit < total else -1.0
        return hits, floor

    # -- many embeddings: the numpy oracle -----------------------------------------------------

    def score_matrix(self, vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
        """The numpy oracle: fused scores of many embeddings at once from every stored vector
        (route names, (N, R) scores). The same values as `scores` row by row wherever that is
        exact (see the module docstring); tests check the two against each other."""
        st = self._oracle if self._oracle is not None else self._load_oracle()
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape[1] != st.matrix.shape[1]:
            raise ModelError(f"vectors must be (N, {st.matrix.shape[1]}), got {v.shape}")
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)  # (N, D)
        sims = v @ st.matrix.T  # (N, D) @ (D, P) -> (N, P)
        k = self.fusion.top_k
        n, r = v.shape[0], len(self.route_names)
        text = np.full((n, r), -1.0)  # (N, R) best text cosine; -1 for a route without texts
        audio = np.full((n, r), np.nan)  # (N, R) mean of the k best exemplar cosines, or NaN
        for j, (trows, arows) in enumerate(zip(st.text_rows, st.audio_rows, strict=True)):
            if trows.size:
                text[:, j] = sims[:, trows].max(axis=1)
            if arows.size:
                a = sims[:, arows]  # (N, A)
                kk = min(k, a.shape[1])
                audio[:, j] = np.partition(a, a.shape[1] - kk, axis=1)[:, a.shape[1] - kk :].mean(1)
        out = self.fusion.combine_matrix(text, audio).astype(np.float32)  # (N, R)
        return list(self.route_names), out

    def _load_oracle(self) -> _OracleState:
        """Every point as a matrix, for `score_matrix`."""
        rv = self.index.vectors()
        # One object, swapped in by a single assignment: threads scoring during a re-sync see
        # either the old state or the new one, never a mix.
        state = _OracleState(
            matrix=rv.vectors,  # (N, D)
            text_rows=[rv.rows(n, KIND_TEXT) for n in self.route_names],
            audio_rows=[rv.rows(n, KIND_AUDIO) for n in self.route_names],
        )
        self._oracle = state
        return state


def normalised(vector: np.ndarray, dim: int) -> np.ndarray:
    """`vector` as a unit (dim,) float32 query; a wrong size or NaN/Inf is a `ModelError`."""
    q = np.asarray(vector, dtype=np.float32).reshape(-1)  # (D,)
    if q.shape[0] != dim:
        raise ModelError(f"vector has dimension {q.shape[0]}, the index has {dim}")
    if not np.isfinite(q).all():
        raise ModelError("vector has NaN or Inf values")
    return q / max(float(np.linalg.norm(q)), 1e-12)
