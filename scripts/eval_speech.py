"""Quick zero-shot evaluation of a Whisper-tower model (a saved folder or a training checkpoint)
on REAL speech, routes as plain text only (no TTS exemplars, no enrolment).

For fast iteration while training: the frozen encoder frames of every evaluation clip are
cached once (cache/eval_frames/), and a checkpoint then runs only its head. Scores are the
cosine of the clip's embedding to each route's text embeddings (max over description and
examples). The published figures come from `voice-router eval` / benchmarks/run_all.py, which
route through the real index and decision rule; this script is the training-time probe.

Sets (../shared/data; never trained on):
  ha_commands    benchmarks/manifests/ha_commands_en.yaml (Home Assistant's own intent
                 descriptions): top-1 over the 31 commands; the 4 unrelated sentences'
                 best score against the lowest correct score
  ha_plain       the same clips, benchmarks/manifests/ha_commands_plain.yaml (one plain
                 sentence per intent, as a user would write it)
  rhasspy        benchmarks/manifests/rhasspy_en.yaml: top-1
  speech_commands  the 10 words (speech_commands_test.csv speakers): top-1; unknown words
                 falsely accepted at the threshold that keeps 95% of the known right
  wake_phrases   top-1
  so762_test     speechocean762 test split: audio->text R@1 and text->audio cvR@5 over its
                 transcripts (2,500 clips, 125 speakers, none in training)

Splits (--split), for choosing a checkpoint or fusion weight on data the reported figures do not
use: "dev" = Speech Commands' calibration speakers (speech_commands_calib.csv), one half of the
wake-phrase clips and of the Rhasspy clips (neither manifest names speakers, so these halves are
NOT speaker-disjoint) and one speaker half of the speechocean762 test split; "test" = the other
halves plus Home Assistant (one speaker, 35 clips: not split); "all" (default) = the sets as
listed above. Halves are fixed by a SHA-256 of the speaker (else of the clip's folder/file
name), independent of any other split here.

Usage:
    python scripts/eval_speech.py --model voice_router/weights/whisper_tiny
    python scripts/eval_speech.py --run runs/whisper_attn [--ckpt runs/whisper_attn/step004000.pt]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
MAN = REPO / "benchmarks" / "manifests"
FRAMES = REPO / "cache" / "eval_frames"

SETS = {
    "ha_commands": (DATA / "ha_commands_en" / "manifest.csv", MAN / "ha_commands_en.yaml"),
    "ha_plain": (DATA / "ha_commands_en" / "manifest.csv", MAN / "ha_commands_plain.yaml"),
    "rhasspy": (DATA / "rhasspy_en" / "manifest.csv", MAN / "rhasspy_en.yaml"),
    "speech_commands": (MAN / "speech_commands_test.csv", MAN / "speech_commands.yaml"),
    "wake_phrases": (DATA / "wake_phrases" / "manifest.csv", MAN / "wake_phrases.yaml"),
}


SPLITS = ("all", "dev", "test")
SMALL_SETS = ("ha_commands", "ha_plain")  # one speaker, 35 clips: test only


def dev_half(row: dict[str, str]) -> bool:
    """True for the clips of the dev half: by a hash of the speaker, else of the clip path."""
    import hashlib

    key = row.get("speaker") or "/".join(Path(row["path"]).parts[-2:])  # e.g. alexa/101.flac
    return hashlib.sha256(f"dev|{key}".encode()).digest()[0] % 2 == 0


def in_split(name: str, rows: list[dict[str, str]], split: str) -> list[int]:
    """Indices of the rows of set `name` in `split` (see the module docstring)."""
    if split == "all" or name == "speech_commands":  # its halves are separate manifests
        return list(range(len(rows)))
    if name in SMALL_SETS:
        return list(range(len(rows))) if split == "test" else []
    return [i for i, r in enumerate(rows) if dev_half(r) == (split == "dev")]


def rows_of(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["path"] = str((manifest.parent / r["path"]).resolve())
    return rows


def so762_test_rows() -> list[dict[str, str]]:
    rows = [r for r in rows_of(DATA / "speechocean762" / "manifest.csv") if r["split"] == "test"]
    return rows


def cached_frames(model, name: str, rows: list[dict[str, str]]) -> list[np.ndarray]:  # noqa: ANN001
    """Frozen encoder frames of every clip (computed once per encoder, then read back)."""
    import hashlib

    from voice_router.audio.io import load_audio

    enc = model.config.audio_encoder.model_dump_json() + model.config.audio_prep.model_dump_json()
    key = f"{name}-{hashlib.sha1(enc.encode()).hexdigest()[:10]}-{len(rows)}"
    path = FRAMES / f"{key}.npz"
    if path.exists():
        z = np.load(path)
        return np.split(z["frames"], np.cumsum(z["lens"])[:-1])
    out = []
    with torch.inference_mode():
        for r in rows:
            fr, n = model.audio_frames([load_audio(r["path"])])
            out.append(fr[0, : int(n[0])].numpy().astype(np.float16))
    FRAMES.mkdir(parents=True, exist_ok=True)
    np.savez(path, frames=np.concatenate(out), lens=np.array([len(o) for o in out]))
    return out


def embed(model, frames: list[np.ndarray]) -> np.ndarray:  # noqa: ANN001
    out = []
    with torch.inference_mode():
        for s in range(0, len(frames), 64):
            part = frames[s : s + 64]
            lens = torch.tensor([len(p) for p in part])
            x = torch.zeros(len(part), int(lens.max()), part[0].shape[1])
            for i, p in enumerate(part):
                x[i, : len(p)] = torch.from_numpy(p.astype(np.float32))
            out.append(model.encode_frames(x, lens))
    return F.normalize(torch.cat(out), dim=-1).numpy()


def route_matrix(model, routes_yaml: Path) -> tuple[list[str], list[list[np.ndarray]]]:  # noqa: ANN001
    from voice_router.routes import load_routes

    rs = load_routes(routes_yaml)
    names = [r.name for r in rs.routes]
    with torch.inference_mode():
        vecs = [model.encode_text(r.texts()).numpy() for r in rs.routes]
    return names, vecs


def scores_of(audio: np.ndarray, vecs: list[np.ndarray]) -> np.ndarray:
    return np.stack([(audio @ v.T).max(1) for v in vecs], 1)  # (N, R)


def exemplar_vectors(model, routes_yaml: Path, voices: int = 12) -> list[np.ndarray]:  # noqa: ANN001
    """Each route's texts spoken by the router's default espeak-ng exemplar voices, embedded
    (the router's `exemplar_voices` mechanism); the synthesised clips are cached on disk."""
    import hashlib

    from voice_router.routes import load_routes
    from voice_router.tts import default_exemplar_voices, synthesize

    out = []
    for r in load_routes(routes_yaml).routes:
        clips = []
        for t in r.texts():
            for v in default_exemplar_voices(voices):
                key = hashlib.sha1(f"{t}|{v.key}".encode()).hexdigest()[:16]
                f = FRAMES.parent / "exemplar_wavs" / f"{key}.npy"
                if not f.exists():
                    f.parent.mkdir(parents=True, exist_ok=True)
                    np.save(f, synthesize(t, v))
                clips.append(np.load(f))
        with torch.inference_mode():
            out.append(F.normalize(model.encode_audio(clips), dim=-1).numpy())
    return out


def exemplar_scores(audio: np.ndarray, ex: list[np.ndarray], k: int = 3) -> np.ndarray:
    """Mean of each route's k best exemplar cosines (the router's audio score): (N, R)."""
    cols = []
    for e in ex:
        s = np.sort(audio @ e.T, axis=1)[:, -k:]  # (N, k)
        cols.append(s.mean(1))
    return np.stack(cols, 1)


def _confusions(want: np.ndarray, got: np.ndarray) -> list[list]:
    """[expected, predicted, count] of every misroute, most frequent first."""
    from collections import Counter

    bad = want != got
    wrong = Counter(zip(want[bad].tolist(), got[bad].tolist(), strict=True))
    return [[e, g, n] for (e, g), n in wrong.most_common()]


def evaluate(
    model,  # noqa: ANN001
    exemplars: bool = False,
    weights: tuple[float, ...] = (0.0, 0.2, 0.5, 0.8),
    confusions: bool = False,
    split: str = "all",
) -> dict[str, dict[str, float]]:
    model.eval()
    res: dict[str, dict[str, float]] = {}
    for name, (manifest, routes_yaml) in SETS.items():
        cache_name = name
        if name == "speech_commands" and split == "dev":  # its dev half: the other speakers
            manifest, cache_name = MAN / "speech_commands_calib.csv", "speech_commands_calib"
        rows = rows_of(manifest)
        keep = in_split(name, rows, split)
        if not keep:
            continue
        frames = cached_frames(model, cache_name, rows)  # the whole manifest, cached once
        rows, frames = [rows[i] for i in keep], [frames[i] for i in keep]
        a = embed(model, frames)
        names, vecs = route_matrix(model, routes_yaml)
        s = scores_of(a, vecs)
        labels = np.array([r["label"] for r in rows])
        known = labels != "unknown"
        pred = np.array(names)[s.argmax(1)]
        r: dict[str, float] = {"top1": float((pred == labels)[known].mean()), "n": int(known.sum())}
        mixed: dict[str, list] = {}  # the misroutes of each scoring, when asked for
        if confusions:
            mixed["confusions"] = _confusions(labels[known], pred[known])
        said = [rw["text"] for rw in rows]
        if all(said[i] for i in np.nonzero(known)[0]):
            # the ceiling of routing by this model's text side: the TRUE transcripts as queries,
            # and how close each clip's audio lands to its own transcript
            with torch.inference_mode():
                t = F.normalize(model.encode_text([x or "-" for x in said]), dim=-1).numpy()
            tpred = np.array(names)[scores_of(t, vecs).argmax(1)]
            r["transcript_top1"] = float((tpred == labels)[known].mean())
            r["cos_audio_transcript_mean"] = float((a * t).sum(1)[known].mean())
        if exemplars:
            from voice_router.decision import Fusion  # the router's fusion

            ex = exemplar_scores(a, exemplar_vectors(model, routes_yaml))
            for w in weights:
                fused = Fusion(w_text=w, w_audio=1 - w).combine_matrix(s, ex)
                fpred = np.array(names)[fused.argmax(1)]
                r[f"top1_fused_w{w:g}"] = float((fpred == labels)[known].mean())
                if confusions:
                    mixed[f"confusions_fused_w{w:g}"] = _confusions(labels[known], fpred[known])
        if (~known).any():
            best = s.max(1)
            ok = best[known & (pred == labels)]
            thr = float(np.quantile(ok, 0.05)) if ok.size else 1.0
            r["unknown_accepted_at_p5_correct"] = float((best[~known] >= thr).mean())
            r["unknown_max"] = float(best[~known].max())
            r["correct_min"] = float(ok.min()) if ok.size else float("nan")
        res[name] = {**{k: round(v, 4) for k, v in r.items()}, **mixed}
    rows = so762_test_rows()
    frames = cached_frames(model, "so762_test", rows)
    keep = in_split("so762_test", rows, split)
    rows, frames = [rows[i] for i in keep], [frames[i] for i in keep]
    a = embed(model, frames)
    texts = sorted({r["text"] for r in rows})
    tid = np.array([texts.index(r["text"]) for r in rows])
    with torch.inference_mode():
        t = np.concatenate(
            [model.encode_text(texts[i : i + 256]).numpy() for i in range(0, len(texts), 256)]
        )
    from voice_router.metrics import retrieval_metrics

    m = retrieval_metrics(t, a, [set(np.nonzero(tid == u)[0].tolist()) for u in range(len(texts))])
    res["so762_test"] = {k: round(float(v), 4) for k, v in m.items()}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", help="saved model folder")
    ap.add_argument("--run", help="training run folder (training/speech_head.py)")
    ap.add_argument("--ckpt", help="checkpoint of --run (default: the last)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--split",
        choices=SPLITS,
        default="all",
        help="dev: the halves for choosing; test: the other halves + the small sets [all]",
    )
    ap.add_argument(
        "--exemplars", action="store_true", help="also score TTS exemplars and fused w*text"
    )
    ap.add_argument(
        "--weights",
        default="0,0.2,0.5,0.8",
        help="text weights w of the fused scores (w*text + (1-w)*exemplars) [0,0.2,0.5,0.8]",
    )
    ap.add_argument(
        "--confusions",
        action="store_true",
        help="also list each set's misroutes [expected, predicted, count], text only and fused",
    )
    args = ap.parse_args(argv)
    try:
        weights = tuple(float(w) for w in args.weights.split(","))
    except ValueError:
        ap.error(f"--weights: {args.weights!r} is not a comma-separated list of numbers")
    if not all(0 <= w <= 1 for w in weights):
        ap.error(f"--weights: every weight must be in [0, 1], got {args.weights}")
    torch.set_num_threads(args.threads)
    from voice_router.model import load_embedder

    if args.model:
        model = load_embedder(args.model)
    elif args.run:
        from training.speech_head import load_run

        model, ckpt = load_run(args.run, args.ckpt)
        print(f"checkpoint {ckpt}", file=sys.stderr)
    else:
        ap.error("give --model or --run")
    res = evaluate(model, args.exemplars, weights, args.confusions, args.split)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
