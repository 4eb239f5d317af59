"""Router: audio (or a precomputed vector) in, `RouteMatch` out, tool dispatched.

The router orchestrates; each step is its own module's:
1. the speech gate (`voice_router.audio.gate`): no speech, no route;
2. the model embeds the speech (and gives its encoder frames to the slot stage);
3. scoring (`voice_router.scoring`): Qdrant queries -> a fused score per route;
4. the decision (`voice_router.decision`): threshold and margin, one rule for router and eval;
5. the slot stage (`voice_router.slots`): where the leading routes have `sentences:`,
   Whisper's decoder reads the utterance held to their phrasings: an understood reading
   decides the route among them and gives the slot values; speech that fits none of them is
   "not understood" and calls no tool;
6. dispatch (`voice_router.dispatch.ToolRunner`): the route's tool runs with its args.
The route set's points are synced into the index by `voice_router.points` at construction.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from voice_router.decision import Fusion, decide, route_thresholds
from voice_router.dispatch import DEFAULT_TOOL_TIMEOUT_S, ToolRunner
from voice_router.errors import ModelError, RoutesError, VoiceRouterError
from voice_router.index import RouteIndex, route_set_id
from voice_router.model.base import embed_audio_pooled, embed_audio_with_frames
from voice_router.model.loader import load_model
from voice_router.points import PointBuilder, SyncReport
from voice_router.scoring import RouteScorer
from voice_router.slots import SLOT_TOP_K, SlotStage, slots_from_embeddings
from voice_router.store import VectorBackend, open_backend

if TYPE_CHECKING:
    from voice_router.audio.gate import SpeechGate
    from voice_router.model.base import EmbeddingModel
    from voice_router.routes import RouteSet
    from voice_router.slot_reader import Reading, SlotReader

log = logging.getLogger(__name__)


@dataclass
class RouteMatch:
    """The routing decision for one clip.

    route: the matched route, or None when nothing passed threshold and margin.
    score: the best route's fused score; margin: best minus runner-up.
    nearest: the best-scoring route even when it did not match (for calibration/debugging).
    candidates: the top routes as (route, score), best first.
    latency_ms: per stage (decode, embed, search, dispatch, total), milliseconds.
    tool_result / tool_error: the dispatched tool's outcome (None when not dispatched).
    args: the arguments the route's tool gets (its static `args` with the slot values merged
        in); slots: per slot of a route with `sentences:`, the value heard and how sure: from the
        slot stage {value, confidence} (the reading's mean log-probability per token), else
        from embeddings {value, score, margin} (see `Router.resolve_slots`).
    reading: what the slot stage's decoder read (phrasing, route, slots, confidence,
        understood), when it ran. reason: why there is no route ("below threshold", "too close
        to the runner-up", "not understood"), None when one matched.
    """

    route: str | None
    score: float
    margin: float
    candidates: list[tuple[str, float]] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)
    nearest: str | None = None
    tool: str | None = None
    tool_result: Any = None
    tool_error: str | None = None
    file: str | None = None
    args: dict[str, Any] | None = None  # what the tool gets: the route's args + its slots
    slots: dict[str, dict[str, Any]] | None = None  # per slot: value and how sure
    reading: dict[str, Any] | None = None  # the slot stage's reading, when it ran
    reason: str | None = None  # why no route matched

    @property
    def matched(self) -> bool:
        """True when a route matched."""
        return self.route is not None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what `voice-router route --json` prints)."""
        d: dict[str, Any] = {}
        if self.file is not None:
            d["file"] = self.file
        d.update(
            route=self.route,
            score=round(float(self.score), 6),
            margin=round(float(self.margin), 6),
            nearest=self.nearest,
            candidates=[{"route": r, "score": round(float(s), 6)} for r, s in self.candidates],
            latency_ms={k: round(float(v), 3) for k, v in self.latency_ms.items()},
            tool=self.tool,
            tool_result=self.tool_result,
            tool_error=self.tool_error,
        )
        if self.args is not None:
            d["args"] = self.args
        if self.slots is not None:
            d["slots"] = self.slots
        if self.reading is not None:
            d["reading"] = self.reading
        if self.route is None:
            d["reason"] = self.reason
        return d


def resolve_routes(routes: RouteSet | str | os.PathLike[str]) -> RouteSet:
    """A `RouteSet` from an instance or a YAML path."""
    if isinstance(routes, str | os.PathLike):
        from voice_router.routes import load_routes

        return load_routes(routes)
    return routes


_warned_no_gate = False


def _make_gate(choice: SpeechGate | bool | None) -> SpeechGate | None:
    """The router's speech gate from its `speech_gate` argument (see Router)."""
    global _warned_no_gate
    if choice is None and os.environ.get("VOICE_ROUTER_SPEECH_GATE", "1") == "0":
        return None
    if choice is False:
        return None
    if choice is None or choice is True:
        from voice_router.audio.gate import SpeechGate

        try:
            return SpeechGate()
        except ModelError:
            if choice is True:
                raise
            if not _warned_no_gate:
                log.warning(
                    "no voice activity detector installed: clips are routed without a speech "
                    "gate, so non-speech can match a route; pip install 'voice-router[listen]'"
                )
                _warned_no_gate = True
            return None
    return choice


def with_model_defaults(routes: RouteSet, model: Any) -> RouteSet:
    """`routes` with the model's default threshold and margin (`model.decision_defaults`, from
    its folder's routing.json) where the routes file set none; the same set when it set both
    or the model has none. The file's own values always win."""
    defaults = getattr(model, "decision_defaults", None) or {}
    missing = {k: v for k, v in defaults.items() if k not in routes.given}
    return routes.replace(**missing) if missing else routes


def model_fusion(model: EmbeddingModel) -> Fusion:
    """The model's routing default (`model.fusion`, an optional attribute: its folder's
    routing.json), else `Fusion()`; a bad default names the model it came from."""
    spec = getattr(model, "fusion", None)
    try:
        return Fusion.parse(spec)
    except VoiceRouterError as e:
        raise ModelError(
            f"model {getattr(model, 'name', model)!r} declares the default fusion {spec!r} "
            f"(its folder's routing.json), which is not valid: {e}. Fix that file, or pass "
            "fusion= / --fusion"
        ) from None


class Router:
    """Routes spoken audio to the routes of a `RouteSet` and calls their tools.

    The core without LangChain's Runnable machinery (whose import alone costs most of a CLI
    call's start-up): the CLI and `listen` use it; `voice_router.runnable.VoiceRouter` is this
    router as a LangChain Runnable with `as_tool()`.

    Args:
        routes: a `RouteSet` or the path of a routes YAML file.
        model: an `EmbeddingModel` or a name for `load_model` ("default", "tiny", a folder).
        tools: LangChain tools (or callables) that routes may name by `.name`.
        index: a `RouteIndex` (of this model's vectors), a `VectorBackend`, a folder (Qdrant
            Edge), ":memory:" or a Qdrant URL (qdrant-client); None = Qdrant Edge in the user
            data folder.
        allow_import: let routes name tools as `package.module:attr` (imports that code).
        fusion: how text and audio-exemplar scores combine (`Fusion` or a spec string); None =
            the model's own default (its folder's routing.json, exposed as `model.fusion`),
            else `Fusion()`.
        exemplar_voices: TTS voices per route text (0 = none; None = 12 when espeak-ng exists).
        dispatch: call the matched route's tool (False = decide only).
        strict_tools: True (default) raises `ToolError` at construction when a route's tool
            cannot be resolved or its args do not validate; False (the CLI) routes anyway and
            reports the problem in `RouteMatch.tool_error` of that route's matches. A tool named
            by import path without `allow_import` is never an error at construction, in Python
            as on the CLI: the route is decided and its matches say how to allow the import.
        tool_timeout_s: give up waiting for a tool after this many seconds.
        top_candidates: how many (route, score) pairs `RouteMatch.candidates` lists.
        slot_reader: the slot stage: None (default) = a `SlotReader` over the routes with
            `sentences:` when there are any and the model gives encoder frames (the bundled
            default does); False = off (slots from embeddings); or a `SlotReader`.
        slot_top_k: how many of the best-scoring routes the slot stage reads against.
        speech_gate: Silero VAD before anything else (voice_router.audio.gate): a clip with no
            speech gets no route (reason "no speech") and no tool; speech is trimmed to its
            utterances. None (default) = on when a VAD is installed (the listen extra), else
            off with a warning, and off when VOICE_ROUTER_SPEECH_GATE=0; True = required;
            False = off; or a `SpeechGate`.

    The index is synced on construction: only missing points are embedded.
    """

    def __init__(
        self,
        routes: RouteSet | str | os.PathLike[str],
        model: EmbeddingModel | str = "default",
        tools: Iterable[Any] = (),
        index: RouteIndex | VectorBackend | str | os.PathLike[str] | None = None,
        *,
        allow_import: bool = False,
        fusion: Fusion | str | None = None,
        exemplar_voices: int | None = None,
        dispatch: bool = True,
        strict_tools: bool = True,
        tool_timeout_s: float | None = DEFAULT_TOOL_TIMEOUT_S,
        top_candidates: int = 5,
        slot_reader: SlotReader | bool | None = None,
        slot_top_k: int = SLOT_TOP_K,
        speech_gate: SpeechGate | bool | None = None,
    ) -> None:
        self.routes = resolve_routes(routes)
        if not self.routes.routes:
            raise RoutesError("the route set has no routes; add at least one")
        explicit = None if fusion is None else Fusion.parse(fusion)  # bad specs fail first
        if slot_top_k < 1:
            raise ValueError(f"slot_top_k must be >= 1, got {slot_top_k}")
        self.dispatch = dispatch
        self.top_candidates = top_candidates
        self.tools = ToolRunner(self.routes, tools, allow_import=allow_import,
                                strict=strict_tools, timeout_s=tool_timeout_s)  # fmt: skip
        if dispatch:
            self.tools.check()  # before opening anything: a config error leaves no lock behind
        self.model = load_model(model)
        self.points = PointBuilder(self.model, exemplar_voices)
        owned = not isinstance(index, RouteIndex)
        if isinstance(index, RouteIndex):
            self.index = index
        else:
            backend = open_backend(index)
            try:
                self.index = RouteIndex(backend, dim=int(self.model.dim),
                                        fingerprint=self.model.fingerprint,
                                        set_id=route_set_id(self.routes))  # fmt: skip
            except BaseException:
                backend.close()
                raise
        try:
            self.routes = with_model_defaults(self.routes, self.model)
            self._names = [r.name for r in self.routes.routes]
            self._by_name = {r.name: r for r in self.routes.routes}
            self.fusion = explicit or model_fusion(self.model)
            self.scorer = RouteScorer(self.index, self._names, self.fusion)
            self.slots = SlotStage(self._make_reader(slot_reader), self._names, slot_top_k)
            self.speech_gate = _make_gate(speech_gate)
            self.sync_report: SyncReport = self.points.sync(self.index, self.routes)
        except BaseException:
            if owned:  # release the folder lock we took; a caller's RouteIndex stays open
                self.index.close()
            raise

    # -- set-up -------------------------------------------------------------------------------

    def _make_reader(self, choice: SlotReader | bool | None) -> SlotReader | None:
        """The slot stage's reader (see __init__'s slot_reader); its decoder loads at the first
        read."""
        if choice is False:
            return None
        if choice is None or choice is True:
            if not any(r.sentences for r in self.routes.routes):
                return None
            if not hasattr(self.model, "embed_audio_frames"):
                if choice is True:
                    raise ModelError(
                        f"model {self.model.name!r} gives no encoder frames, which the slot "
                        "stage reads; use the default model or slot_reader=False"
                    )
                return None
            from voice_router.slot_reader import SlotReader

            return SlotReader(self.routes)
        return choice

    @property
    def slot_reader(self) -> SlotReader | None:
        """The slot stage's constrained decoder (None: slots from embeddings only)."""
        return self.slots.reader

    @property
    def tool_problems(self) -> dict[str, str]:
        """Per route whose tool will not be called: why (see `strict_tools`)."""
        return self.tools.problems

    def refresh(self) -> SyncReport:
        """Re-sync the index with `self.routes` (e.g. after the routes' audio files changed)."""
        self.sync_report = self.points.sync(self.index, self.routes)
        self.scorer.invalidate()
        return self.sync_report

    def enroll(self, route: str, clips: Sequence[np.ndarray], labels: Sequence[str]) -> int:
        """Store user recordings of `route` as its audio exemplars (kept across syncs while the
        route exists); `labels` name each clip. Returns points written."""
        if route not in self._by_name:
            raise RoutesError(f"no route {route!r} in this route set; routes: {self._names}")
        n = self.points.enroll(self.index, route, clips, labels)
        self.scorer.invalidate()
        return n

    def close(self) -> None:
        """Release the index (and the Edge folder lock)."""
        self.index.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(routes={len(self.routes.routes)}, model={self.model.name!r}, "
            f"index={self.index.backend.location!r}, fusion='{self.fusion}')"
        )

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the steps, one at a time -------------------------------------------------------------

    def _decode(self, audio: Any) -> np.ndarray:
        """Any AudioInput (a bare 1-D array counts as mono at the model's rate) -> validated
        (samples,) float32 at the model's rate."""
        from voice_router.audio.io import load_audio

        if isinstance(audio, np.ndarray):
            audio = (audio, self.model.sample_rate)
        return load_audio(audio, target_rate=self.model.sample_rate)

    def speech(self, audio: Any) -> np.ndarray | None:
        """The clip as the router embeds it: decoded, then trimmed to its speech by the speech
        gate (None when the gate hears none; the whole clip when the gate is off)."""
        clip = self._decode(audio)
        return clip if self.speech_gate is None else self.speech_gate(clip)

    def embed(self, audio: Any) -> np.ndarray:
        """Decode `audio` (path, bytes, (array, rate) or a 16 kHz array) and embed it -> (D,)."""
        return embed_audio_pooled(self.model, self._decode(audio))

    def embed_with_frames(self, audio: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """(embedding (D,), encoder frames or None) of a clip (no speech gate: see `speech`):
        the frames only when the slot stage reads and the model gives them."""
        return self._embed(self._decode(audio))

    def _embed(self, clip: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self.slots.reader is None:
            return embed_audio_pooled(self.model, clip), None
        return embed_audio_with_frames(self.model, clip)

    def component_scores(self, vector: np.ndarray) -> dict[str, dict[str, float | None]]:
        """Per route: {"text": ..., "audio": ... or None, "score": fused} (`RouteScorer`)."""
        return self.scorer.component_scores(vector)

    def scores_vector(self, vector: np.ndarray) -> dict[str, float]:
        """Fused score per route for an embedding."""
        return self.scorer.scores(vector, every_route=True)

    def scores(self, audio: Any) -> dict[str, float]:
        """Fused score per route for a clip."""
        return self.scores_vector(self.embed(audio))

    def score_matrix(self, vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
        """The numpy oracle's scores of many embeddings (`RouteScorer.score_matrix`)."""
        return self.scorer.score_matrix(vectors)

    def decide(self, scores: Mapping[str, float]) -> tuple[str | None, float, float, str, list]:
        """(route or None, score, margin, nearest, candidates) from per-route scores, by the
        one decision rule (`voice_router.decision`)."""
        names = list(scores)
        row = np.array([[scores[n] for n in names]], dtype=np.float64)  # (1, R)
        thresholds = route_thresholds(self.routes, [self._by_name[n] for n in names])  # (R,)
        pred, best, s1, gap = decide(row, names, thresholds, float(self.routes.margin))
        nearest = names[int(best[0])]
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        route = nearest if pred[0] >= 0 else None
        return route, float(s1[0]), float(gap[0]), nearest, ranked[: self.top_candidates]

    def read_slots(self, frames: np.ndarray | None, scores: Mapping[str, float]) -> Reading | None:
        """The slot stage's reading of an utterance's `frames` (`SlotStage.read`)."""
        return self.slots.read(frames, scores)

    def resolve_slots(self, vector: np.ndarray, route: str) -> dict[str, dict[str, Any]]:
        """The slot values of `route` heard in `vector`, from embeddings
        (`slots.slots_from_embeddings`)."""
        return slots_from_embeddings(self.index, vector, route)

    # -- routing ------------------------------------------------------------------------------

    def route(
        self,
        audio: Any,
        *,
        dispatch: bool | None = None,
        file: str | None = None,
        gate: bool = True,
    ) -> RouteMatch:
        """Decode, gate, embed, score, read and (if it matched and has a tool) dispatch one
        clip. `gate=False` skips the speech gate for audio already segmented by a VAD (what
        `listen` passes: its utterances come from the same Silero VAD)."""
        t0 = time.perf_counter()
        clip = self._decode(audio)
        if file is None and isinstance(audio, str | os.PathLike):
            file = os.fspath(audio)
        tg = time.perf_counter()
        if gate and self.speech_gate is not None:
            speech = self.speech_gate(clip)
            if speech is None:
                t1 = time.perf_counter()
                m = RouteMatch(route=None, score=0.0, margin=0.0, reason="no speech", file=file)
                m.latency_ms = {"decode": (tg - t0) * 1e3, "gate": (t1 - tg) * 1e3,
                                "total": (t1 - t0) * 1e3}  # fmt: skip
                return m
            clip = speech
        t1 = time.perf_counter()
        vec, frames = self._embed(clip)
        t2 = time.perf_counter()
        m = self.route_vector(vec, dispatch=dispatch, frames=frames)
        m.latency_ms = {
            "decode": (tg - t0) * 1e3,
            "gate": (t1 - tg) * 1e3,
            "embed": (t2 - t1) * 1e3,
            **{k: v for k, v in m.latency_ms.items() if k != "total"},
            "total": (time.perf_counter() - t0) * 1e3,
        }
        m.file = file
        return m

    def route_vector(
        self,
        vector: np.ndarray,
        *,
        dispatch: bool | None = None,
        frames: np.ndarray | None = None,
    ) -> RouteMatch:
        """Route a precomputed embedding (D,); with the utterance's encoder `frames` (T', Da)
        the slot stage reads it too (see the module docstring), else slots come from
        embeddings."""
        t0 = time.perf_counter()
        scores = self.scorer.scores(vector)
        route, score, margin, nearest, cands = self.decide(scores)
        reason = None if route is not None else self._why_not(score, nearest)
        t1 = time.perf_counter()
        reading = self.slots.read(frames, scores)
        decided, vetoed = self.slots.decide(route, reading)
        if decided is not None and decided != route:
            score = float(scores.get(decided, score))
        if decided is not None:
            reason = None
        elif vetoed:
            reason = "not understood" if reading.speech else "no speech"
        route = decided
        t2 = time.perf_counter()
        m = RouteMatch(route=route, score=score, margin=margin, candidates=cands, nearest=nearest)
        m.reason = reason
        m.reading = None if reading is None else reading.to_dict()
        if route is not None:
            r = self._by_name[route]
            m.tool = r.tool
            m.args = dict(r.args)
            m.slots = SlotStage.from_reading(reading, route)
            if m.slots is None and r.sentences:
                m.slots = self.resolve_slots(vector, route)
            if m.slots is not None:
                m.args.update({name: s["value"] for name, s in m.slots.items()})
            if r.tool and (self.dispatch if dispatch is None else dispatch):
                out = self.tools.run(r, m.args, m.to_dict())
                m.tool_result, m.tool_error = out.result, out.error
        t3 = time.perf_counter()
        m.latency_ms = {
            "search": (t1 - t0) * 1e3,
            "read": (t2 - t1) * 1e3,
            "dispatch": (t3 - t2) * 1e3,
            "total": (t3 - t0) * 1e3,
        }
        return m

    def _why_not(self, score: float, nearest: str) -> str:
        """Why the embedding decision gave no route."""
        if not np.isfinite(score) or score < self.routes.route_threshold(self._by_name[nearest]):
            return "below threshold"
        return "too close to the runner-up"

    def route_many(self, audios: Sequence[Any]) -> list[RouteMatch]:
        """Route several clips, one after another."""
        return [self.route(a) for a in audios]
