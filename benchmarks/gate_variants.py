"""Speech-gate variants side by side: what each stops, what it trims, and what routing costs.

    python benchmarks/gate_variants.py [--cache DIR] [--wake-limit 300] [--json OUT.json]

Why: the gate (voice_router/audio/gate.py) both DECIDES (speech or not) and TRIMS (the clip is
cut to its utterances before embedding). Trimming lifted the multi-word sets and cost Speech
Commands (calibrated accuracy 0.904 -> 0.867 on 150 clips, false accepts 0 -> 0.133), and 12 of
203 real non-speech clips still triggered a route of routes/home.yaml. This script measures,
for every variant in VARIANTS, in one run on the same clips:

- nonspeech_dev through routes/home.yaml (speech gate + slot stage, as `voice-router eval`):
  the fraction that triggers a route, on the FIT half and on the REPORT half (the halves split
  ESC-50 source recordings, so the A/B takes of one recording stay in one half);
- Speech Commands: `calibrate` on speech_commands_calib.csv, then accuracy and false accepts on
  the speaker-disjoint speech_commands_test.csv (the run_all.py protocol);
- wake phrases, Rhasspy and the Home Assistant commands (their default thresholds): accuracy,
  top-1 and false accepts; Home Assistant's 4 unrelated sentences are its false accepts.

Silero's speech probability of every 32 ms frame is computed ONCE per clip (the same energy
floor and model state as the gate) and cached; each variant is then a rule on those
probabilities, replayed through the gate's own segmenter (`voice_router.audio.gate`). Each
distinct gated clip is embedded and scored once per routes file (cached by its samples).
Decisions: voice_router.evaluate (ScoreTable, the router's one rule) and
voice_router.calibration.fit_calibration, as `eval` and `calibrate` run them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # this checkout's voice_router, not an installed one
    sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
MANIFESTS = REPO / "benchmarks" / "manifests"
SR = 16000


# --------------------------------------------------------------------------------------------
# frame probabilities, once per clip


def frame_probs(clip: np.ndarray, model: Any) -> np.ndarray:
    """(F,) Silero speech probability of each 512-sample frame, exactly as the gate's segmenter
    computes them (energy floor -> 0 without running the model; model state reset per clip)."""
    from voice_router.audio.vad import FRAME, UtteranceSegmenter

    seg = UtteranceSegmenter(model=model)
    n = len(clip) // FRAME
    out = np.zeros(n, np.float32)
    for i in range(n):
        out[i] = seg.speech_prob(np.ascontiguousarray(clip[i * FRAME : (i + 1) * FRAME]))
    return out


def _replay_segmenter(probs: np.ndarray, **seg_kw: Any) -> Any:
    """The gate's segmenter, reading each frame's probability from `probs` (by position: the
    live segmenter skips the model on frames under its energy floor, cached there as 0)."""
    from voice_router.audio.vad import FRAME, UtteranceSegmenter

    class Replay(UtteranceSegmenter):
        def speech_prob(self, frame: np.ndarray) -> float:
            i = self._pos // FRAME
            return float(probs[i]) if i < len(probs) else 0.0

    return Replay(model=object(), **seg_kw)


# --------------------------------------------------------------------------------------------
# sets


@dataclass
class Clip:
    set: str
    path: Path
    display: str
    label: str
    half: str  # "fit" or "report"
    audio: np.ndarray
    probs: np.ndarray


def _esc_source(display: str) -> str:
    """ESC-50 file name fold-source-take-class: the source recording (fold-source)."""
    stem = Path(display).stem.split("-")
    return "-".join(stem[:2])


def load_sets(cache: Path, wake_limit: int | None) -> dict[str, list[Clip]]:
    """Every clip of the measured sets, with its half and its cached frame probabilities."""
    from voice_router.audio.io import load_audio
    from voice_router.audio.vad import load_vad_model
    from voice_router.evaluate import read_manifest, spread_subset

    specs = {
        "nonspeech": (DATA / "nonspeech_dev" / "manifest.csv", None),
        "sc_calib": (MANIFESTS / "speech_commands_calib.csv", None),
        "sc_test": (MANIFESTS / "speech_commands_test.csv", None),
        "wake": (DATA / "wake_phrases" / "manifest.csv", wake_limit),
        "rhasspy": (DATA / "rhasspy_en" / "manifest.csv", None),
        "ha": (DATA / "ha_commands_en" / "manifest.csv", None),
    }
    vad = None
    out: dict[str, list[Clip]] = {}
    for name, (manifest, limit) in specs.items():
        pfile = cache / f"probs_{name}_{limit}.pkl"
        cached = pickle.loads(pfile.read_bytes()) if pfile.exists() else {}
        rows = spread_subset(read_manifest(manifest), limit)
        clips = []
        if name == "nonspeech":  # alternate source recordings within each class
            by_class: dict[str, list[str]] = {}
            for r in rows:
                src = _esc_source(r.display)
                lst = by_class.setdefault(Path(r.display).parts[0], [])
                if src not in lst:
                    lst.append(src)
            fit_src = {s for lst in by_class.values() for s in sorted(lst)[0::2]}
        for i, r in enumerate(rows):
            audio = load_audio(r.path, target_rate=SR)
            if r.display not in cached:
                vad = vad or load_vad_model()
                cached[r.display] = frame_probs(audio, vad)
            if name == "nonspeech":
                half = "fit" if _esc_source(r.display) in fit_src else "report"
            elif name in ("sc_calib",):
                half = "fit"
            elif name == "wake":
                half = "fit" if i % 2 == 0 else "report"
            else:
                half = "report"
            clips.append(Clip(name, r.path, r.display, r.label, half, audio, cached[r.display]))
        pfile.write_bytes(pickle.dumps(cached))
        out[name] = clips
        print(f"{name}: {len(clips)} clips", file=sys.stderr, flush=True)
    return out


# --------------------------------------------------------------------------------------------
# variants: (clip, probs) -> the audio to embed, or None (no speech)

Gate = Callable[[np.ndarray, np.ndarray], "np.ndarray | None"]


def utterances(probs: np.ndarray, clip: np.ndarray, **seg_kw: Any) -> list[Any]:
    """The gate segmenter's utterances of `clip` with cached `probs`."""
    seg = _replay_segmenter(probs, **seg_kw)
    return seg.feed(clip) + seg.flush()


def make_variant(
    *,
    threshold: float = 0.5,
    min_ms: float = 100.0,
    audio: str = "trim",
    pad_ms: float = 0.0,
    short_s: float = 0.0,
    min_peak: float = 0.0,
    min_voiced_ms: float = 0.0,
    min_voiced_frac: float = 0.0,
) -> Gate:
    """A gate rule: Silero `threshold` / `min_ms` as the segmenter; then optional decision
    rules on the utterances (`min_peak`: some frame of speech reaches this probability;
    `min_voiced_ms`: frames >= threshold add up to this much; `min_voiced_frac`: of the
    detected speech span, this fraction is voiced); then what is embedded: "trim" (the
    utterances joined, each padded by `pad_ms` more on both sides), "edges" (first utterance's
    start to last's end, gaps kept, padded by pad_ms), "decide" (the whole clip); clips
    shorter than `short_s` are embedded whole."""
    from voice_router.audio.vad import FRAME

    def gate(clip: np.ndarray, probs: np.ndarray) -> np.ndarray | None:
        utts = utterances(probs, clip, threshold=threshold, min_ms=min_ms)
        if not utts:
            return None
        start_f = min(u.start for u in utts) // FRAME
        end_f = max(u.end for u in utts) // FRAME
        span = probs[start_f : max(end_f, start_f + 1)]
        if min_peak and float(span.max(initial=0.0)) < min_peak:
            return None
        voiced = int(np.sum(span >= threshold))
        if min_voiced_ms and voiced * FRAME * 1000 / SR < min_voiced_ms:
            return None
        if min_voiced_frac and voiced / max(1, len(span)) < min_voiced_frac:
            return None
        if audio == "decide" or len(clip) <= short_s * SR:
            return clip
        pad = int(pad_ms * SR / 1000)
        if audio == "edges":
            a = max(0, min(u.audio_start for u in utts) - pad)
            b = min(len(clip), max(u.audio_end for u in utts) + pad)
            return clip[a:b]
        if pad == 0:
            return np.concatenate([u.audio for u in utts]).astype(np.float32, copy=False)
        spans: list[list[int]] = []
        for u in utts:
            a, b = max(0, u.audio_start - pad), min(len(clip), u.audio_end + pad)
            if spans and a <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], b)
            else:
                spans.append([a, b])
        return np.concatenate([clip[a:b] for a, b in spans]).astype(np.float32, copy=False)

    return gate


# --------------------------------------------------------------------------------------------
# scoring, cached per (routes file, gated samples)


class Scorer:
    """Scores of gated clips under one routes file (the router with its own gate off)."""

    def __init__(self, routes_path: Path, model: Any, index: Path, cache: Path) -> None:
        from voice_router.routes import load_routes
        from voice_router.routing import Router

        self.routes_path = routes_path
        self.router = Router(
            load_routes(routes_path),
            model=model,
            index=str(index),
            dispatch=False,
            strict_tools=False,
            speech_gate=False,
        )
        self.routes = self.router.routes
        reader = self.router.slot_reader  # its verdicts ride in the cached readings
        tag = "" if reader is None else f"_ns{reader.max_no_speech:g}_c{reader.min_confidence:g}"
        self.file = cache / f"scores_{routes_path.stem}{tag}.pkl"
        self.memo: dict[str, Any] = (
            pickle.loads(self.file.read_bytes()) if self.file.exists() else {}
        )
        self.new = 0

    def __call__(self, audio: np.ndarray) -> tuple[dict[str, float], dict[str, Any] | None]:
        key = hashlib.sha1(np.ascontiguousarray(audio, dtype=np.float32).tobytes()).hexdigest()
        if key not in self.memo:
            vec, frames = self.router.embed_with_frames((audio, SR))
            scores = self.router.scores_vector(vec)
            reading = self.router.read_slots(frames, scores)
            self.memo[key] = (
                {k: float(v) for k, v in scores.items()},
                None if reading is None else reading.to_dict(),
            )
            self.new += 1
            if self.new % 200 == 0:
                self.save()
        return self.memo[key]

    def save(self) -> None:
        self.file.write_bytes(pickle.dumps(self.memo))


class NoSpeech:
    """Whisper's no-speech probability of gated clips (the slot stage's first decoder step,
    `voice_router.slot_reader`), for every set: routes files without `sentences:` have no
    reading, yet what the check would cost on their speech is measured here. Cached by samples.
    """

    def __init__(self, model: Any, cache: Path) -> None:
        from voice_router.model.whisper_decoder import WhisperDecoder, WhisperTokenizer

        self.model, self.dec, self.tok = model, WhisperDecoder.load(), WhisperTokenizer()
        self.file = cache / "no_speech.pkl"
        self.memo: dict[str, float] = (
            pickle.loads(self.file.read_bytes()) if self.file.exists() else {}
        )

    def __call__(self, audio: np.ndarray) -> float:
        from voice_router.model.base import embed_audio_with_frames

        key = hashlib.sha1(np.ascontiguousarray(audio, dtype=np.float32).tobytes()).hexdigest()
        if key not in self.memo:
            _, frames = embed_audio_with_frames(self.model, audio)
            lp, _ = self.dec.next_log_probs(
                np.array([[self.tok.sot]], dtype=np.int64), self.dec.cross(frames)
            )
            self.memo[key] = float(np.exp(lp[0, self.tok.no_speech]))
        return self.memo[key]

    def save(self) -> None:
        self.file.write_bytes(pickle.dumps(self.memo))


def no_speech_table(
    gate: Gate, sets: dict[str, list[Clip]], ns: NoSpeech, limits: tuple[float, ...]
) -> dict[str, Any]:
    """Per set and half: clips through the gate, and how many of them reach each no-speech
    limit (for speech sets: what a no-speech veto at that limit would cost; for nonspeech: what
    it would stop). Speech Commands splits its target words from its unknown words."""
    out: dict[str, Any] = {}
    for name, clips in sets.items():
        groups: dict[str, list[float]] = {}
        for c in clips:
            g = gate(c.audio, c.probs)
            if g is None:
                continue
            key = f"{name}_{c.half}"
            if name.startswith("sc_"):
                key += "_unknown" if c.label == "unknown" else "_words"
            groups.setdefault(key, []).append(ns(g))
        for key, vals in groups.items():
            v = np.asarray(vals)
            out[key] = {"passed_gate": len(v), **{f">={t:g}": int(np.sum(v >= t)) for t in limits}}
    ns.save()
    return out


def clip_scores(clips: list[Clip], gate: Gate, scorer: Scorer) -> list[Any]:
    """ClipScore of each clip as `eval` records it with this gate (no speech: no scores)."""
    from voice_router.evaluate import ClipScore

    out = []
    for c in clips:
        g = gate(c.audio, c.probs)
        if g is None:
            out.append(ClipScore(c.display, c.label, {}, duration_s=len(c.audio) / SR))
            continue
        scores, reading = scorer(g)
        out.append(ClipScore(c.display, c.label, scores, duration_s=len(g) / SR, reading=reading))
    return out


#: Whisper no-speech limits tried (the slot reader's max_no_speech; 1 = off).
NO_SPEECH_LIMITS = (0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 1.0)


def _with_no_speech_limit(clips: list[Any], limit: float) -> list[Any]:
    """The clips as a reader with max_no_speech=`limit` would have read them."""
    from dataclasses import replace

    out = []
    for c in clips:
        if c.reading is not None and c.reading.get("no_speech") is not None:
            reading = {**c.reading, "speech": c.reading["no_speech"] < limit}
            c = replace(c, reading=reading)
        out.append(c)
    return out


def _report(clips: list[Any], routes: Any) -> dict[str, Any]:
    from voice_router.evaluate import evaluation_report

    r = evaluation_report(clips, routes)
    keep = ("n", "accuracy", "top1_accuracy", "false_accept_rate", "false_accepts")
    out = {k: r[k] for k in keep}
    out["triggered"] = [
        (f["path"], f["predicted"]) for f in r["failures"] if f["predicted"] != "(none)"
    ] if r["n_expect_route"] == 0 else None  # fmt: skip
    return out


def measure(
    name: str, gate: Gate, sets: dict[str, list[Clip]], scorers: dict[str, Scorer]
) -> dict[str, Any]:
    """Every figure of one variant."""
    from voice_router.calibration import fit_calibration
    from voice_router.evaluate import ScoreTable, route_thresholds

    res: dict[str, Any] = {"variant": name}
    ns = sets["nonspeech"]
    passed = {c.display for c in ns if gate(c.audio, c.probs) is not None}
    for half in ("fit", "report"):
        part = [c for c in ns if c.half == half]
        scored = clip_scores(part, gate, scorers["home"])
        r = _report(scored, scorers["home"].routes)
        r["passed_gate"] = sum(c.display in passed for c in part)
        r["triggered_by_no_speech_limit"] = {
            f"{t:g}": _report(_with_no_speech_limit(scored, t), scorers["home"].routes)[
                "false_accepts"
            ]
            for t in NO_SPEECH_LIMITS
        }
        res[f"nonspeech_{half}"] = r
    sc = scorers["sc"]
    cal_clips = clip_scores(sets["sc_calib"], gate, sc)
    names = [r.name for r in sc.routes.routes]
    table = ScoreTable.from_clips(cal_clips, names)
    cal = fit_calibration(table, route_thresholds(sc.routes), float(sc.routes.margin), 0.05)
    from voice_router.calibration import calibrated_routes

    cal_routes = calibrated_routes(sc.routes, cal)
    test = clip_scores(sets["sc_test"], gate, sc)
    res["sc_test"] = _report(test, cal_routes)
    res["sc_test"]["gate_stopped"] = sum(1 for c in test if c.scores == {})
    for key, sname in (("wake", "wake"), ("rhasspy", "rhasspy"), ("ha", "ha")):
        clips = sets[key] if key != "wake" else [c for c in sets[key] if c.half == "report"]
        cs = clip_scores(clips, gate, scorers[sname])
        res[key] = _report(cs, scorers[sname].routes)
        res[key]["gate_stopped"] = sum(1 for c in cs if c.scores == {})
    return res


VARIANTS: dict[str, dict[str, Any]] = {
    "off": {},  # placeholder: no gate at all (handled in main)
    "trim": {},
    "decide": {"audio": "decide"},
    "trim_pad200": {"pad_ms": 200},
    "trim_pad400": {"pad_ms": 400},
    "edges": {"audio": "edges"},
    "edges_pad200": {"audio": "edges", "pad_ms": 200},
    "trim_short1.5": {"short_s": 1.5},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/gate_cache"))
    ap.add_argument("--index", type=Path, default=Path("/tmp/gate_cache/index"))
    ap.add_argument("--wake-limit", type=int, default=300)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names")
    ap.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help='another variant: name={"min_peak": 0.9, ...} (make_variant kwargs)',
    )
    ap.add_argument("--probs-only", action="store_true")
    ap.add_argument(
        "--no-speech",
        default=None,
        metavar="VARIANT",
        help="also: Whisper's no-speech probability of every clip under VARIANT",
    )
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    a.cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sets = load_sets(a.cache, a.wake_limit)
    if a.probs_only:
        return 0
    from voice_router.model.loader import load_model

    model = load_model("default")
    scorers = {
        "home": Scorer(REPO / "routes" / "home.yaml", model, a.index, a.cache),
        "sc": Scorer(MANIFESTS / "speech_commands.yaml", model, a.index, a.cache),
        "wake": Scorer(MANIFESTS / "wake_phrases.yaml", model, a.index, a.cache),
        "rhasspy": Scorer(MANIFESTS / "rhasspy_en.yaml", model, a.index, a.cache),
        "ha": Scorer(MANIFESTS / "ha_commands_en.yaml", model, a.index, a.cache),
    }
    variants = {n: VARIANTS[n] for n in a.variants.split(",") if n}
    for spec in a.extra:
        n, _, kw = spec.partition("=")
        variants[n] = json.loads(kw)
    results = []
    for name, kw in variants.items():
        gate: Gate = (lambda clip, probs: clip) if name == "off" else make_variant(**kw)
        r = measure(name, gate, sets, scorers)
        r["params"] = kw
        results.append(r)
        for s in scorers.values():
            s.save()
        print(_line(r), file=sys.stderr, flush=True)
    extra: dict[str, Any] = {}
    if a.no_speech:
        kw = variants.get(a.no_speech, VARIANTS.get(a.no_speech, {}))
        ns = NoSpeech(model, a.cache)
        table = no_speech_table(make_variant(**kw), sets, ns, NO_SPEECH_LIMITS)
        extra["no_speech"] = {"variant": a.no_speech, "table": table}
        print(json.dumps(extra["no_speech"], indent=1), file=sys.stderr)
    out = {
        "results": results,
        **extra,
        "wall_s": round(time.perf_counter() - t0, 1),
        "command": "python benchmarks/gate_variants.py " + " ".join(argv or sys.argv[1:]),
    }
    text = json.dumps(out, indent=2)
    if a.json:
        a.json.write_text(text)
    print(table_md(results))
    return 0


def _line(r: dict[str, Any]) -> str:
    return f"{r['variant']}: " + table_md([r]).splitlines()[-1]


def _f(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def table_md(results: list[dict[str, Any]]) -> str:
    """Markdown: one row a variant."""
    lines = [
        "| variant | nonspeech fit / report triggered | SC test acc / FA | wake acc | "
        "rhasspy acc | HA acc / top-1 / FA |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        nf, nr = r["nonspeech_fit"], r["nonspeech_report"]
        lines.append(
            f"| {r['variant']} | {nf['false_accepts']}/{nf['n']} ({_f(nf['false_accept_rate'])})"
            f" / {nr['false_accepts']}/{nr['n']} ({_f(nr['false_accept_rate'])}) | "
            f"{_f(r['sc_test']['accuracy'])} / {_f(r['sc_test']['false_accept_rate'])} | "
            f"{_f(r['wake']['accuracy'])} | {_f(r['rhasspy']['accuracy'])} | "
            f"{_f(r['ha']['accuracy'])} / {_f(r['ha']['top1_accuracy'])} / "
            f"{_f(r['ha']['false_accept_rate'])} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
