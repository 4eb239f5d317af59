"""Evaluate a compact model (or the untrained baseline) on REAL speech.

Datasets (../shared/data; evaluation only, never used in training):
  speech_commands  10 routes, one per word; "unknown" words are excluded from top-1 and
                   used to report false accepts at a threshold tuned on the other half
  wake_phrases     6 routes, one per phrase
  rhasspy          5 routes, intents described in plain words (training/compact.py)

Scoring modes: text (audio vs route text embedding), exemplar (mean of the top-3 cosines to
the route text spoken by 12 espeak-ng voices), centroid (cosine to the exemplar centroid),
fused (w * text + (1 - w) * exemplar; w tuned on one speaker half of speech_commands and
reported on the other half, and the reverse).

Usage:
    python scripts/eval_compact.py --baseline [--model FOLDER: with its clip normalisation]
    python scripts/eval_compact.py --model voice_router/weights/compact
    python scripts/eval_compact.py --run runs/compact --ckpt runs/compact/step003000.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.compact import (  # noqa: E402
    EvalSet,
    audio_path,
    build_eval_set,
    embed_frames,
    fuse,
    load_checkpoint,
    route_scores,
    speaker_halves,
    top1,
)

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def baseline_embed(frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Untrained: mean of the front-end frames over valid time, L2-normalised. (B, 96)"""
    mask = (torch.arange(frames.shape[1])[None] < lengths[:, None]).float().unsqueeze(-1)
    return F.normalize((frames * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1)


def threshold_for_far(
    scores: np.ndarray, es: EvalSet, mask: np.ndarray, far: float = 0.05
) -> float:
    """The lowest threshold at which at most `far` of the unknown clips in `mask` are accepted
    (their best route score >= threshold)."""
    unk = (np.array(es.labels) == "unknown") & mask
    best = np.sort(scores[unk].max(1))
    if best.size == 0:
        return float("nan")
    k = int(np.floor(far * best.size))
    return float(best[-k - 1] + 1e-6) if k < best.size else float(best[0])


def accept_stats(scores: np.ndarray, es: EvalSet, mask: np.ndarray, thr: float) -> dict:
    """At threshold `thr`: unknown false-accept rate, known correct-and-accepted rate."""
    labels = np.array(es.labels)
    best = scores.max(1)
    pred = np.array(es.routes)[scores.argmax(1)]
    unk = (labels == "unknown") & mask
    known = (labels != "unknown") & mask
    return {
        "far_unknown": float((best[unk] >= thr).mean()) if unk.any() else float("nan"),
        "correct_accepted": float(((best >= thr) & (pred == labels))[known].mean()),
    }


def score_stats(scores: np.ndarray, es: EvalSet) -> dict:
    """Score distribution: best score of correct / wrong / unknown clips, and the margin."""
    labels = np.array(es.labels)
    s = np.sort(scores, 1)
    best, margin = s[:, -1], s[:, -1] - s[:, -2]
    pred = np.array(es.routes)[scores.argmax(1)]
    out = {}
    for name, m in (
        ("correct", pred == labels),
        ("wrong", (pred != labels) & (labels != "unknown")),
        ("unknown", labels == "unknown"),
    ):
        if m.any():
            out[name] = {
                "best_p10_p50_p90": np.percentile(best[m], [10, 50, 90]).round(3).tolist(),
                "margin_p50": round(float(np.median(margin[m])), 3),
            }
    return out


def confusions(scores: np.ndarray, es: EvalSet, top: int = 6) -> tuple[dict, list]:
    """Per-route top-1 and the commonest (true, predicted, clips) errors, unknown excluded."""
    labels = np.array(es.labels)
    pred = np.array(es.routes)[scores.argmax(1)]
    per = {r: round(float((pred[labels == r] == r).mean()), 3) for r in es.routes}
    wrong = (labels != pred) & np.isin(labels, es.routes)
    pairs, counts = np.unique(np.stack([labels[wrong], pred[wrong]], 1), axis=0, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:top]
    return per, [[str(pairs[i][0]), str(pairs[i][1]), int(counts[i])] for i in order]


def evaluate(audio_embed, text_embed, names: list[str], normalizer=None) -> dict:  # noqa: ANN001
    """Every mode on every set; fusion weight and threshold tuned on speaker halves."""
    res: dict = {}
    for name in names:
        es = build_eval_set(name, normalizer=normalizer)
        sc = route_scores(es, audio_embed, text_embed)
        r = {m: round(top1(s, es), 4) for m, s in sc.items()}
        if "text" in sc:
            if name == "speech_commands":
                h0, h1 = speaker_halves(es)
                picks = []
                fused_acc = []
                for tune, test in ((h0, h1), (h1, h0)):
                    w = max(WEIGHTS, key=lambda w: top1(fuse(sc, w), es, tune))
                    picks.append(w)
                    fused_acc.append(top1(fuse(sc, w), es, test))
                r["fused_tuned_w"] = picks
                r["fused_heldout_half"] = [round(x, 4) for x in fused_acc]
                w = float(np.mean(picks))
                for mode, s in (
                    ("fused", fuse(sc, w)),
                    ("exemplar", sc["exemplar"]),
                    ("text", sc["text"]),
                ):
                    st = []
                    for tune, test in ((h0, h1), (h1, h0)):
                        thr = threshold_for_far(s, es, tune)
                        st.append(
                            {"threshold": round(thr, 4)}
                            | {k: round(v, 4) for k, v in accept_stats(s, es, test, thr).items()}
                        )
                    r[f"{mode}_far5_heldout"] = st
                r["score_stats_fused"] = score_stats(fuse(sc, w), es)
                r["per_route_fused"], r["top_confusions_fused"] = confusions(fuse(sc, w), es)
                r["score_stats_exemplar"] = score_stats(sc["exemplar"], es)
                r["score_stats_text"] = score_stats(sc["text"], es)
            for w in (0.3, 0.5, 0.7):
                r[f"fused_w{w}"] = round(top1(fuse(sc, w), es), 4)
        r["clips"] = int(np.isin(np.array(es.labels), es.routes).sum())
        res[name] = r
    return res


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints a JSON report."""
    p = argparse.ArgumentParser()
    p.add_argument("--baseline", action="store_true")
    p.add_argument("--model", help="saved model folder (config.json + model.safetensors)")
    p.add_argument("--run", help="training run folder (with config.json)")
    p.add_argument("--ckpt", help="checkpoint in the run (default last.pt)")
    p.add_argument("--sets", default="speech_commands,wake_phrases,rhasspy")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="also write the JSON here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    names = a.sets.split(",")
    if a.baseline:
        normalizer = None
        if a.model:  # the untrained baseline with that model's clip normalisation
            from voice_router.model.embedder import load_embedder

            normalizer = load_embedder(a.model).normalizer
        res = evaluate(baseline_embed, None, names, normalizer)
    else:
        if a.model:
            from voice_router.model.embedder import load_embedder

            model = load_embedder(a.model)
        else:
            run = Path(a.run)
            config = json.loads((run / "config.json").read_text())
            model = load_checkpoint(a.ckpt or run / "last.pt", config)
        path = audio_path(model) if a.model else config.get("audio_path", "backbone")

        def a_emb(f: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
            return embed_frames(model, f, n, path)

        def t_emb(texts: list[str]) -> np.ndarray:
            with torch.inference_mode():
                return model.encode_text(texts).float().numpy()

        res = evaluate(a_emb, t_emb, names, getattr(model, "normalizer", None))
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
