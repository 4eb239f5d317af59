"""How the bundled model's clip normalisation and acoustic weight were chosen, on REAL speech.

For each clip normalisation (edge trim threshold x minimum length; 0.25 s kept after trimming,
-70 dBFS noise floor), the real clips and the 12 espeak-ng exemplars of each route are
normalised alike (training.compact.build_eval_set), then scored with the bundled model's
trained weights for each acoustic weight w:

    audio-audio cosine = (1 - w) * joint + w * acoustic     (what the model's 480-dim vectors give)
    exemplar score     = mean of the route's 3 best audio-audio cosines
    fused              = 0.2 * sqrt(1 - w) * joint(audio, route text) + 0.8 * exemplar

"joint" is the learned audio-text part; "acoustic" the normalised mean of the front-end frames
(pooled as --pool says). With --flite, exemplars spoken by flite (4 voices x 2 rates) are scored
too: instead of and beside the espeak-ng ones. The settings are tuned on these evaluation sets:
see the model card.

    python scripts/prep_grid.py                                  # the shipped row and neighbours
    python scripts/prep_grid.py --trim none,-20,-25,-30 --min-seconds 1.0,1.25,1.5,2.0
    python scripts/prep_grid.py --pool mean,meanstd,max --weights 1.0
    python scripts/prep_grid.py --trim=-25 --min-seconds 1.25 --weights 0.7 --flite
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.compact import _embed_list, build_eval_set, embed_frames  # noqa: E402
from voice_router.audio.prep import ClipNormalizer  # noqa: E402
from voice_router.model.catalog import DEFAULT_WEIGHTS  # noqa: E402
from voice_router.model.embedder import load_embedder  # noqa: E402

POOLS = {
    "mean": lambda f: f.mean(0),
    "meanstd": lambda f: np.concatenate([f.mean(0), f.std(0)]),
    "max": lambda f: f.max(0),
}
FLITE_VOICES = (("kal16", 110.0), ("awb", 110.0), ("rms", 110.0), ("slt", 180.0))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _flite_frames(texts: list[str], normalizer: ClipNormalizer) -> tuple[list, np.ndarray]:
    """Front-end frames of each route text spoken by flite (4 voices x 2 rates)."""
    from training.corpus import ClipSpec, featurize, synth_flite
    from voice_router.model.speech_embedding import load_speech_embedding_frontend

    waves, route = [], []
    with tempfile.TemporaryDirectory() as td:
        for ri, text in enumerate(texts):
            for voice, f0 in FLITE_VOICES:
                for stretch, df0 in ((1.0, 0.0), (1.15, -15.0)):
                    spec = ClipSpec(f"{ri}_{voice}_{stretch}", text, "", "", "", "flite", voice,
                                    stretch, f0 + df0, "train")  # fmt: skip
                    w = synth_flite(spec, Path(td)).astype(np.float32)
                    waves.append(normalizer(w / (np.abs(w).max() + 1e-9) * 0.9))
                    route.append(ri)
    return featurize(load_speech_embedding_frontend(), waves), np.array(route)


def main(argv: list[str] | None = None) -> int:
    """Print one line per (set, normalisation, pooling, exemplar source) with each weight."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default="speech_commands,wake_phrases,rhasspy")
    p.add_argument("--trim", default="-25", help="dB below the peak, comma-separated; none = off")
    p.add_argument("--min-seconds", default="1.0,1.25,1.5")
    p.add_argument("--weights", default="0,0.5,0.7,0.85,1.0", help="acoustic weights w")
    p.add_argument("--pool", default="mean", help=f"acoustic pooling: {', '.join(POOLS)}")
    p.add_argument("--flite", action="store_true", help="also score flite exemplars")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = load_embedder(DEFAULT_WEIGHTS)
    jd = model.joint_dim
    w0 = model.config.acoustic_weight

    def joint(frames: list) -> np.ndarray:  # the learned part alone, unit length (N, 384)
        e = _embed_list(lambda f, n: embed_frames(model, f, n, "pool"), frames)
        return _unit(e[:, :jd] / math.sqrt(1 - w0))

    trims = [None if t == "none" else float(t) for t in a.trim.split(",")]
    weights = [float(w) for w in a.weights.split(",")]
    for name in a.sets.split(","):
        for trim in trims:
            for min_s in (float(x) for x in a.min_seconds.split(",")):
                norm = ClipNormalizer(trim, 0.25, min_s, 3e-4)
                es = build_eval_set(name, normalizer=norm)
                labels = np.array(es.labels)
                known = np.isin(labels, es.routes)
                with torch.inference_mode():
                    text = model.encode_text(list(es.route_texts)).float().numpy()[:, :jd]
                sources = {"espeak": (es.ex_frames, np.asarray(es.ex_route))}
                if a.flite:
                    sources["flite"] = _flite_frames(list(es.route_texts), norm)
                    sources["both"] = (
                        list(es.ex_frames) + list(sources["flite"][0]),
                        np.concatenate([es.ex_route, sources["flite"][1]]),
                    )
                qj = joint(es.frames)
                for pool in a.pool.split(","):
                    qa = _unit(np.stack([POOLS[pool](f.astype(np.float32)) for f in es.frames]))
                    for src, (ex_frames, ex_route) in sources.items():
                        ej = joint(ex_frames)
                        ea = _unit(np.stack([POOLS[pool](f.astype(np.float32)) for f in ex_frames]))
                        line = f"{name} trim={trim} min={min_s} pool={pool} exemplars={src}"
                        for w in weights:
                            sims = (1 - w) * qj @ ej.T + w * qa @ ea.T  # (N, E)
                            ex = np.stack(
                                [
                                    np.sort(sims[:, ex_route == k], 1)[:, ::-1][:, :3].mean(1)
                                    for k in range(len(es.routes))
                                ],
                                1,
                            )  # (N, R)
                            fused = 0.2 * math.sqrt(1 - w) * qj @ text.T + 0.8 * ex
                            acc = [
                                float((np.array(es.routes)[s.argmax(1)] == labels)[known].mean())
                                for s in (ex, fused)
                            ]
                            line += f" | w={w}: exemplar {acc[0]:.3f} fused {acc[1]:.3f}"
                        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
