"""The slot stage measured: route and command accuracy, rejection and cost of the constrained
decoder, over how many routes it reads (top-k) and where "understood" starts (the confidence
threshold), with the threshold chosen on one half of the clips and reported on the other.

    python benchmarks/slot_reader_eval.py --routes ROUTES.yaml --data POSITIVES.csv \\
        [--negatives NEG.csv ...] [--top-k 1,3,5] [--json]

Every clip is embedded once (the router's own code: `Router.embed_with_frames`, Qdrant scores),
then read by the slot stage for each k (`Router.read_slots`, the beam search held to the best k
routes' phrasings), and decided by the router's one rule (`voice_router.decision.overrule`
through `voice_router.evaluate`). Positives are manifests whose rows name a route (and an
`args` column for command accuracy); negatives are clips where nothing should match (empty
label): non-speech, out-of-grammar speech.

Threshold: for each k, the DEV half (even rows of each manifest) picks the lowest threshold at
which at most `--max-false-accept` of its negatives are understood (fixed false accepts, most
recall); the TEST half (odd rows) is reported at that threshold. `--save-clips FILE` keeps
every clip's reading (route, confidence, phrasing) per k, to choose otherwise offline.
Latency: the read stage alone (the decoder), one thread, per clip, p50/p95 over every clip.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

THRESHOLDS = [round(-0.25 * i, 2) for i in range(1, 25)]  # -0.25 .. -6.0


def _clips(router: Any, rows: list, ks: list[int], progress: bool) -> dict[int, list]:
    """Per k: the ClipScores of `rows` with the slot stage's reading at confidence -inf
    (understood = a phrasing was completed), its confidence kept for the sweep."""
    from voice_router.audio.io import load_audio
    from voice_router.evaluate import SAMPLE_RATE, ClipScore, progress_bar

    out: dict[int, list] = {k: [] for k in ks}
    for row in progress_bar(rows, progress, "reading clips"):
        audio = load_audio(row.path, target_rate=SAMPLE_RATE)
        vector, frames = router.embed_with_frames((audio, SAMPLE_RATE))
        scores = router.scores_vector(vector)
        for k in ks:
            router.slots.top_k = k
            reading = router.read_slots(frames, scores)
            out[k].append(
                ClipScore(
                    row.display,
                    row.label,
                    {n: float(v) for n, v in scores.items()},
                    latency_ms=None if reading is None else reading.latency_ms,
                    duration_s=audio.size / SAMPLE_RATE,
                    expected_args=row.args,
                    slots=dict(reading.slots) if reading and reading.understood else None,
                    reading=None if reading is None else reading.to_dict(),
                )
            )
    return out


def _at(clips: list, threshold: float) -> list:
    """The clips as a reader with `min_confidence=threshold` would have read them."""
    out = []
    for c in clips:
        r = c.reading
        if r is None:
            out.append(c)
            continue
        conf = r["confidence"]
        ok = r["route"] is not None and conf is not None and conf >= threshold
        out.append(replace(c, reading={**r, "understood": ok}, slots=c.slots if ok else None))
    return out


def _confirm(clips: list, routes: Any) -> float | None:
    """Route accuracy of the other rule measured: the reading only CONFIRMS the embedding's
    decision (a route with phrasings matches when the reading understood that same route)
    instead of deciding among the top k."""
    from voice_router.decision import route_thresholds
    from voice_router.evaluate import ScoreTable

    names = [r.name for r in routes.routes]
    table = ScoreTable.from_clips(clips, names)
    if table.n == 0:
        return None
    pred = table.predict(route_thresholds(routes), float(routes.margin))
    if table.read is not None:
        from voice_router.decision import decide

        emb = decide(table.scores, names, route_thresholds(routes), float(routes.margin))[0]
        keep = ~table.read | ~table.readable[np.maximum(emb, 0)] | (emb < 0)
        pred = np.where(keep, emb, np.where(table.understood == emb, emb, -1))
    return round(float(np.mean(pred == table.expected)), 4)


def _metrics(pos: list, neg: list, routes: Any) -> dict[str, Any]:
    from voice_router.evaluate import evaluation_report

    rep = evaluation_report(pos, routes) if pos else {}
    fa = None
    if neg:
        neg_rep = evaluation_report(neg, routes)
        fa = neg_rep["false_accept_rate"]
    read = [c for c in pos + neg if c.reading is not None]
    understood_neg = sum(1 for c in neg if c.reading and c.reading["understood"])
    # positives whose reading gave the labelled route (at any confidence): how many the
    # threshold rejects (the cost of rejection on right readings)
    right = [c for c in pos if c.reading and c.reading["route"] == c.label]
    rejected = sum(1 for c in right if not c.reading["understood"])
    return {
        "n_pos": len(pos),
        "n_neg": len(neg),
        "route_accuracy": rep.get("accuracy"),
        "route_accuracy_confirm_only": _confirm(pos, routes) if pos else None,
        "top1_accuracy": rep.get("top1_accuracy"),
        "command_accuracy": rep.get("command_accuracy"),
        "false_accept_rate": fa,
        "negatives_understood": round(understood_neg / len(neg), 4) if neg else None,
        "right_readings_rejected": round(rejected / len(right), 4) if right else None,
        "read_share": round(len(read) / max(len(pos) + len(neg), 1), 4),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--routes", required=True, type=Path, help="routes YAML")
    ap.add_argument("--data", required=True, type=Path, nargs="+", help="positive manifest(s)")
    ap.add_argument("--negatives", type=Path, nargs="*", default=[], help="negative manifests")
    ap.add_argument("--limit", type=int, default=None, help="rows per negative manifest")
    ap.add_argument("--top-k", default="1,3,5", help="comma list of k [1,3,5]")
    ap.add_argument("--max-false-accept", type=float, default=0.01)
    ap.add_argument("--model", default="default")
    ap.add_argument("--index", default=None, help="Qdrant Edge folder [a temporary one]")
    ap.add_argument("--exemplar-voices", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--save-clips", type=Path, default=None, help="per-clip readings (JSON)")
    a = ap.parse_args(argv)
    os.environ.setdefault("VOICE_ROUTER_THREADS", "1")
    ks = [int(x) for x in a.top_k.split(",")]

    from voice_router.evaluate import read_manifest, spread_subset
    from voice_router.routes import load_routes
    from voice_router.routing import Router
    from voice_router.slot_reader import SlotReader

    routes = load_routes(a.routes)
    pos_rows = [r for d in a.data for r in read_manifest(d)]
    neg_rows = [r for d in a.negatives for r in spread_subset(read_manifest(d), a.limit)]
    with tempfile.TemporaryDirectory(prefix="vr-slotread-") as tmp:
        reader = SlotReader(routes, min_confidence=float("-inf"))
        router = Router(routes, model=a.model, index=a.index or str(Path(tmp) / "index"),
                        dispatch=False, exemplar_voices=a.exemplar_voices,
                        slot_reader=reader)  # fmt: skip
        try:
            pos = _clips(router, pos_rows, ks, progress=True)
            neg = _clips(router, neg_rows, ks, progress=True)
        finally:
            router.close()
    report: dict[str, Any] = {"routes": str(a.routes), "data": [str(d) for d in a.data],
                              "negatives": [str(d) for d in a.negatives], "per_k": {}}  # fmt: skip
    for k in ks:
        dev_p, test_p = pos[k][0::2], pos[k][1::2]
        dev_n, test_n = neg[k][0::2], neg[k][1::2]
        sweep = {t: _metrics(_at(dev_p, t), _at(dev_n, t), routes) for t in THRESHOLDS}
        # the lowest threshold (most readings kept) at which the dev negatives stay under
        # the false-accept budget: fixed false accepts, most recall (the positives' dev half
        # is too small to choose on)
        ok = [t for t, m in sweep.items()
              if m["negatives_understood"] is None
              or m["negatives_understood"] <= a.max_false_accept]  # fmt: skip
        chosen = min(ok, default=None)
        lat = [c.latency_ms for c in pos[k] + neg[k] if c.latency_ms is not None]
        confs = {
            name: [c.reading["confidence"] for c in group if c.reading
                   and c.reading["confidence"] is not None]
            for name, group in (("positives", pos[k]), ("negatives", neg[k]))
        }  # fmt: skip
        report["per_k"][k] = {
            "threshold": chosen,
            "dev": sweep.get(chosen) if chosen is not None else None,
            "test": _metrics(_at(test_p, chosen), _at(test_n, chosen), routes)
            if chosen is not None
            else None,
            "all_at_threshold": _metrics(_at(pos[k], chosen), _at(neg[k], chosen), routes)
            if chosen is not None
            else None,
            "all_without_threshold": _metrics(pos[k], neg[k], routes),
            "no_slot_stage": _metrics(
                [replace(c, reading=None, slots=None) for c in pos[k]],
                [replace(c, reading=None, slots=None) for c in neg[k]],
                routes,
            ),
            "read_ms": {
                "p50": round(float(np.percentile(lat, 50)), 2) if lat else None,
                "p95": round(float(np.percentile(lat, 95)), 2) if lat else None,
            },
            "confidence_median": {
                n: round(float(np.median(v)), 3) if v else None for n, v in confs.items()
            },
        }
        if not a.json:
            r = report["per_k"][k]
            print(f"k={k}: threshold {chosen}; test {r['test']}; read {r['read_ms']} ms",
                  file=sys.stderr)  # fmt: skip
    if a.save_clips:
        a.save_clips.write_text(json.dumps({
            k: [{"clip": c.display, "label": c.label, "args": c.expected_args,
                 "reading": c.reading} for c in pos[k] + neg[k]] for k in ks
        }, default=str))  # fmt: skip
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
