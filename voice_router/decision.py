"""The decision rule, once: from per-route scores to a route or no match.

A route's score fuses its text score (best cosine to its description and examples) with its
audio score (mean of the k best cosines to its spoken exemplars) as `Fusion` says; the router,
`eval`/`calibrate` and the training probes all fuse with it.

A clip goes to its best-scoring route when that score is at least the route's threshold and
its lead over the runner-up at least the set's margin; equal scores go to the alphabetically
first route name; with a single route the runner-up score is NO_RUNNER_UP (the lowest
cosine). The router (`voice_router.routing`, one clip) and evaluation and calibration
(`voice_router.evaluate`, thousands of clips at once) both call `top_two` / `decide` here, so
what `eval` measures is what `route` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from voice_router.errors import VoiceRouterError

if TYPE_CHECKING:
    from voice_router.routes import Route, RouteSet

#: With a single route there is no runner-up; its margin is measured against the lowest cosine.
NO_RUNNER_UP = -1.0

FUSION_MODES = ("weighted", "max", "text", "audio")


@dataclass(frozen=True)
class Fusion:
    """How a route's text score and audio-exemplar score combine into one.

    mode: "weighted" (w_text*text + w_audio*audio, weights normalised to sum 1), "max",
        "text" (ignore exemplars) or "audio" (exemplars only; text where a route has none).
    top_k: the audio score is the mean of the k best exemplar cosines.
    """

    # The fusion of a model that names none (a model folder's routing.json names its own: the
    # bundled default 0.4 / 0.6, chosen on held-out halves; `compact` 0.2 / 0.8; see
    # voice_router/model/routing_defaults.py). Equal weights were the bundled model's default
    # before it had one (voice_router/weights/whisper_tiny/README.md).
    mode: str = "weighted"
    w_text: float = 0.5
    w_audio: float = 0.5
    top_k: int = 3

    def __post_init__(self) -> None:
        if self.mode not in FUSION_MODES:
            raise VoiceRouterError(
                f"unknown fusion {self.mode!r}: use one of {', '.join(FUSION_MODES)}"
            )
        if self.w_text < 0 or self.w_audio < 0 or self.w_text + self.w_audio <= 0:
            raise VoiceRouterError("fusion weights must be >= 0 and not both 0")
        if self.top_k < 1:
            raise VoiceRouterError("fusion top_k must be >= 1")

    @classmethod
    def parse(cls, spec: str | Fusion | None) -> Fusion:
        """Parse "weighted", "weighted:0.3,0.7", "max", "text", "audio", optionally ";k=5"."""
        if spec is None:
            return cls()
        if isinstance(spec, Fusion):
            return spec
        text = spec.strip()
        top_k = 3
        if ";k=" in text:
            text, k = text.split(";k=", 1)
            try:
                top_k = int(k)
            except ValueError:
                raise VoiceRouterError(f"fusion {spec!r}: k must be an integer") from None
        mode, _, weights = text.partition(":")
        kw: dict[str, Any] = {"mode": mode.strip(), "top_k": top_k}
        if weights:
            try:
                wt, wa = (float(x) for x in weights.split(","))
            except ValueError:
                raise VoiceRouterError(
                    f"fusion {spec!r}: weights must look like weighted:0.3,0.7"
                ) from None
            kw.update(w_text=wt, w_audio=wa)
        return cls(**kw)

    def combine(self, text: float, audio: float | None) -> float:
        """The fused score of one route (audio None = the route has no exemplars)."""
        if audio is None or self.mode == "text":
            return text
        if self.mode == "audio":
            return audio
        if self.mode == "max":
            return max(text, audio)
        s = self.w_text + self.w_audio
        return (self.w_text * text + self.w_audio * audio) / s

    def combine_matrix(self, text: np.ndarray, audio: np.ndarray | None) -> np.ndarray:
        """`combine` for many clips and routes at once: text (N, R) and audio (N, R) scores,
        NaN (or `audio` None) where a route has no exemplars -> fused (N, R)."""
        t = np.asarray(text, dtype=np.float64)  # (N, R)
        if audio is None or self.mode == "text":
            return t
        a = np.asarray(audio, dtype=np.float64)  # (N, R)
        if self.mode == "audio":
            fused = a
        elif self.mode == "max":
            fused = np.maximum(t, a)
        else:
            fused = (self.w_text * t + self.w_audio * a) / (self.w_text + self.w_audio)
        return np.where(np.isnan(a), t, fused)

    def __str__(self) -> str:
        if self.mode == "weighted":
            return f"weighted:{self.w_text:g},{self.w_audio:g};k={self.top_k}"
        return f"{self.mode};k={self.top_k}"


def top_two(scores: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(best route index, best score, margin over the runner-up), each (N,), for scores
    (N, R) of routes `names`. A clip with no finite score gets margin -inf (it never matches);
    one with a single finite score, margin +inf (nothing to beat)."""
    n = scores.shape[0]
    if n == 0 or not names:
        empty = np.zeros(0)
        return empty.astype(np.int64), empty, empty
    by_name = np.array(sorted(range(len(names)), key=lambda i: names[i]))  # (R,)
    best = by_name[np.argmax(scores[:, by_name], axis=1)]  # (N,) first max by name
    s1 = scores[np.arange(n), best]  # (N,)
    if len(names) == 1:
        s2 = np.full(n, NO_RUNNER_UP)
    else:
        s2 = np.sort(scores, axis=1)[:, -2]  # (N,) runner-up
    fin1, fin2 = np.isfinite(s1), np.isfinite(s2)
    gap = np.full(n, -np.inf)  # (N,)
    both = fin1 & fin2
    gap[both] = s1[both] - s2[both]
    gap[fin1 & ~fin2] = np.inf
    return best, s1, gap


def route_thresholds(routes: RouteSet, chosen: Sequence[Route] | None = None) -> np.ndarray:
    """(R,) the threshold each of the `chosen` routes (default: every route of `routes`, in
    order) must reach: its own, else the set's (`RouteSet.route_threshold`). Routes, not
    names: the router passes the few among an utterance's hits without a search by name."""
    chosen = routes.routes if chosen is None else chosen
    return np.array([float(routes.route_threshold(r)) for r in chosen], dtype=np.float64)


def decide(
    scores: np.ndarray, names: Sequence[str], thresholds: np.ndarray, margin: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(predicted route index or -1, best index, best score, margin), each (N,), for scores
    (N, R), per-route thresholds (R,) and the set's margin."""
    best, s1, gap = top_two(scores, names)
    if best.size == 0:
        return best, best, s1, gap
    ok = np.isfinite(s1) & (s1 >= thresholds[best]) & (gap >= margin)
    return np.where(ok, best, -1), best, s1, gap


def overrule(
    pred: np.ndarray,
    read: np.ndarray,
    understood: np.ndarray,
    readable: np.ndarray,
    silent: np.ndarray | None = None,
) -> np.ndarray:
    """The slot stage's say over the embedding decision, per clip (one rule for the router and
    evaluation): where a reading was made (`read` (N,) bool), an understood phrasing's route
    (`understood` (N,) index, -1 when not understood) is the decision; a reading that
    understood nothing vetoes a decided route that has phrasings (`readable` (R,) bool): that
    speech fits none of them, so its tool must not run; and a reading that understood nothing
    and heard no speech (`silent` (N,) bool: Whisper's no-speech probability reached the
    reader's maximum) vetoes ANY decided route. Elsewhere `pred` (N,) stands."""
    out = np.asarray(pred).copy()
    read = np.asarray(read, dtype=bool)
    understood = np.asarray(understood)
    hit = read & (understood >= 0)
    out[hit] = understood[hit]
    decided = read & (understood < 0) & (out >= 0)
    veto = decided.copy()
    veto[decided] = np.asarray(readable, dtype=bool)[out[decided]]
    if silent is not None:
        veto |= decided & np.asarray(silent, dtype=bool)
    out[veto] = -1
    return out
