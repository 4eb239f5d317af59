"""Building a route set's points: what each route becomes as vectors, before any store sees it.

A route contributes its texts (`description` and `examples`) as `kind="text"` points and, as
`kind="audio"` points, each text spoken by several TTS voices (exemplars), its
`examples_audio` files, and user enrolment clips. `PointBuilder.plan` lists the points a route
set calls for, each with its deterministic id (uuid5 of model fingerprint, route, kind, text and
voice), without embedding anything; `PointBuilder.embed` synthesises and embeds the ones a store
lacks. The store (`voice_router.store`) only stores and searches; `voice_router.index` diffs the
plan against a collection and writes the difference.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voice_router.checksums import file_sha256
from voice_router.errors import IndexStoreError
from voice_router.model.base import embed_audio_pooled
from voice_router.store import (
    KIND_AUDIO,
    KIND_TEXT,
    P_FINGERPRINT,
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
    UPSERT_BATCH,
    PointRecord,
    point_id,
)

if TYPE_CHECKING:
    from voice_router.model.base import EmbeddingModel
    from voice_router.routes import RouteSet

log = logging.getLogger(__name__)

DEFAULT_EXEMPLAR_VOICES = 12
"""TTS voices that speak each route text when espeak-ng is installed."""


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


__all__ = ["DEFAULT_EXEMPLAR_VOICES", "PointBuilder", "PointSpec"]
