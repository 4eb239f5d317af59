"""Fit a model's default decision threshold (and margin) for routes files that give none:
scored on dev halves of real sets with negatives, written into the model folder's routing.json.

    python scripts/fit_routing_defaults.py [--model default] [--write]

Sets (each its routes file under benchmarks/manifests, its clips' DEV half only: the
calibration speakers of Speech Commands, even rows elsewhere; the other halves stay for
testing): Speech Commands (unknown words are negatives), Rhasspy, wake phrases, Home Assistant
with one plain sentence per intent (its 4 unrelated sentences are negatives), and real
non-speech (../shared/data/nonspeech_dev, even rows) through every one of those routes files.
Each clip is scored once through the router (speech gate, Qdrant, slot stage); the sweep then
decides with one threshold for every route of every set (the routes files' own thresholds are
ignored) and the set's margin, by the router's rule (`ScoreTable.predict`).

Rule (fixed before looking): the lowest threshold at which non-speech triggers <= 1% and
negatives of speech (unknown words, unrelated sentences) <= 5%, pooled over the sets; among
the margins 0.0 / 0.01 / 0.02 / 0.05, the one with the best mean accuracy at that threshold.
Prints the chosen row (every set's accuracy and false accepts there); `--out` saves the sweep.

Measured for the bundled model (README, "Default thresholds"): the rule lands on 0.70, where
Rhasspy and Home Assistant match almost nothing, because single-word routes score unknown
words and noise higher than multi-word routes score right commands; no default was written.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

for var in ("VOICE_ROUTER_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
M = REPO / "benchmarks" / "manifests"
DATA = REPO.parent / "shared" / "data"
SETS = {
    "speech_commands": (M / "speech_commands.yaml", M / "speech_commands_calib.csv", "all"),
    "rhasspy": (M / "rhasspy_en.yaml", DATA / "rhasspy_en" / "manifest.csv", "even"),
    "wake_phrases": (M / "wake_phrases.yaml", DATA / "wake_phrases" / "manifest.csv", "even"),
    "home_assistant": (
        M / "ha_commands_plain.yaml",
        DATA / "ha_commands_en" / "manifest.csv",
        "even",
    ),  # fmt: skip
}
NONSPEECH = DATA / "nonspeech_dev" / "manifest.csv"
THRESHOLDS = [round(0.30 + 0.01 * i, 2) for i in range(51)]  # 0.30 .. 0.80
MARGINS = [0.0, 0.01, 0.02, 0.05]


def _score(routes_path: Path, rows: list, model: str, index: Path) -> list:
    from voice_router.evaluate import score_clips
    from voice_router.routes import load_routes
    from voice_router.routing import Router

    router = Router(load_routes(routes_path), model=model, index=str(index), dispatch=False)
    try:
        return score_clips(router, rows, progress=True)
    finally:
        router.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--write", action="store_true", help="write the fit into routing.json")
    ap.add_argument("--out", type=Path, default=None, help="also save the sweep as JSON here")
    a = ap.parse_args(argv)
    from voice_router.evaluate import ScoreTable, read_manifest
    from voice_router.routes import load_routes

    nonspeech = read_manifest(NONSPEECH)[0::2]
    tables: dict[str, tuple] = {}
    with tempfile.TemporaryDirectory(prefix="vr-fit-") as tmp:
        for name, (routes_path, manifest, half) in SETS.items():
            rows = read_manifest(manifest)
            rows = rows if half == "all" else rows[0::2]
            names = [r.name for r in load_routes(routes_path).routes]
            clips = _score(routes_path, rows + nonspeech, a.model, Path(tmp) / name)
            speech = ScoreTable.from_clips(clips[: len(rows)], names)
            noise = ScoreTable.from_clips(clips[len(rows) :], names)
            tables[name] = (speech, noise, len(names))
    sweep = []
    for m in MARGINS:
        for t in THRESHOLDS:
            row = {"threshold": t, "margin": m, "sets": {}}
            fa_speech_n = fa_speech_k = fa_noise_n = fa_noise_k = 0
            accs = []
            for name, (speech, noise, r) in tables.items():
                th = np.full(r, t)
                p = speech.predict(th, m)
                pos = speech.expected >= 0
                acc = float(np.mean(p[pos] == speech.expected[pos])) if pos.any() else None
                fa_s = int(np.sum(p[~pos] >= 0))
                fa_n = int(np.sum(noise.predict(th, m) >= 0))
                fa_speech_n += int((~pos).sum())
                fa_speech_k += fa_s
                fa_noise_n += noise.n
                fa_noise_k += fa_n
                accs.append(acc)
                row["sets"][name] = {"accuracy": acc, "speech_false_accepts": fa_s,
                                     "speech_negatives": int((~pos).sum()),
                                     "nonspeech_triggers": fa_n, "nonspeech": noise.n}  # fmt: skip
            row["mean_accuracy"] = float(np.mean([x for x in accs if x is not None]))
            row["speech_fa_rate"] = fa_speech_k / max(fa_speech_n, 1)
            row["nonspeech_trigger_rate"] = fa_noise_k / max(fa_noise_n, 1)
            sweep.append(row)
    ok = [r for r in sweep if r["nonspeech_trigger_rate"] <= 0.01 and r["speech_fa_rate"] <= 0.05]
    if not ok:
        print("no threshold meets the false-accept rule")
        return 1
    t_best = min(r["threshold"] for r in ok)
    at_t = [r for r in ok if r["threshold"] == t_best]
    best = max(at_t, key=lambda r: (r["mean_accuracy"], -r["margin"]))
    print(json.dumps(best, indent=2))
    if a.out:
        a.out.write_text(json.dumps(sweep, indent=1))
    if a.write:
        from voice_router.model.catalog import FOLDERS
        from voice_router.model.routing_defaults import write_decision_defaults

        folder = FOLDERS.get(a.model, Path(a.model))
        path = write_decision_defaults(
            folder,
            threshold=best["threshold"],
            margin=best["margin"],
            chosen_on="scripts/fit_routing_defaults.py: lowest threshold with non-speech <= 1% "
            "and speech negatives <= 5% on the dev halves of Speech Commands, Rhasspy, wake "
            "phrases, Home Assistant plain and nonspeech_dev; margin by mean accuracy there",
        )
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
