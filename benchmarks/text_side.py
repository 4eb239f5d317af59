"""The text side before and after training: minimal pairs and paraphrase retrieval.

Why: frozen all-MiniLM-L6-v2 puts opposite commands close together (cosine yes/no 0.73), so the
compact model trains a linear head on top of it, kept semantic by text-pair (paraphrase)
training. This prints, for all-MiniLM-L6-v2 alone ("before") and for a model's text side
("after"):

- minimal pairs: cosine between commands that differ in one word ("turn on the fan" /
  "turn off the fan", "yes" / "no"...): lower means the pair is easier to tell apart;
- paraphrase retrieval on BANKING77's test split (an intent set the compact model never
  trained on): for each utterance, is its nearest other utterance of the same intent (R@1),
  and is one in its 5 nearest (R@5).

    python benchmarks/text_side.py [--model default] [--n 2000]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data" / "text_intents"
MINIMAL_PAIRS = [
    ("yes", "no"),
    ("up", "down"),
    ("left", "right"),
    ("on", "off"),
    ("stop", "go"),
    ("turn on the fan", "turn off the fan"),
    ("turn the lights on", "turn the lights off"),
    ("open the garage door", "close the garage door"),
    ("volume up", "volume down"),
    ("lock the front door", "unlock the front door"),
    ("start the timer", "stop the timer"),
    ("next song", "previous song"),
    ("increase the temperature", "decrease the temperature"),
    ("turn on the kitchen light", "turn on the bedroom light"),
]


def _retrieval(vecs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    sims = vecs @ vecs.T  # (N, N)
    np.fill_diagonal(sims, -np.inf)
    top = np.argsort(-sims, axis=1)[:, :5]  # (N, 5)
    hit = labels[top] == labels[:, None]
    return {"R@1": float(hit[:, 0].mean()), "R@5": float(hit.any(1).mean())}


def main(argv: list[str] | None = None) -> int:
    """Print a JSON report (before = MiniLM alone, after = the model's text side)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="model name or folder")
    p.add_argument("--n", type=int, default=2000, help="BANKING77 test utterances (spread)")
    p.add_argument("--data", default=str(DATA), help="text_intents folder")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    from voice_router.model.loader import load_model

    model = load_model(a.model, runtime="torch")  # its text side is read from model.embedder
    emb = model.embedder
    joint = int(getattr(emb, "joint_dim", emb.dim))

    def after(texts: list[str]) -> np.ndarray:
        v = model.embed_text(texts)[:, :joint]  # the acoustic part of text is all zeros
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def before(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            tok = emb.tokenize(texts)
            h = emb.backbone(emb.backbone.embed_tokens(tok["input_ids"]), tok["attention_mask"])
            m = tok["attention_mask"].unsqueeze(-1).float()
            v = ((h * m).sum(1) / m.sum(1)).numpy()  # MiniLM mean pool, no head
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    with open(Path(a.data) / "banking77.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
    rows = [rows[i] for i in np.linspace(0, len(rows) - 1, min(a.n, len(rows))).astype(int)]
    texts = [r["text"] for r in rows]
    labels = np.array([r["intent"] for r in rows])
    out: dict = {"model": a.model, "minimal_pairs": {}, "banking77_test": {"n": len(rows)}}
    for name, fn in (("before", before), ("after", after)):
        cos = []
        for x, y in MINIMAL_PAIRS:
            v = np.concatenate([fn([x]), fn([y])])
            cos.append(float(v[0] @ v[1]))
        out["minimal_pairs"][name] = {
            "mean_cosine": round(float(np.mean(cos)), 3),
            "pairs": {
                f"{x} / {y}": round(c, 3) for (x, y), c in zip(MINIMAL_PAIRS, cos, strict=True)
            },
        }
        vecs = np.concatenate([fn(texts[i : i + 64]) for i in range(0, len(texts), 64)])
        out["banking77_test"][name] = {k: round(v, 3) for k, v in _retrieval(vecs, labels).items()}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
