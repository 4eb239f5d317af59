"""A route set's collection in the store, kept in sync with the routes file.

`RouteIndex` holds one collection of the store (`voice_router.store`) per model fingerprint and
route set. `sync` diffs the points the routes call for (`voice_router.points.PointBuilder.plan`:
texts, TTS exemplars, audio files; ids deterministic) against what the collection holds, has the
builder embed only the missing ones, and deletes stale ones: a restart with the same routes
writes nothing and an edited route re-embeds only its changed texts. Routing queries the
collection (`voice_router.routing`); the whole matrix (`RouteVectors`) is read only by the numpy
oracle and by checks.

The store names are re-exported here for older imports (`from voice_router.index import
EdgeBackend` keeps working).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from voice_router.errors import IndexStoreError
from voice_router.points import PointBuilder
from voice_router.store import (
    DEFAULT_MIN_FREE_BYTES,
    KIND_AUDIO,
    KIND_TEXT,
    LOCK_NAME,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    OPTIMIZE_AT,
    P_FINGERPRINT,
    P_KIND,
    P_ROUTE,
    P_SOURCE,
    P_TEXT,
    P_VOICE,
    POINT_NAMESPACE,
    SOURCE_ENROLLED,
    SOURCE_FILE,
    SOURCE_ROUTES,
    UPSERT_BATCH,
    ClientBackend,
    EdgeBackend,
    PointRecord,
    ScoredRecord,
    VectorBackend,
    check_collection_name,
    default_index_path,
    open_backend,
    point_id,
)

if TYPE_CHECKING:
    from voice_router.model.base import EmbeddingModel
    from voice_router.routes import RouteSet

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Route index
# --------------------------------------------------------------------------------------------


@dataclass
class SyncReport:
    """What `RouteIndex.sync` did: point counts added, removed and left as they were."""

    added: int = 0
    removed: int = 0
    kept: int = 0
    exemplars_skipped: str | None = None  # why TTS exemplars were not built, if they were not


@dataclass
class RouteVectors:
    """The route points as a matrix, for fast scoring.

    vectors: (N, D) float32 rows L2-normalised; route/kind/text: length-N lists.
    """

    vectors: np.ndarray
    route: list[str]
    kind: list[str]
    text: list[str]
    route_names: list[str] = field(default_factory=list)

    def rows(self, route: str, kind: str) -> np.ndarray:
        """Indices of the rows of `route` with `kind`."""
        return np.array(
            [
                i
                for i, (r, k) in enumerate(zip(self.route, self.kind, strict=True))
                if r == route and k == kind
            ],
            dtype=np.int64,
        )


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def _say(line: str) -> None:
    """One progress line on stderr (where no progress bar is drawn)."""
    print(f"voice-router: {line}", file=sys.stderr, flush=True)


def prune_route_collections(
    store: VectorBackend,
    fingerprint: str,
    keep_sets: set[str] | None = None,
    *,
    dry_run: bool = False,
) -> list[dict[str, Any]]:
    """Delete the route collections of models other than `fingerprint` and, when `keep_sets`
    is given, of route sets not in it; audio-search collections are never touched. Returns
    the collections deleted (or, with `dry_run`, that would be), as `store.describe()` has
    them."""
    prefix = f"routes_{fingerprint}_"
    gone = []
    for r in store.describe():
        if r["kind"] != "routes":
            continue
        name = r["name"]
        if name.startswith(prefix) and (keep_sets is None or name[len(prefix) :] in keep_sets):
            continue
        if not dry_run:
            store.drop_collection(name)
        gone.append(r)
    return gone


def route_set_id(routes: RouteSet | None) -> str:
    """A route set's identity in the index (it names the set's collection): its declared
    `name:`, else its file's name without the extension ("home" for routes/home.yaml), else
    "inline" for a set built in code. It survives moving, renaming the folder or re-cloning the
    repo, so the exemplars are synthesised once; two different files with the same file name
    sharing one index folder should declare different `name:`s (else each sync replaces the
    other's points)."""
    if routes is None:
        return "inline"
    declared = getattr(routes, "name", None)
    if declared:
        return str(declared)
    source = getattr(routes, "source", None)
    if source is None:
        return "inline"
    stem = re.sub(r"[^A-Za-z0-9_.-]", "-", Path(source).stem).lstrip("._-")[:64]
    return stem or "routes"


class RouteIndex:
    """The points of a route set, stored in Qdrant under `routes_<fingerprint>_<set id>`.

    Args:
        model: the embedding model (its fingerprint keys the collection and every point id).
        backend: a `VectorBackend`; default: Qdrant Edge at `path` (or the user data folder).
        path: Edge folder, used when `backend` is None.
        exemplar_voices: how many TTS voices speak each route text as audio exemplars
            (0 disables them; None = 12 when espeak-ng is available, else 0 with a notice).
        set_id: which route set this collection holds (`route_set_id(routes)`; "inline" default).
    """

    def __init__(
        self,
        model: EmbeddingModel,
        backend: VectorBackend | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        exemplar_voices: int | None = None,
        set_id: str = "inline",
    ) -> None:
        self.model = model
        self.backend = backend if backend is not None else EdgeBackend(path or default_index_path())
        self.collection = check_collection_name(f"routes_{model.fingerprint}_{set_id}")
        self.points = PointBuilder(model, exemplar_voices)  # plans and embeds; the store never does
        self._lock = threading.RLock()
        self._vectors: RouteVectors | None = None
        # points per (route, kind), known after a sync: what a query-scored decision needs to
        # tell "not among the hits" from "has no such points"
        self._counts: dict[tuple[str, str], int] | None = None
        self._route_of: dict[str, tuple[str, str]] = {}  # point id -> (route, kind), same sync
        self.backend.open_collection(self.collection, int(model.dim), model.fingerprint, "routes")

    @property
    def exemplar_voices(self) -> int | None:
        """TTS voices per route text (see `PointBuilder`)."""
        return self.points.exemplar_voices

    # -- writing ------------------------------------------------------------------------------

    def sync(self, routes: RouteSet) -> SyncReport:
        """Make the collection hold exactly the points `routes` calls for (plus enrolled clips of
        routes that still exist): embed and upsert only missing points, delete stale ones."""
        with self._lock:
            specs = self.points.plan(routes)
            report = SyncReport(exemplars_skipped=self.points.skipped)
            desired = {s.id: s for s in specs}
            names = {r.name for r in routes.routes}
            existing: dict[str, dict[str, Any]] = {
                p.id: p.payload for p in self.backend.scroll(self.collection, with_vectors=False)
            }
            stale = [
                pid
                for pid, pl in existing.items()
                if pid not in desired
                and not (pl.get(P_SOURCE) == SOURCE_ENROLLED and pl.get(P_ROUTE) in names)
            ]
            missing = [s for s in specs if s.id not in existing]
            n_audio = sum(s.kind == KIND_AUDIO for s in missing)
            # a terminal gets the progress bar; a log or pipe one line before and one after
            quiet = n_audio < 50 or _stderr_is_tty()
            if missing:
                log.info(
                    "indexing %d route points (%d audio exemplars) in %s",
                    len(missing),
                    n_audio,
                    self.backend.location,
                )
                if not quiet:
                    _say(
                        f"indexing {len(missing)} route points ({n_audio} spoken exemplars, "
                        "once per model and route set) ..."
                    )
            t0 = time.perf_counter()
            for batch in self.points.embed(missing):
                self.backend.upsert(self.collection, batch)
                report.added += len(batch)
            if missing and not quiet:
                _say(
                    f"indexed {report.added} route points in {time.perf_counter() - t0:.1f} s "
                    f"into {self.backend.location}"
                )
            if missing and len(existing) + len(missing) >= OPTIMIZE_AT:
                _say(f"building the search index of {self.collection} (once; can take minutes)")
                self.optimize()
            for i in range(0, len(stale), 256):
                self.backend.delete(self.collection, stale[i : i + 256])
            report.removed = len(stale)
            report.kept = len(existing) - len(stale)
            gone = set(stale)
            counts: dict[tuple[str, str], int] = {}
            kinds = [
                (str(pl.get(P_ROUTE)), str(pl.get(P_KIND)))
                for pid, pl in existing.items()
                if pid not in gone
            ]
            for key in kinds + [(s.route, s.kind) for s in missing]:
                counts[key] = counts.get(key, 0) + 1
                counts[("", key[1])] = counts.get(("", key[1]), 0) + 1  # per kind
            self._counts = counts
            self._route_of = {
                pid: (str(pl.get(P_ROUTE)), str(pl.get(P_KIND)))
                for pid, pl in existing.items()
                if pid not in gone
            }
            self._route_of.update((s.id, (s.route, s.kind)) for s in missing)
            self._vectors = None
            return report

    def enroll(self, route: str, clips: Sequence[np.ndarray], labels: Sequence[str]) -> int:
        """Store user recordings of `route` as audio points (kept across syncs while the route
        exists). `labels` name each clip (e.g. its file name). Returns points written."""
        pts = self.points.enrolled(route, clips, labels)
        with self._lock:
            known = self.backend.existing_ids(self.collection, [p.id for p in pts])
            for i in range(0, len(pts), UPSERT_BATCH):
                self.backend.upsert(self.collection, pts[i : i + UPSERT_BATCH])
            self._vectors = None
            if self._counts is not None:
                for key in ((route, KIND_AUDIO), ("", KIND_AUDIO)):
                    self._counts[key] = self._counts.get(key, 0) + len(pts) - len(known)
                self._route_of.update((p.id, (route, KIND_AUDIO)) for p in pts)
        return len(pts)

    # -- reading ------------------------------------------------------------------------------

    def optimize(self) -> None:
        """Build the collection's search index (sync does it past OPTIMIZE_AT points)."""
        with self._lock:
            self.backend.optimize(self.collection)

    def query(self, vector: np.ndarray, kind: str, limit: int) -> list[tuple[str, float]]:
        """(route, cosine) of the `limit` points of `kind` ("text" or "audio") nearest to
        `vector`, best first: one Qdrant query (payload-indexed filter on the kind) returning
        ids and scores; routes come from the id -> route map of the last sync, and a point
        this process has not seen (written by another one since) is read with its payload."""
        return [(route, score) for route, _, score in self._nearest(vector, limit, {P_KIND: kind})]

    def query_all(self, vector: np.ndarray, limit: int) -> list[tuple[str, str, float]]:
        """(route, kind, cosine) of the `limit` points of any kind nearest to `vector`, best
        first: one query without a filter (cheaper than one filtered query per kind)."""
        return self._nearest(vector, limit, None)

    def _nearest(
        self, vector: np.ndarray, limit: int, where: Mapping[str, Any] | None
    ) -> list[tuple[str, str, float]]:
        """(route, kind, cosine) of the nearest points matching `where`: ids and scores from
        the store, routes and kinds from the id map of the last sync; a point this process has
        not seen (written by another one since) makes it read the payloads instead."""
        hits = self.backend.query(self.collection, vector, limit, where, False)
        with self._lock:
            route_of = self._route_of
            try:
                return [(*route_of[h.id], h.score) for h in hits]
            except KeyError:
                pass
        hits = self.backend.query(self.collection, vector, limit, where)
        return [(str(h.payload.get(P_ROUTE)), str(h.payload.get(P_KIND)), h.score) for h in hits]

    def query_payloads(
        self, vector: np.ndarray, where: Mapping[str, Any], limit: int
    ) -> list[tuple[float, dict[str, Any]]]:
        """(cosine, payload) of the `limit` points matching `where` nearest to `vector`, best
        first (what resolving a route's slots reads)."""
        if limit <= 0:
            return []
        hits = self.backend.query(self.collection, vector, limit, dict(where))
        return [(float(h.score), h.payload) for h in hits]

    def total(self, kind: str) -> int:
        """Points of `kind` after the last sync (plus enrolments since)."""
        return self.counts().get(("", kind), 0)

    def counts(self) -> Mapping[tuple[str, str], int]:
        """Points per (route, kind) after the last sync (plus enrolments since), and per kind
        under the route "" (read-only view, not a copy: it is read on every utterance)."""
        with self._lock:
            if self._counts is None:
                raise IndexStoreError("the route index has not been synced; call sync(routes)")
            return MappingProxyType(self._counts)

    def vectors(self) -> RouteVectors:
        """All route points as a matrix (cached until the next sync/enroll)."""
        with self._lock:
            if self._vectors is None:
                rows = list(self.backend.scroll(self.collection, with_vectors=True))
                rows.sort(key=lambda p: p.id)  # a stable order, whatever the store returns
                d = int(self.model.dim)
                for p in rows:
                    self._check_point(p, d)
                mat = (
                    np.stack([np.asarray(p.vector, np.float32) for p in rows])
                    if rows
                    else np.zeros((0, d), np.float32)
                )  # (N, D)
                norms = np.linalg.norm(mat, axis=1, keepdims=True)  # (N, 1)
                mat = mat / np.maximum(norms, 1e-12)
                route = [str(p.payload.get(P_ROUTE)) for p in rows]
                self._vectors = RouteVectors(
                    vectors=mat.astype(np.float32),
                    route=route,
                    kind=[str(p.payload.get(P_KIND)) for p in rows],
                    text=[str(p.payload.get(P_TEXT)) for p in rows],
                    route_names=sorted(set(route)),
                )
            return self._vectors

    def _check_point(self, p: PointRecord, dim: int) -> None:
        """A stored point must be what this index wrote: its id recomputes from its payload
        (so a damaged payload cannot silently rename a route) and its vector is finite (D,)."""
        pl = p.payload
        ok = (
            pl.get(P_FINGERPRINT) == self.model.fingerprint
            and pl.get(P_KIND) in (KIND_TEXT, KIND_AUDIO)
            and isinstance(pl.get(P_ROUTE), str)
            and p.id
            == point_id(
                self.model.fingerprint,
                str(pl.get(P_ROUTE)),
                str(pl.get(P_KIND)),
                str(pl.get(P_TEXT)),
                str(pl.get(P_VOICE, "")),
            )
            and p.vector is not None
            and p.vector.shape == (dim,)
            and bool(np.isfinite(p.vector).all())
        )
        if not ok:
            raise IndexStoreError(
                f"index collection {self.collection!r} at {self.backend.location} is corrupt "
                f"(point {p.id} does not match its payload); delete that collection's folder "
                "to rebuild it from the routes file"
            )

    def search(self, vector: np.ndarray, limit: int = 10) -> list[ScoredRecord]:
        """Nearest route points to `vector`, straight from Qdrant."""
        return self.backend.query(self.collection, vector, limit)

    def count(self) -> int:
        """Number of points in the collection."""
        return self.backend.count(self.collection)

    def close(self) -> None:
        """Release the store (and, for Edge, the folder lock)."""
        self.backend.close()

    def __enter__(self) -> RouteIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "ClientBackend",
    "DEFAULT_MIN_FREE_BYTES",
    "EdgeBackend",
    "KIND_AUDIO",
    "KIND_TEXT",
    "LOCK_NAME",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "OPTIMIZE_AT",
    "POINT_NAMESPACE",
    "P_FINGERPRINT",
    "P_KIND",
    "P_ROUTE",
    "P_SOURCE",
    "P_TEXT",
    "P_VOICE",
    "PointRecord",
    "RouteIndex",
    "RouteVectors",
    "SOURCE_ENROLLED",
    "SOURCE_FILE",
    "SOURCE_ROUTES",
    "ScoredRecord",
    "SyncReport",
    "UPSERT_BATCH",
    "VectorBackend",
    "check_collection_name",
    "default_index_path",
    "open_backend",
    "prune_route_collections",
    "point_id",
    "route_set_id",
]
