"""Building a route set's points: what each route becomes as vectors, before any store sees it.

A route contributes its texts (`description` and `examples`) as `kind="text"` points and, as
`kind="audio"` points, each text spoken by several TTS voices (exemplars), its
`examples_audio` files, and user enrolment clips. `PointBuilder.plan` lists the points a route
set calls for, each with its deterministic id (`point_schema.point_id`: uuid5 of model
fingerprint, route, kind, text and voice), without embedding anything; `PointBuilder.sync`
diffs the plan against a `RouteIndex`, embeds only the missing points (`embed` synthesises the
TTS exemplars) and writes the difference: a restart with the same routes writes nothing and an
edited route re-embeds only its changed texts. The index (`voice_router.index`) and the store
(`voice_router.store`) only store and search vectors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voice_router.checksums import file_sha256
from voice_router.errors import IndexStoreError
from voice_router.model.base import embed_audio_pooled
from voice_router.point_schema import (
    INDEXED_KEYS,
    KIND_AUDIO,
    KIND_TEXT,
    P_KIND,
    P_ROUTE,
    P_SLOTS,
    P_SOURCE,
    P_TEXT,
    P_VARIES,
    P_VOICE,
    SOURCE_ENROLLED,
    SOURCE_FILE,
    SOURCE_ROUTES,
    SOURCE_TEMPLATE,
    point_id,
)
from voice_router.store import OPTIMIZE_AT, P_FINGERPRINT, UPSERT_BATCH, PointRecord

if TYPE_CHECKING:
    from voice_router.index import RouteIndex
    from voice_router.model.base import EmbeddingModel
    from voice_router.routes import RouteSet

log = logging.getLogger(__name__)

DEFAULT_EXEMPLAR_VOICES = 12
"""TTS voices that speak each route text when espeak-ng is installed."""


@dataclass
class SyncReport:
    """What `PointBuilder.sync` did: point counts added, removed and left as they were."""

    added: int = 0
    removed: int = 0
    kept: int = 0
    exemplars_skipped: str | None = None  # why TTS exemplars were not built, if they were not


@dataclass
class PointSpec:
    """One point a route set calls for, before it is embedded."""

    id: str
    route: str
    kind: str  # KIND_TEXT | KIND_AUDIO
    text: str  # the route text, or the audio file / enrolment label
    voice: str  # "" for text; the TTS voice key, "file:<sha>" or "enrolled:<sha>" for audio
    source: str  # SOURCE_ROUTES | SOURCE_TEMPLATE | SOURCE_FILE | SOURCE_ENROLLED
    audio_path: str | None = None
    slots: dict[str, Any] | None = None  # a template phrasing's slot values
    varies: str = ""  # the slot a template phrasing varies ("" for a carrier)


def _voice_key(voice: Any) -> str:
    """The stable id of an `ExemplarVoice` (its `key` property)."""
    key = voice.key
    return str(key() if callable(key) else key)


class PointBuilder:
    """Plans and embeds the points of route sets for one model.

    Args:
        model: the embedding model; its fingerprint keys every point id.
        exemplar_voices: how many TTS voices speak each route text as audio exemplars
            (0 disables them; None = DEFAULT_EXEMPLAR_VOICES when espeak-ng is available, else 0
            with a notice in `skipped`).
    """

    def __init__(self, model: EmbeddingModel, exemplar_voices: int | None = None) -> None:
        self.model = model
        self.exemplar_voices = exemplar_voices
        self.skipped: str | None = None  # why TTS exemplars are not built, once known
        self._voice_list: list[Any] | None = None

    def voices(self) -> list[Any]:
        """The TTS voices of the exemplars ([] when disabled or espeak-ng is missing)."""
        if self._voice_list is not None:
            return self._voice_list
        n = self.exemplar_voices
        voices: list[Any] = []
        if n != 0:
            from voice_router import tts

            if tts.tts_available():
                voices = list(
                    tts.default_exemplar_voices(DEFAULT_EXEMPLAR_VOICES if n is None else n)
                )
            else:
                self.skipped = "espeak-ng is not installed (apt-get install espeak-ng)"
                log.warning("route audio exemplars skipped: %s", self.skipped)
        self._voice_list = voices
        return voices

    def payload(self, s: PointSpec) -> dict[str, Any]:
        """The payload stored with a point (what routing and checks read back)."""
        out = {
            P_ROUTE: s.route,
            P_KIND: s.kind,
            P_TEXT: s.text,
            P_VOICE: s.voice,
            P_SOURCE: s.source,
            P_FINGERPRINT: self.model.fingerprint,
        }
        if s.slots is not None:
            out[P_SLOTS], out[P_VARIES] = s.slots, s.varies
        return out

    def plan(self, routes: RouteSet) -> list[PointSpec]:
        """Every point `routes` calls for, with its deterministic id (nothing is embedded)."""
        fp = self.model.fingerprint
        voices = self.voices()
        specs: list[PointSpec] = []
        for r in routes.routes:
            for text in r.texts():
                specs.append(
                    PointSpec(point_id(fp, r.name, KIND_TEXT, text), r.name, KIND_TEXT, text, "",
                              SOURCE_ROUTES)
                )  # fmt: skip
                for v in voices:
                    key = _voice_key(v)
                    specs.append(
                        PointSpec(point_id(fp, r.name, KIND_AUDIO, text, key), r.name, KIND_AUDIO,
                                  text, key, SOURCE_ROUTES)
                    )  # fmt: skip
            if r.sentences:  # template phrasings: text points carrying their slot values
                from voice_router.templates import phrasings

                said = set(r.texts())
                for ph in phrasings(r.sentences, routes.lists):  # cached after the first run
                    if ph.text in said:  # a phrasing equal to an example is that example
                        continue
                    # the slot values are part of the id: a list's `out` edited re-writes it
                    blob = json.dumps([ph.slots, ph.varies], sort_keys=True, default=str)
                    voice = "slots:" + hashlib.sha256(blob.encode()).hexdigest()[:16]
                    specs.append(
                        PointSpec(point_id(fp, r.name, KIND_TEXT, ph.text, voice), r.name,
                                  KIND_TEXT, ph.text, voice, SOURCE_TEMPLATE,
                                  slots=dict(ph.slots), varies=ph.varies)
                    )  # fmt: skip
            for p in r.examples_audio:
                path = Path(p)
                if not path.is_absolute() and routes.source is not None:
                    path = Path(routes.source).parent / path
                path = path.resolve()
                try:
                    digest = file_sha256(path)[:16]
                except OSError as e:
                    raise IndexStoreError(
                        f"route {r.name!r}: examples_audio file {path} cannot be read "
                        f"({e.strerror}); fix the path in the routes file"
                    ) from None
                voice = f"file:{digest}"
                specs.append(
                    PointSpec(point_id(fp, r.name, KIND_AUDIO, str(path), voice), r.name,
                              KIND_AUDIO, str(path), voice, SOURCE_FILE, audio_path=str(path))
                )  # fmt: skip
        return specs

    def embed(self, specs: Sequence[PointSpec]) -> Iterator[list[PointRecord]]:
        """Embed `specs` in batches (text first, then audio: TTS exemplars are synthesised
        here), yielding points ready to upsert. A progress bar on a terminal for 50+ clips."""
        texts = [s for s in specs if s.kind == KIND_TEXT]
        for i in range(0, len(texts), UPSERT_BATCH):
            batch = texts[i : i + UPSERT_BATCH]
            vecs = self.model.embed_text([s.text for s in batch])  # (B, D)
            yield [PointRecord(s.id, vecs[j], self.payload(s)) for j, s in enumerate(batch)]
        audios = [s for s in specs if s.kind == KIND_AUDIO]
        if not audios:
            return
        voices = {_voice_key(v): v for v in self.voices()}

        from concurrent.futures import ThreadPoolExecutor

        from tqdm import tqdm

        def clip_of(s: PointSpec) -> np.ndarray:
            if s.audio_path is not None:
                from voice_router.audio.io import load_audio

                return load_audio(s.audio_path, target_rate=self.model.sample_rate)
            if s.voice not in voices:
                raise IndexStoreError(
                    f"route {s.route!r}: exemplar voice {s.voice!r} is not available here"
                )
            from voice_router import tts

            return tts.synthesize(s.text, voices[s.voice])

        # espeak-ng runs as a subprocess per clip: synthesise a batch on a few threads while
        # this thread embeds; ~1,000 exemplars (routes/home.yaml x 12 voices) take tens of
        # seconds once per model, then they are cached as points.
        workers = max(1, min(4, os.cpu_count() or 1))
        bar = tqdm(
            total=len(audios),
            desc="route audio exemplars",
            unit="clip",
            disable=None if len(audios) >= 50 else True,
        )
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="voice-router-tts") as pool:
                for i in range(0, len(audios), 16):
                    batch = audios[i : i + 16]
                    clips = list(pool.map(clip_of, batch))
                    # One call per batch: the model batches clips of similar length (about half
                    # the time per clip of one call each) and chunks long ones itself.
                    vecs = np.asarray(self.model.embed_audio(clips), dtype=np.float32)  # (b, D)
                    yield [
                        PointRecord(s.id, v, self.payload(s))
                        for s, v in zip(batch, vecs, strict=True)
                    ]
                    bar.update(len(batch))
        finally:
            bar.close()

    def enrolled(
        self, route: str, clips: Sequence[np.ndarray], labels: Sequence[str]
    ) -> list[PointRecord]:
        """Points for user recordings of `route` (`labels` name each clip, e.g. its file)."""
        if len(clips) != len(labels):
            raise ValueError("clips and labels must have the same length")
        fp = self.model.fingerprint
        pts = []
        for clip, label in zip(clips, labels, strict=True):
            pcm = np.ascontiguousarray(clip, np.float32).tobytes()
            voice = f"enrolled:{hashlib.sha256(pcm).hexdigest()[:16]}"
            s = PointSpec(
                point_id(fp, route, KIND_AUDIO, label, voice),
                route,
                KIND_AUDIO,
                label,
                voice,
                SOURCE_ENROLLED,
            )
            pts.append(PointRecord(s.id, embed_audio_pooled(self.model, clip), self.payload(s)))
        return pts

    # -- writing into an index -----------------------------------------------------------------

    def sync(self, index: RouteIndex, routes: RouteSet) -> SyncReport:
        """Make `index` hold exactly the points `routes` calls for (plus enrolled clips of
        routes that still exist): embed and upsert only missing points, delete stale ones."""
        self._check_index(index)
        with index.lock:
            specs = self.plan(routes)
            report = SyncReport(exemplars_skipped=self.skipped)
            desired = {s.id for s in specs}
            names = {r.name for r in routes.routes}
            existing = index.payloads()
            stale = [
                pid
                for pid, pl in existing.items()
                if pid not in desired
                and not (pl.get(P_SOURCE) == SOURCE_ENROLLED and pl.get(P_ROUTE) in names)
            ]
            missing = [s for s in specs if s.id not in existing]
            # a copied or renamed routes file: its points are already embedded under the
            # other file's set id (ids never include the set), so copy them, embed the rest
            reused = self.reuse(index, missing) if missing else []
            for i in range(0, len(reused), UPSERT_BATCH):
                index.upsert(reused[i : i + UPSERT_BATCH])
            report.added += len(reused)
            if reused:
                got = {p.id for p in reused}
                missing = [s for s in missing if s.id not in got]
            n_audio = sum(s.kind == KIND_AUDIO for s in missing)
            where = index.backend.location
            # a terminal gets the progress bar; a log or pipe one line before and one after
            quiet = n_audio < 50 or _stderr_is_tty()
            if missing:
                log.info("indexing %d route points (%d audio exemplars) in %s", len(missing),
                         n_audio, where)  # fmt: skip
                if not quiet:
                    _say(f"indexing {len(missing)} route points ({n_audio} spoken exemplars, "
                         "once per model and route set) ...")  # fmt: skip
            t0 = time.perf_counter()
            for batch in self.embed(missing):
                index.upsert(batch)
                report.added += len(batch)
            if missing and not quiet:
                _say(f"indexed {report.added} route points in {time.perf_counter() - t0:.1f} s "
                     f"into {where}")  # fmt: skip
            if (missing or reused) and len(existing) + report.added >= OPTIMIZE_AT:
                _say(f"building the search index of {index.collection} (once; can take minutes)")
                index.optimize()
            index.delete(stale)
            report.removed = len(stale)
            report.kept = len(existing) - len(stale)
            return report

    def reuse(self, index: RouteIndex, specs: Sequence[PointSpec]) -> list[PointRecord]:
        """Points of `specs` that another route set of this model already holds in the same
        store (a copied or renamed routes file), with their vectors and this spec's payload.
        Another collection is opened for the copy and released after it (unless this process
        had it open already), so no process using that route set is locked out; one in use
        elsewhere or unreadable is skipped."""
        want = {s.id: s for s in specs}
        prefix = f"routes_{self.model.fingerprint}_"
        backend = index.backend
        out: list[PointRecord] = []
        for name in backend.collections("routes"):
            if not want:
                break
            if name == index.collection or not name.startswith(prefix):
                continue
            try:
                opened = backend.open_collection(name, index.dim, self.model.fingerprint,
                                                 "routes", indexed=INDEXED_KEYS)  # fmt: skip
                try:
                    for p in backend.scroll(name, with_vectors=True):
                        s = want.pop(p.id, None)
                        if s is not None and p.vector is not None:
                            vec = np.asarray(p.vector, dtype=np.float32)  # (D,)
                            out.append(PointRecord(s.id, vec, self.payload(s)))
                finally:
                    if opened:  # one this process already uses stays open
                        backend.close_collection(name)
            except IndexStoreError as e:  # in use by another process, corrupt, ...
                log.info("not reusing the points of %s: %s", name, e)
        return out

    def enroll(
        self, index: RouteIndex, route: str, clips: Sequence[np.ndarray], labels: Sequence[str]
    ) -> int:
        """Store user recordings of `route` in `index` as audio points (kept across syncs while
        the route exists). `labels` name each clip (e.g. its file name). Returns points
        written."""
        self._check_index(index)
        pts = self.enrolled(route, clips, labels)
        for i in range(0, len(pts), UPSERT_BATCH):
            index.upsert(pts[i : i + UPSERT_BATCH])
        return len(pts)

    def _check_index(self, index: RouteIndex) -> None:
        """`index` must hold this model's vectors."""
        if index.fingerprint != self.model.fingerprint or index.dim != int(self.model.dim):
            raise IndexStoreError(
                f"the route index {index.collection!r} holds vectors of model "
                f"{index.fingerprint} ({index.dim}-d), not of "
                f"{getattr(self.model, 'name', 'this model')!r} "
                f"({self.model.fingerprint}); open the index for this model"
            )


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def _say(line: str) -> None:
    """One progress line on stderr (where no progress bar is drawn)."""
    print(f"voice-router: {line}", file=sys.stderr, flush=True)


__all__ = ["DEFAULT_EXEMPLAR_VOICES", "PointBuilder", "PointSpec", "SyncReport"]
