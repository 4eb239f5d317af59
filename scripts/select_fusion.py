"""Choose a checkpoint and its fusion weight on the DEV halves, by a rule fixed in advance.

Reads `scripts/eval_speech.py --split dev --exemplars --weights ...` JSONs (one per candidate,
named CANDIDATE.json) and applies:
1. a candidate's weight w* maximises the mean fused top-1 over the routing sets of the dev split
   (Speech Commands calibration speakers, wake-phrase half, Rhasspy half); ties go to the weight
   nearest 0.5 (the router's default);
2. candidates are ranked by the mean of those three at w* and speechocean762's dev-half cvR@5
   (zero-shot audio<->text on multi-word sentences, which fusion does not touch).
With --test (the same candidates' `--split test` JSONs) it also prints each candidate's test
figures at its w* and at w = 0.5, for the ship / do-not-ship call, which is not made here.

Usage:
    python scripts/select_fusion.py benchmarks/results/fusion/dev \\
        --test benchmarks/results/fusion/test
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROUTING_SETS = ("speech_commands", "wake_phrases", "rhasspy")


def weights_of(res: dict) -> list[float]:
    """The fused weights a probe JSON holds, ascending."""
    keys = res["speech_commands"]
    return sorted(
        float(k.removeprefix("top1_fused_w")) for k in keys if k.startswith("top1_fused_w")
    )


def fused(res: dict, name: str, w: float) -> float:
    return float(res[name][f"top1_fused_w{w:g}"])


def choose_weight(res: dict) -> tuple[float, float]:
    """(w*, mean dev routing top-1 at w*) by rule 1."""
    mean = {w: sum(fused(res, s, w) for s in ROUTING_SETS) / len(ROUTING_SETS)
            for w in weights_of(res)}  # fmt: skip
    best = max(mean, key=lambda w: (round(mean[w], 6), -abs(w - 0.5)))
    return best, mean[best]


def rank(dev: dict[str, dict]) -> list[dict]:
    """Every candidate with its w*, dev figures and rule-2 score, best first."""
    rows = []
    for name, res in dev.items():
        w, route = choose_weight(res)
        cv = float(res["so762_test"]["cvR@5"])
        row = {"candidate": name, "w": w, **{s: fused(res, s, w) for s in ROUTING_SETS}}
        row.update({"so762_cvR@5": cv, "score": (route * len(ROUTING_SETS) + cv) / 4})
        rows.append(row)
    return sorted(rows, key=lambda r: -r["score"])


def load_dir(folder: Path) -> dict[str, dict]:
    out = {}
    for p in sorted(folder.glob("*.json")):
        try:
            out[p.stem] = json.loads(p.read_text())
        except ValueError as e:
            msg = f"{p}: not a probe JSON ({e}); write it again with scripts/eval_speech.py"
            raise SystemExit(msg) from None
    if not out:
        raise SystemExit(f"{folder}: no probe JSONs (write them with scripts/eval_speech.py)")
    return out


TEST_COLS = ("speech_commands", "wake_phrases", "rhasspy", "ha_commands", "ha_plain")


def test_row(res: dict, w: float) -> list[float]:
    return [fused(res, s, w) for s in TEST_COLS] + [float(res["so762_test"]["cvR@5"])]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("dev", type=Path, help="folder of --split dev probe JSONs")
    ap.add_argument("--test", type=Path, help="folder of --split test probe JSONs")
    args = ap.parse_args(argv)
    rows = rank(load_dir(args.dev))
    cols = ["w", *ROUTING_SETS, "so762_cvR@5", "score"]
    print("DEV (rule 1 picks w, rule 2 ranks)")
    print(f"{'candidate':<16}" + "".join(f"{c[:14]:>15}" for c in cols))
    for r in rows:
        print(f"{r['candidate']:<16}" + "".join(f"{r[c]:>15.4f}" for c in cols))
    if args.test:
        test = load_dir(args.test)
        print("\nTEST (at the dev-chosen w*, then at w = 0.5)")
        head = [*TEST_COLS, "so762_cvR@5", "mean"]
        print(f"{'candidate':<16}{'w':>6}" + "".join(f"{c[:14]:>15}" for c in head))
        for r in rows:
            if r["candidate"] not in test:
                continue
            for w in dict.fromkeys((r["w"], 0.5)):
                v = test_row(test[r["candidate"]], w)
                print(f"{r['candidate']:<16}{w:>6g}" + "".join(f"{x:>15.4f}" for x in v)
                      + f"{sum(v) / len(v):>15.4f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
