"""Router: audio (or a precomputed vector) in, `RouteMatch` out, tool dispatched.

Routing is a Qdrant query: per utterance, the nearest text points and audio-exemplar points of
the route set's collection (one filtered query per kind for small sets, one query for both in
large ones; see below), on Qdrant Edge or a Qdrant server alike. Scoring, per route, from
those hits:
- text score  = max over its text points (description, examples);
- audio score = mean of the top-k over its audio exemplar points (TTS voices, enrolment clips);
- fused score = `Fusion.combine(text, audio)`; a route without audio points uses its text score.
The best fused route matches when its score >= the route's threshold and its margin over the
runner-up >= the route set's margin. Where the leading routes have `sentences:`, the slot stage
(voice_router.slot_reader) then has Whisper's decoder read the utterance held to those routes'
phrasings: a reading it is confident of decides the route among them and gives every slot value
exactly; speech that fits none of them is "not understood" and calls no tool. The router then
calls the route's tool (see dispatch.py).

Up to EXACT_TEXT_POINTS text and EXACT_AUDIO_POINTS audio points every point is returned, and
the scores are exactly those of the numpy oracle (`score_matrix`, which reads every vector).
Larger sets take the best TEXT_HITS + AUDIO_HITS points of either kind in ONE query without a
filter (a kind too rare among them gets its own filtered query): a decision is made among the
routes that have a point among them (a route missing from the text or the audio hits gets the
lowest cosine returned, an upper bound of its own), and `scores_vector` gives every other route
those bounds too, so only routes far from the utterance are approximated.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from voice_router.decision import Fusion, decide, overrule
from voice_router.dispatch import (
    DEFAULT_TOOL_TIMEOUT_S,
    ToolRegistry,
    invoke_tool,
    validate_args,
)
from voice_router.errors import (
    ModelError,
    RoutesError,
    ToolError,
    ToolImportBlocked,
    VoiceRouterError,
)
from voice_router.index import (
    KIND_AUDIO,
    KIND_TEXT,
    RouteIndex,
    SyncReport,
    VectorBackend,
    open_backend,
    route_set_id,
)
from voice_router.model.base import embed_audio_pooled, embed_audio_with_frames
from voice_router.model.loader import resolve_model
from voice_router.store import P_KIND, P_ROUTE, P_SLOTS

if TYPE_CHECKING:
    from voice_router.audio.gate import SpeechGate
    from voice_router.model.base import EmbeddingModel
    from voice_router.routes import RouteSet
    from voice_router.slot_reader import SlotReader

log = logging.getLogger(__name__)

#: Route sets up to this many points of a kind get every point back from a query (exact).
MAX_SLOT_POINTS = 512
"""Most text points of the matched route read back to resolve its slots (one query)."""
EXACT_TEXT_POINTS = 256
EXACT_AUDIO_POINTS = 256
#: Hits per query for larger sets (see the module docstring). Each hit costs (~15 us to read
#: back); the decision needs a few points of the leading routes, which are the nearest ones.
TEXT_HITS = 32
AUDIO_HITS = 64
#: Fewest hits of a kind that the one unfiltered query of a large set must bring back; below
#: it that kind gets its own filtered query.
MIN_KIND_HITS = 8
#: How many of the best-scoring routes the slot stage reads against (those with `sentences:`).
SLOT_TOP_K = 10


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


def make_backend(index: VectorBackend | str | os.PathLike[str] | None) -> VectorBackend:
    """A backend from `index`: a backend as it is, else `voice_router.store.open_backend`'s
    one rule (":memory:", a URL or host:port: qdrant-client; a folder: Qdrant Edge; None: Edge
    in the user data folder)."""
    if index is None or isinstance(index, str | os.PathLike):
        return open_backend(index)
    return index


@dataclass(frozen=True)
class _ScoringState:
    """What scoring reads: the point matrix and, per route, its text and audio row indices."""

    matrix: np.ndarray  # (N, D)
    route_names: list[str]
    text_rows: list[np.ndarray]
    audio_rows: list[np.ndarray]


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
    call's start-up): the CLI and `listen` use it; `voice_router.router.VoiceRouter` is this
    router as a LangChain Runnable with `as_tool()`.

    Args:
        routes: a `RouteSet` or the path of a routes YAML file.
        model: an `EmbeddingModel` or a name for `load_model` ("default", "tiny", a folder).
        tools: LangChain tools (or callables) that routes may name by `.name`.
        index: a `RouteIndex`, a `VectorBackend`, a folder (Qdrant Edge), ":memory:" or a
            Qdrant URL (qdrant-client); None = Qdrant Edge in the user data folder.
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
        self.dispatch = dispatch
        self.tool_timeout_s = tool_timeout_s
        self.top_candidates = top_candidates
        self.registry = ToolRegistry(tools, allow_import=allow_import)
        self.strict_tools = strict_tools
        self.tool_problems: dict[str, str] = {}
        if dispatch:
            self._check_tools()  # before opening anything: a config error leaves no lock behind
        if isinstance(index, RouteIndex):
            self.index = index
            self.model = index.model
            if not isinstance(model, str) and model is not index.model:
                raise ModelError("the model passed differs from the RouteIndex's model")
            owned = False
        else:
            self.model = resolve_model(model)
            backend = make_backend(index)
            try:
                self.index = RouteIndex(
                    self.model,
                    backend,
                    exemplar_voices=exemplar_voices,
                    set_id=route_set_id(self.routes),
                )
            except BaseException:
                backend.close()
                raise
            owned = True
        self.routes = with_model_defaults(self.routes, self.model)
        self._route_names = [r.name for r in self.routes.routes]
        self._route_index = {n: i for i, n in enumerate(self._route_names)}
        self._by_name = {r.name: r for r in self.routes.routes}
        self._known = self._by_name.keys()
        self._oracle: _ScoringState | None = None
        self.slot_reader = self._make_reader(slot_reader)
        if slot_top_k < 1:
            raise ValueError(f"slot_top_k must be >= 1, got {slot_top_k}")
        self.slot_top_k = slot_top_k
        self.speech_gate = _make_gate(speech_gate)
        try:
            self.fusion = explicit or model_fusion(self.model)
            self.sync_report: SyncReport = self.index.sync(self.routes)
        except BaseException:
            if owned:  # release the folder lock we took; a caller's RouteIndex stays open
                self.index.close()
            raise

    # -- set-up -------------------------------------------------------------------------------

    def _make_reader(self, choice: SlotReader | bool | None) -> SlotReader | None:
        """The slot stage (see __init__'s slot_reader); its decoder loads at the first read."""
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

    def _check_tools(self) -> None:
        """Resolve every route's tool and validate its args now, not at the first utterance."""
        for r in self.routes.routes:
            if r.tool:
                try:
                    tool = self.registry.resolve(r.tool, r.name)
                    validate_args(tool, r.name, {**self._sample_slots(r), **r.args},
                                  with_match=True)  # fmt: skip
                except ToolImportBlocked as e:
                    self.tool_problems[r.name] = f"tool not called: {e}"
                except ToolError as e:
                    if self.strict_tools:
                        raise
                    self.tool_problems[r.name] = f"tool not called: {e}"
        if self.tool_problems:
            names = list(self.tool_problems)
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            blocked = all("import" in p for p in self.tool_problems.values())
            log.warning(
                "%d route(s) will not call their tool (%s)%s; each match says why in tool_error",
                len(names),
                shown,
                ": their tools are import paths; pass --allow-import (Python: allow_import=True)"
                " if you trust the routes file"
                if blocked
                else "",
            )

    def _sample_slots(self, r: Any) -> dict[str, Any]:
        """A value for every slot `r`'s templates can fill (each list's first), so the tool's
        arguments are checked at start-up as they will be called."""
        if not r.sentences:
            return {}
        from voice_router.templates import phrasings

        out: dict[str, Any] = {}
        for ph in phrasings(r.sentences, self.routes.lists):
            for name, value in ph.slots.items():
                out.setdefault(name, value)
        return out

    def _load_vectors(self) -> _ScoringState:
        """Every point as a matrix, for the numpy oracle (`score_matrix`)."""
        rv = self.index.vectors()
        names = self._route_names
        # One tuple, swapped in by a single assignment: threads scoring during `refresh()`
        # see either the old state or the new one, never a mix.
        state = _ScoringState(
            matrix=rv.vectors,  # (N, D)
            route_names=names,
            text_rows=[rv.rows(n, KIND_TEXT) for n in names],
            audio_rows=[rv.rows(n, KIND_AUDIO) for n in names],
        )
        self._oracle = state
        return state

    def refresh(self) -> SyncReport:
        """Re-sync the index with `self.routes` (e.g. after enrolment)."""
        self.sync_report = self.index.sync(self.routes)
        self._oracle = None
        return self.sync_report

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

    # -- scoring ------------------------------------------------------------------------------

    def embed(self, audio: Any) -> np.ndarray:
        """Decode `audio` (path, bytes, (array, rate) or a 16 kHz array) and embed it -> (D,)."""
        return embed_audio_pooled(self.model, self._decode(audio))

    def _decode(self, audio: Any) -> np.ndarray:
        """Any AudioInput (a bare 1-D array counts as mono at the model's rate) -> validated
        (samples,) float32 at the model's rate."""
        from voice_router.audio.io import load_audio

        if isinstance(audio, np.ndarray):
            audio = (audio, self.model.sample_rate)
        return load_audio(audio, target_rate=self.model.sample_rate)

    def component_scores(self, vector: np.ndarray) -> dict[str, dict[str, float | None]]:
        """Per route: {"text": ..., "audio": ... or None, "score": fused}, from two Qdrant
        queries (text points, audio points) around `vector`."""
        return self._components(vector, every_route=True)

    def _components(
        self, vector: np.ndarray, every_route: bool
    ) -> dict[str, dict[str, float | None]]:
        """Scores of every route, or (`every_route=False`) of the routes among the hits only."""
        text, audio = self._route_components(vector, every_route)
        combine = self.fusion.combine
        return {
            n: {"text": t, "audio": audio.get(n), "score": combine(t, audio.get(n))}
            for n, t in text.items()
        }

    def _route_components(
        self, vector: np.ndarray, every_route: bool
    ) -> tuple[dict[str, float], dict[str, float]]:
        """(text score per route, audio score per route that has exemplars), for every route or
        (`every_route=False`, the per-utterance path) for the routes among the hits only: every
        route when the queries returned every point. This runs on every utterance: one pass
        over at most TEXT_HITS + AUDIO_HITS hits, no per-route objects."""
        q = np.asarray(vector, dtype=np.float32).reshape(-1)  # (D,)
        if q.shape[0] != self.model.dim:
            raise ModelError(f"vector has dimension {q.shape[0]}, the index has {self.model.dim}")
        if not np.isfinite(q).all():
            raise ModelError("vector has NaN or Inf values")
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        count = self.index.counts().get
        known = self._known
        k = self.fusion.top_k
        best_text: dict[str, float] = {}
        text_hits, t_floor, audio_hits, a_floor = self._query(q)
        for route, score in text_hits:  # best first: the first hit of a route is its text score
            if route not in best_text and route in known:
                best_text[route] = score
        top_audio: dict[str, list[float]] = {}
        if self.fusion.mode != "text":
            for route, score in audio_hits:  # a stale point of a removed route never counts
                got = top_audio.get(route)
                if got is None:
                    if route in known:
                        top_audio[route] = [score]
                elif len(got) < k:
                    got.append(score)
        names = self._route_names if every_route else list({**best_text, **top_audio})
        text: dict[str, float] = {}
        audio: dict[str, float] = {}
        with_audio = self.fusion.mode != "text"
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

    def _query(
        self, q: np.ndarray
    ) -> tuple[list[tuple[str, float]], float, list[tuple[str, float]], float]:
        """(text hits, text floor, audio hits, audio floor) of one utterance. Sets with few
        points of a kind get every point of it back (one filtered query per kind: exact).
        Larger sets with both kinds take one unfiltered query of TEXT_HITS + AUDIO_HITS points
        split by kind: its last score bounds every point not returned, of either kind. A kind
        with fewer than MIN_KIND_HITS points among them gets its own filtered query instead.
        Faster than a filtered query per kind, and closer to the exact numpy scores (Qdrant's
        HNSW search finds the true neighbours better without a filter): see
        benchmarks/route_query_ab.py and the README's figures."""
        with_audio = self.fusion.mode != "text"
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
                text, t_floor = self._hits(q, KIND_TEXT, EXACT_TEXT_POINTS, TEXT_HITS)
            if len(audio) < MIN_KIND_HITS:
                audio, a_floor = self._hits(q, KIND_AUDIO, EXACT_AUDIO_POINTS, AUDIO_HITS)
            return text, t_floor, audio, a_floor
        text, t_floor = self._hits(q, KIND_TEXT, EXACT_TEXT_POINTS, TEXT_HITS)
        if not with_audio:
            return text, t_floor, [], -1.0
        audio, a_floor = self._hits(q, KIND_AUDIO, EXACT_AUDIO_POINTS, AUDIO_HITS)
        return text, t_floor, audio, a_floor

    def _hits(
        self, q: np.ndarray, kind: str, exact_up_to: int, approx: int
    ) -> tuple[list[tuple[str, float]], float]:
        """(route, cosine) of the points of `kind` a query returns, best first, and the floor
        for routes below the cut (-1 when every point came back)."""
        total = self.index.total(kind)
        if total == 0:
            return [], -1.0
        limit = total if total <= exact_up_to else approx
        hits = self.index.query(q, kind, limit)  # [(route, cosine)], best first
        floor = float(hits[-1][1]) if hits and limit < total else -1.0
        return hits, floor

    def scores_vector(self, vector: np.ndarray) -> dict[str, float]:
        """Fused score per route for an embedding."""
        return {r: float(c["score"]) for r, c in self.component_scores(vector).items()}  # type: ignore[arg-type]

    def score_matrix(self, vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
        """The numpy oracle: fused scores of many embeddings at once from every stored vector
        (route names, (N, R) scores). The same values as `scores_vector` row by row wherever
        that is exact (see the module docstring); tests check the two against each other."""
        st = self._oracle if self._oracle is not None else self._load_vectors()
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape[1] != st.matrix.shape[1]:
            raise ModelError(f"vectors must be (N, {st.matrix.shape[1]}), got {v.shape}")
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)  # (N, D)
        sims = v @ st.matrix.T  # (N, D) @ (D, P) -> (N, P)
        k = self.fusion.top_k
        n, r = v.shape[0], len(st.route_names)
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
        return list(st.route_names), out

    def scores(self, audio: Any) -> dict[str, float]:
        """Fused score per route for a clip."""
        return self.scores_vector(self.embed(audio))

    def decide(self, scores: Mapping[str, float]) -> tuple[str | None, float, float, str, list]:
        """(route or None, score, margin, nearest, candidates) from per-route scores, by the
        one decision rule (`voice_router.decision`)."""
        names = list(scores)
        row = np.array([[scores[n] for n in names]], dtype=np.float64)  # (1, R)
        default, by_name = self.routes.threshold, self._by_name
        thresholds = np.array(
            [default if (t := by_name[n].threshold) is None else t for n in names]
        )  # (R,) each route's own, else the set's (as RouteSet.route_threshold)
        pred, best, s1, gap = decide(row, names, thresholds, float(self.routes.margin))
        nearest = names[int(best[0])]
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        route = nearest if pred[0] >= 0 else None
        return route, float(s1[0]), float(gap[0]), nearest, ranked[: self.top_candidates]

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
        if self.slot_reader is not None:
            vec, frames = embed_audio_with_frames(self.model, clip)
        else:
            vec, frames = embed_audio_pooled(self.model, clip), None
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
        text, audio = self._route_components(vector, every_route=False)
        combine = self.fusion.combine
        scores = {n: combine(t, audio.get(n)) for n, t in text.items()}
        route, score, margin, nearest, cands = self.decide(scores)
        reason = None if route is not None else self._why_not(score, margin, nearest)
        t1 = time.perf_counter()
        reading = self.read_slots(frames, scores)
        if reading is not None:
            idx = self._route_index
            readable = np.array([n in self.slot_reader.readable for n in self._route_names])
            pred = np.array([-1 if route is None else idx[route]])  # (1,)
            got = overrule(pred, np.array([True]),
                           np.array([idx[reading.route] if reading.understood else -1]),
                           readable)[0]  # fmt: skip  # readable: (R,) routes with phrasings
            if got >= 0:
                route, reason = self._route_names[got], None
                score = float(scores.get(route, score))
            elif route is not None:
                route, reason = None, "not understood"
        t2 = time.perf_counter()
        m = RouteMatch(route=route, score=score, margin=margin, candidates=cands, nearest=nearest)
        m.reason = reason
        m.reading = None if reading is None else reading.to_dict()
        do_dispatch = self.dispatch if dispatch is None else dispatch
        if route is not None:
            r = self._by_name[route]
            m.tool = r.tool
            m.args = dict(r.args)
            if reading is not None and reading.understood and reading.route == route:
                conf = round(float(reading.confidence), 4)
                m.slots = {k: {"value": v, "confidence": conf} for k, v in reading.slots.items()}
                m.args.update(reading.slots)
            elif r.sentences:
                m.slots = self.resolve_slots(vector, route)
                m.args.update({name: s["value"] for name, s in m.slots.items()})
            if r.tool and do_dispatch and r.name in self.tool_problems:
                m.tool_error = self.tool_problems[r.name]
            elif r.tool and do_dispatch:
                tool = self.registry.resolve(r.tool, r.name)
                try:
                    out = invoke_tool(
                        tool, r.name, m.args, match=m.to_dict(), timeout_s=self.tool_timeout_s
                    )
                    m.tool_result, m.tool_error = out.result, out.error
                except ToolError as e:  # slot values the tool's args_schema refuses
                    m.tool_error = f"tool not called: {e}"
        t3 = time.perf_counter()
        m.latency_ms = {
            "search": (t1 - t0) * 1e3,
            "read": (t2 - t1) * 1e3,
            "dispatch": (t3 - t2) * 1e3,
            "total": (t3 - t0) * 1e3,
        }
        return m

    def speech(self, audio: Any) -> np.ndarray | None:
        """The clip as the router embeds it: decoded, then trimmed to its speech by the speech
        gate (None when the gate hears none; the whole clip when the gate is off)."""
        clip = self._decode(audio)
        return clip if self.speech_gate is None else self.speech_gate(clip)

    def embed_with_frames(self, audio: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """(embedding (D,), encoder frames or None) of a clip (no speech gate: see `speech`):
        the frames only when the slot stage is on and the model gives them."""
        clip = self._decode(audio)
        if self.slot_reader is None:
            return embed_audio_pooled(self.model, clip), None
        return embed_audio_with_frames(self.model, clip)

    def read_slots(self, frames: np.ndarray | None, scores: Mapping[str, float]) -> Any:
        """The slot stage's `Reading` of an utterance's `frames`, held to the phrasings of the
        best `slot_top_k` routes by `scores` that have them; None when it does not run (no
        frames, no slot stage, or none of those routes has phrasings)."""
        if frames is None or self.slot_reader is None:
            return None
        ranked = sorted(scores, key=lambda n: (-scores[n], n))
        top = [n for n in ranked[: self.slot_top_k] if n in self.slot_reader.readable]
        return self.slot_reader.read(frames, top) if top else None

    def _why_not(self, score: float, margin: float, nearest: str) -> str:
        """Why the embedding decision gave no route."""
        if not np.isfinite(score) or score < self.routes.route_threshold(nearest):
            return "below threshold"
        return "too close to the runner-up"

    def resolve_slots(self, vector: np.ndarray, route: str) -> dict[str, dict[str, Any]]:
        """The slot values of `route` heard in `vector`, scored one slot at a time.

        One Qdrant query returns the route's text points (filtered by route; every point up to
        MAX_SLOT_POINTS) with their payloads. For each slot, the template phrasings that carry it
        are candidates (they differ from one another in that slot only, the others being at
        their first value: voice_router.templates); the best one's value is the slot's value,
        its cosine the slot's score and its lead over the best phrasing with another value the
        margin. An optional slot that the best phrasing without it beats stays unset.
        """
        q = np.asarray(vector, dtype=np.float32).reshape(-1)  # (D,)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        n = self.index.counts().get((route, KIND_TEXT), 0)
        hits = self.index.query_payloads(q, {P_ROUTE: route, P_KIND: KIND_TEXT},
                                         min(n, MAX_SLOT_POINTS))  # fmt: skip
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

    def route_many(self, audios: Sequence[Any]) -> list[RouteMatch]:
        """Route several clips, one after another."""
        return [self.route(a) for a in audios]
