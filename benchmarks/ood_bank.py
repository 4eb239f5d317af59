"""An out-of-domain bank ("none of these" text points): does it lower false accepts without
costing recall? (issue #24 item 3)

    python benchmarks/ood_bank.py [--cache DIR] [--json OUT.json]

The bank: CLINC150's 1,200 out-of-scope sentences (../shared/data/text_intents/clinc150.csv,
intent `oos`), embedded by the model's text tower as route texts are. A clip whose nearest bank
sentence is at least as close as the decided route's best TEXT point (cosine + `slack`) would
get no route ("out of domain"). Measured on the sets and halves of
benchmarks/gate_variants.py, with the shipped speech gate and the router's decisions
(voice_router.evaluate.ScoreTable; Speech Commands calibrated on its calibration speakers):
accuracy and false accepts with and without the bank. Nothing in the router uses a bank: this
only measures whether one would help.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gate_variants import (  # noqa: E402
    DATA,
    MANIFESTS,
    REPO,
    Scorer,
    clip_scores,
    load_sets,
    make_variant,
)

SLACKS = (0.0, 0.05, 0.1)


def bank_texts() -> list[str]:
    """CLINC150's out-of-scope sentences."""
    with open(DATA / "text_intents" / "clinc150.csv", newline="") as f:
        return [r["text"] for r in csv.DictReader(f) if r["intent"] == "oos"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/gate_cache"))
    ap.add_argument("--index", type=Path, default=Path("/tmp/gate_cache/index"))
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    from voice_router.calibration import calibrated_routes, fit_calibration
    from voice_router.evaluate import ScoreTable, decision_metrics, route_thresholds
    from voice_router.model.base import embed_audio_pooled
    from voice_router.model.loader import load_model

    sets = load_sets(a.cache, 300)
    model = load_model("default")
    texts = bank_texts()
    bank = np.asarray(model.embed_text(texts), np.float32)  # (B, D)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    gate = make_variant(min_voiced_frac=0.3, short_s=1.5)  # the shipped gate
    plan = {
        "nonspeech": ("home", REPO / "routes" / "home.yaml", sets["nonspeech"]),
        "sc_test": ("sc", MANIFESTS / "speech_commands.yaml", sets["sc_test"]),
        "wake": ("wake", MANIFESTS / "wake_phrases.yaml",
                 [c for c in sets["wake"] if c.half == "report"]),
        "rhasspy": ("rhasspy", MANIFESTS / "rhasspy_en.yaml", sets["rhasspy"]),
        "ha": ("ha", MANIFESTS / "ha_commands_en.yaml", sets["ha"]),
    }  # fmt: skip
    out: dict[str, Any] = {"bank": f"clinc150 oos, {len(texts)} sentences", "sets": {}}
    for name, (_, routes_path, clips) in plan.items():
        scorer = Scorer(routes_path, model, a.index, a.cache)
        names = [r.name for r in scorer.routes.routes]
        scored = clip_scores(clips, gate, scorer)
        routes = scorer.routes
        if name == "sc_test":
            cal_table = ScoreTable.from_clips(clip_scores(sets["sc_calib"], gate, scorer), names)
            cal = fit_calibration(cal_table, route_thresholds(routes), float(routes.margin), 0.05)
            routes = calibrated_routes(routes, cal)
        # per clip: nearest bank sentence and each route's text score (no speech: none)
        ood = np.full(len(clips), -np.inf)  # (N,)
        text = np.full((len(clips), len(names)), np.inf)  # (N, R)
        for i, c in enumerate(clips):
            g = gate(c.audio, c.probs)
            if g is None:
                continue
            vec = np.asarray(embed_audio_pooled(model, g), np.float32)
            vec /= np.linalg.norm(vec)
            ood[i] = float(np.max(bank @ vec))
            comp = scorer.router.component_scores(vec)
            text[i] = [comp[n]["text"] for n in names]
        table = ScoreTable.from_clips(scored, names)
        pred = table.predict(route_thresholds(routes), float(routes.margin))  # (N,)
        res = {"without": _metrics(decision_metrics(table, pred))}
        for slack in SLACKS:
            p = pred.copy()
            has = p >= 0
            veto = np.zeros_like(has)
            veto[has] = ood[has] >= text[np.flatnonzero(has), p[has]] + slack
            p[veto] = -1
            res[f"bank_slack{slack:g}"] = _metrics(decision_metrics(table, p))
            res[f"bank_slack{slack:g}"]["vetoed"] = int(veto.sum())
        out["sets"][name] = res
        print(name, json.dumps(res), file=sys.stderr, flush=True)
        scorer.save()
    text_out = json.dumps(out, indent=2)
    if a.json:
        a.json.write_text(text_out)
    print(text_out)
    return 0


def _metrics(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m[k] for k in ("accuracy", "false_accept_rate", "false_accepts") if k in m}


if __name__ == "__main__":
    raise SystemExit(main())
