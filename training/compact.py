"""Train the bundled compact model on the cached synthetic corpus; evaluate on real speech.

Model: voice_router.model.embedder.AudioTextEmbedder built from a config (default
training/configs/compact_pool.json). Frozen parts (speech_embedding front-end, all-MiniLM-L6-v2)
are never run per step: the corpus cache holds the front-end frames and the MiniLM mean-pooled
vector of every text (training/features.py), so a step runs only our trainable parts:

    audio: frames (B, T, 96) -> prenet -> projector -> [audio path] -> head -> L2   (B, D)
    text : cached MiniLM pooled (B, 384) -> head -> L2                                (B, D)

Audio path: "pool" (masked mean over the projected prenet frames; cheap: what fits 2 shared CPU
cores) or "backbone" (projected frames through the frozen MiniLM, AudioTextEmbedder's
`encode_frames`; ~10x the compute). The text side with a frozen backbone and no LoRA is exactly
`encode_text_tokens` (MiniLM mean pool -> head -> L2), so cached vectors lose nothing.

Losses (weights in the config's "train" section):
- audio<->text multi-positive InfoNCE (several voices of one text are all positives),
- audio<->audio multi-positive InfoNCE between two different voices of each text,
- text<->text paraphrase InfoNCE (texts of the same intent in text_intents are positives),
  which keeps the trainable head semantic,
and batches that always contain minimal pairs ("turn on the fan"/"turn off the fan",
"yes"/"no"...) so the in-batch negatives include the hardest ones.

AdamW, linear warm-up + cosine decay, checkpoint every `--ckpt-every` steps (resumable with
the same command), metrics.jsonl, tqdm progress, evaluation on REAL speech every
`--eval-every` steps (scripts/eval_compact.py has the full evaluation).

Usage:
    python -m training.compact train --run runs/compact --steps 6000
    python -m training.compact export --run runs/compact --out voice_router/weights/compact
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from training.losses import multi_positive_info_nce
from voice_router.decision import Fusion, top_two

REPO = Path(__file__).resolve().parent.parent
# Development data beside the repository (../shared/data); VR_DATA overrides.
DATA = Path(os.environ.get("VR_DATA", REPO.parent / "shared" / "data"))
EVAL_CACHE = Path(os.environ.get("VR_CACHE", REPO / "cache")) / "eval"
DEFAULT_CONFIG = REPO / "training" / "configs" / "compact_pool.json"

# ============================================================================ model helpers


def audio_path(model: Any) -> str:
    """The model's audio path: "pool" or "backbone" (configs without the field: backbone)."""
    return str(getattr(model.config, "audio_path", "backbone"))


def embed_frames(
    model: Any, frames: torch.Tensor, lengths: torch.Tensor, path: str
) -> torch.Tensor:
    """(B, T, 96) frames, (B,) lengths -> (B, D) L2-normalised audio embeddings.

    Uses the model's own `encode_frames` when its config names the audio path; otherwise
    computes the "pool" path from the model's modules (identical maths)."""
    if path == "backbone" or hasattr(model.config, "audio_path"):
        return model.encode_frames(frames, lengths)
    h, hl = model.prenet(frames, lengths)  # (B, T', P), (B,)
    x = model.projector(h)  # (B, T', H)
    mask = torch.arange(x.shape[1], device=x.device)[None] < hl[:, None]  # (B, T')
    return model._pool(x, mask)  # (B, D)


def embed_pooled_text(model: Any, pooled: torch.Tensor) -> torch.Tensor:
    """Cached frozen-MiniLM mean-pooled vectors (B, 384) -> (B, D) L2-normalised (head), with
    zeros in the acoustic part when the model has one (as AudioTextEmbedder.encode_text)."""
    t = F.normalize(model.head(pooled), dim=-1)  # (B, H)
    extra = int(getattr(model, "dim", t.shape[1])) - t.shape[1]
    return torch.cat([t, t.new_zeros(t.shape[0], extra)], -1) if extra > 0 else t  # (B, D)


def build_model(config: dict[str, Any]) -> Any:
    """AudioTextEmbedder from a config dict; an "audio_path" key the installed embedder does
    not know yet is removed (the trainer then computes that path itself)."""
    from voice_router.model.config import ModelConfig
    from voice_router.model.embedder import AudioTextEmbedder

    cfg = dict(config)
    if "audio_path" not in ModelConfig.model_fields:
        cfg.pop("audio_path", None)
    return AudioTextEmbedder(cfg)


# ============================================================================ batches


@dataclass
class TrainSet:
    """Indices of the training samples, grouped the way batches are drawn."""

    by_text: dict[int, np.ndarray]  # text idx -> sample indices (train split)
    texts: np.ndarray  # text indices that have >= 1 training sample
    pair_groups: list[list[int]]  # minimal-pair groups (text indices), each >= 2
    intent_texts: dict[str, np.ndarray]  # intent -> text indices (paraphrase pools, >= 2)
    text_intent: dict[int, str]


def make_trainset(data: Any) -> TrainSet:
    """Group training samples by text; find minimal-pair groups and paraphrase pools."""
    by_text: dict[int, list[int]] = defaultdict(list)
    for i in np.nonzero(data.split)[0]:
        by_text[int(data.text[i])].append(int(i))
    texts = np.array(sorted(by_text))
    text_idx = {t: i for i, t in enumerate(data.texts)}
    groups: dict[str, set[int]] = defaultdict(set)
    intents: dict[str, list[int]] = defaultdict(list)
    text_intent: dict[int, str] = {}
    for t in texts.tolist():
        intent = data.text_intent[t]
        if intent.startswith("pair:"):
            key = intent[5:]
            groups[key].add(t)
            if key in text_idx:  # twin of a command: the command is the other member
                groups[key].add(text_idx[key])
        elif intent:
            intents[intent].append(t)
            text_intent[t] = intent
    pair_groups = [sorted(g & set(by_text)) for g in groups.values()]
    pair_groups = [g for g in pair_groups if len(g) >= 2]
    return TrainSet(
        by_text={k: np.array(v) for k, v in by_text.items()},
        texts=texts,
        pair_groups=pair_groups,
        intent_texts={k: np.array(v) for k, v in intents.items() if len(v) >= 2},
        text_intent=text_intent,
    )


def pad_frames(data: Any, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples -> zero-padded frames (B, T, 96) float32 and lengths (B,)."""
    lens = data.f_len[np.asarray(idx)]
    out = np.zeros((len(idx), int(lens.max()), data.frames.shape[1]), np.float32)  # (B, T, 96)
    for j, i in enumerate(idx):
        out[j, : lens[j]] = data.sample_frames(int(i))
    return torch.from_numpy(out), torch.from_numpy(lens.astype(np.int64))


def draw_batch(
    ts: TrainSet, rng: np.random.Generator, n_texts: int, n_pair_groups: int
) -> tuple[list[int], list[int], list[int]]:
    """Texts for one batch (minimal-pair groups first, then random texts) and two samples per
    text (different clips when the text has several). Returns (texts, view1, view2) sample
    indices; view1[i] and view2[i] say texts[i]."""
    chosen: list[int] = []
    seen: set[int] = set()
    for g in rng.choice(
        len(ts.pair_groups), size=min(n_pair_groups, len(ts.pair_groups)), replace=False
    ):
        for t in ts.pair_groups[int(g)]:
            if t not in seen and len(chosen) < n_texts:
                chosen.append(t)
                seen.add(t)
    while len(chosen) < n_texts:
        t = int(ts.texts[rng.integers(ts.texts.size)])
        if t not in seen:
            chosen.append(t)
            seen.add(t)
    v1, v2 = [], []
    for t in chosen:
        s = ts.by_text[t]
        a = int(rng.integers(s.size))
        b = int(rng.integers(s.size - 1)) if s.size > 1 else 0
        b = b + 1 if s.size > 1 and b >= a else b
        v1.append(int(s[a]))
        v2.append(int(s[b]))
    return chosen, v1, v2


def draw_paraphrases(
    ts: TrainSet, rng: np.random.Generator, n: int
) -> tuple[list[int], list[int], list[str]]:
    """n (text, other text of the same intent) pairs from distinct intents."""
    intents = list(ts.intent_texts)
    pick = rng.choice(len(intents), size=min(n, len(intents)), replace=False)
    a, b, labels = [], [], []
    for k in pick:
        pool = ts.intent_texts[intents[int(k)]]
        i, j = rng.choice(pool.size, size=2, replace=False)
        a.append(int(pool[i]))
        b.append(int(pool[j]))
        labels.append(intents[int(k)])
    return a, b, labels


# ============================================================================ evaluation

SPEECH_COMMANDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
WAKE_PHRASES = {
    "wake_alexa": "alexa",
    "wake_computer": "computer",
    "wake_jarvis": "jarvis",
    "wake_smart_mirror": "smart mirror",
    "wake_snowboy": "snowboy",
    "wake_view_glass": "view glass",
}
RHASSPY_ROUTES = {
    "ChangeLightColor": "set the light color",
    "ChangeLightState": "turn the light on or off",
    "GetGarageState": "is the garage door open",
    "GetTemperature": "what is the temperature",
    "GetTime": "what time is it",
}


@dataclass
class EvalSet:
    """Real clips' frames + labels, and route texts with their TTS exemplar frames."""

    name: str
    routes: list[str]  # route names
    route_texts: list[str]
    frames: list[np.ndarray]  # real clips, (T, 96) each
    labels: list[str]  # route name or "unknown"
    speakers: list[str]
    ex_frames: list[np.ndarray]  # exemplars, (T, 96) each
    ex_route: np.ndarray  # (E,) route index of each exemplar


def _read_manifest(folder: Path) -> list[dict[str, str]]:
    with (folder / "manifest.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def build_eval_set(name: str, n_voices: int = 12, normalizer: Any = None) -> EvalSet:
    """Front-end frames of a real dataset and of the route texts spoken by `n_voices`
    espeak-ng exemplar voices (voice_router.tts.default_exemplar_voices); cached on disk.

    `normalizer`: a model's clip normaliser (voice_router.audio.prep.ClipNormalizer), applied
    to real clips and exemplars alike before the front-end (its settings key the cache)."""
    tag = ""
    if normalizer is not None and normalizer.active:
        s = normalizer.settings()
        tag = f"_t{s['trim_db']}_p{s['trim_pad_s']}_m{s['min_seconds']}_n{s['noise_rms']}"
    path = EVAL_CACHE / f"{name}_v{n_voices}{tag}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=True)
        kw: dict[str, Any] = {k: z[k].tolist() for k in z.files}
        for k in ("frames", "ex_frames"):
            kw[k] = [np.asarray(f, dtype=np.float32) for f in z[k]]
        kw["ex_route"] = np.asarray(z["ex_route"])
        kw["name"] = str(z["name"])
        return EvalSet(**kw)
    import soundfile as sf
    import soxr

    from training.corpus import featurize
    from voice_router.model.speech_embedding import load_speech_embedding_frontend
    from voice_router.tts import default_exemplar_voices, synthesize

    if name == "speech_commands":
        folder = DATA / "speech_commands_dev"
        routes = {w: w for w in SPEECH_COMMANDS}
        label_of = lambda r: r["label"] if r["label"] in routes else "unknown"  # noqa: E731
    elif name == "wake_phrases":
        folder = DATA / "wake_phrases"
        routes = dict(WAKE_PHRASES)
        label_of = lambda r: r["label"]  # noqa: E731
    elif name == "rhasspy":
        folder = DATA / "rhasspy_en"
        routes = dict(RHASSPY_ROUTES)
        label_of = lambda r: r["label"]  # noqa: E731
    else:
        raise ValueError(f"unknown eval set {name!r}")
    rows = _read_manifest(folder)
    waves, labels, speakers = [], [], []
    for r in rows:
        try:
            a, rate = sf.read(str(folder / r["path"]), dtype="float32", always_2d=True)
        except Exception:  # noqa: BLE001 - a few benchmark files are damaged
            continue
        a = a.mean(1)
        if rate != 16000:
            a = soxr.resample(a, rate, 16000).astype(np.float32)
        if a.size < 400 or not np.isfinite(a).all() or np.max(np.abs(a)) == 0:
            continue
        waves.append(a)
        labels.append(label_of(r))
        speakers.append(r.get("speaker") or r["path"])
    names = list(routes)
    ex_waves, ex_route = [], []
    for ri, n in enumerate(names):
        for v in default_exemplar_voices(n_voices):
            ex_waves.append(synthesize(routes[n], v))  # the runtime's exemplar convention
            ex_route.append(ri)
    if tag:
        waves = [normalizer(a) for a in waves]
        ex_waves = [normalizer(a) for a in ex_waves]
    fe = load_speech_embedding_frontend()
    es = EvalSet(
        name=name,
        routes=names,
        route_texts=[routes[n] for n in names],
        frames=featurize(fe, waves),
        labels=labels,
        speakers=speakers,
        ex_frames=featurize(fe, ex_waves),
        ex_route=np.array(ex_route),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    obj: dict[str, np.ndarray] = {}
    for k in ("frames", "ex_frames"):
        arr = np.empty(len(getattr(es, k)), dtype=object)  # 1-D: one (T, 96) array each
        arr[:] = getattr(es, k)
        obj[k] = arr
    obj |= {
        k: np.array(getattr(es, k))
        for k in ("name", "routes", "route_texts", "labels", "speakers", "ex_route")
    }
    np.savez(path, **obj)
    return es


def _embed_list(
    embed: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    frames: Sequence[np.ndarray],
    batch: int = 64,
) -> np.ndarray:
    order = sorted(range(len(frames)), key=lambda i: len(frames[i]))
    out = None
    with torch.inference_mode():
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            lens = np.array([len(frames[i]) for i in idx])
            x = np.zeros((len(idx), lens.max(), 96), np.float32)  # (B, T, 96)
            for j, i in enumerate(idx):
                x[j, : lens[j]] = frames[i]
            e = embed(torch.from_numpy(x), torch.from_numpy(lens)).float().numpy()  # (B, D)
            if out is None:
                out = np.zeros((len(frames), e.shape[1]), np.float32)
            out[idx] = e
    return out


def route_scores(
    es: EvalSet,
    audio_embed: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    text_embed: Callable[[list[str]], np.ndarray] | None,
    topk: int = Fusion().top_k,
) -> dict[str, np.ndarray]:
    """Per-clip route scores (N, R) for each scoring mode: "text" (audio vs route text),
    "exemplar" (mean of the top-k exemplar cosines), "centroid" (cosine to the normalised
    mean of a route's exemplars)."""
    a = _embed_list(audio_embed, es.frames)  # (N, D)
    ex = _embed_list(audio_embed, es.ex_frames)  # (E, D)
    sims = a @ ex.T  # (N, E)
    r = len(es.routes)
    ex_route = np.asarray(es.ex_route)
    topk_scores = np.zeros((a.shape[0], r), np.float32)
    cent = np.zeros((r, ex.shape[1]), np.float32)
    for k in range(r):
        s = np.sort(sims[:, ex_route == k], axis=1)[:, ::-1]  # (N, E_k) descending
        topk_scores[:, k] = s[:, :topk].mean(1)
        c = ex[ex_route == k].mean(0)
        cent[k] = c / (np.linalg.norm(c) + 1e-9)
    out = {"exemplar": topk_scores, "centroid": a @ cent.T}
    if text_embed is not None:
        out["text"] = a @ text_embed(list(es.route_texts)).T  # (N, R)
    return out


def top1(scores: np.ndarray, es: EvalSet, mask: np.ndarray | None = None) -> float:
    """Top-1 accuracy over clips whose label is a route (unknown excluded)."""
    labels = np.array(es.labels)
    known = np.isin(labels, es.routes)
    if mask is not None:
        known &= mask
    best, _, _ = top_two(scores, list(es.routes))  # the router's own tie rule
    pred = np.array(es.routes)[best]
    return float((pred[known] == labels[known]).mean()) if known.any() else float("nan")


def speaker_halves(es: EvalSet) -> tuple[np.ndarray, np.ndarray]:
    """Two speaker-disjoint halves (by a hash of the speaker id)."""
    import hashlib

    h = np.array([int(hashlib.sha1(s.encode()).hexdigest()[:8], 16) % 2 for s in es.speakers])
    return h == 0, h == 1


def fuse(scores: dict[str, np.ndarray], w: float, b_mode: str = "exemplar") -> np.ndarray:
    """The router's fusion (`voice_router.decision.Fusion`, weighted w : 1 - w) of the text and
    exemplar scores."""
    return Fusion(w_text=w, w_audio=1.0 - w).combine_matrix(scores["text"], scores[b_mode])


def quick_eval(model: Any, path: str, sets: Sequence[EvalSet]) -> dict[str, float]:
    """Top-1 for text / exemplar / fused(0.5) per eval set (used during training)."""
    model.eval()
    out: dict[str, float] = {}

    def a_emb(f: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        return embed_frames(model, f, n, path)

    def t_emb(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            return model.encode_text(texts).float().numpy()

    for es in sets:
        sc = route_scores(es, a_emb, t_emb)
        out[f"{es.name}/text"] = top1(sc["text"], es)
        out[f"{es.name}/exemplar"] = top1(sc["exemplar"], es)
        out[f"{es.name}/fused"] = top1(fuse(sc, 0.5), es)
    model.train()
    return out


# ============================================================================ training


def _lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def synthetic_val(
    model: Any, path: str, data: Any, text_vecs: np.ndarray, n: int = 1500, seed: int = 0
) -> dict[str, float]:
    """Held-out synthetic clips (held-out texts or voices): audio->text R@1 among the val
    clips' texts, and audio->audio R@1 (nearest other clip has the same text)."""
    val = np.nonzero(~data.split)[0]
    rng = np.random.default_rng(seed)
    val = np.sort(rng.choice(val, size=min(n, val.size), replace=False))
    model.eval()
    with torch.inference_mode():
        embs = []
        for s in range(0, val.size, 128):
            f, n_ = pad_frames(data, val[s : s + 128])
            embs.append(embed_frames(model, f, n_, path))
        a = torch.cat(embs)  # (N, D)
        tids = data.text[val]
        uniq, inv = np.unique(tids, return_inverse=True)
        t = embed_pooled_text(model, torch.from_numpy(text_vecs[uniq]))  # (U, D)
        at = (a @ t.T).argmax(1).numpy()
        aa = a @ a.T
        aa.fill_diagonal_(-2)
        nn_ = aa.argmax(1).numpy()
    model.train()
    return {
        "val/a2t_r1": float((at == inv).mean()),
        "val/a2a_r1": float((tids[nn_] == tids).mean()),
    }


def train(args: argparse.Namespace) -> None:
    """The training loop (resumable from run/last.pt)."""
    from tqdm import tqdm

    from training.corpus import corpus_prep
    from training.features import load_corpus, text_cache

    torch.set_num_threads(args.threads)
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    config = json.loads(Path(args.config).read_text())
    tcfg = config.pop("train", {})
    hp = {
        "lr": 2e-3,
        "weight_decay": 0.05,
        "warmup": 200,
        "n_texts": 96,
        "n_pair_groups": 12,
        "n_para": 48,
        "w_at": 1.0,
        "w_aa": 0.5,
        "w_tt": 0.3,
        "clean_p": 0.25,
    } | tcfg
    path = config.get("audio_path", "backbone")
    model = build_model(config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    print(f"trainable parameters: {sum(p.numel() for p in params):,} audio path: {path}")
    opt = torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
    step = 0
    ckpt = run / "last.pt"
    if ckpt.exists():
        st = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(st["model"], strict=False)
        opt.load_state_dict(st["opt"])
        step = st["step"]
        print(f"resumed from step {step}")
    (run / "config.json").write_text(json.dumps(config | {"train": hp}, indent=2))

    want = model.normalizer.settings()
    have = corpus_prep()
    if have != want:
        raise SystemExit(
            f"the corpus frames were made with clip normalisation {have or 'none'} but the model "
            f"config asks for {want or 'none'}: build a corpus for this config (python -m "
            "training.corpus refeaturize --prep-config CONFIG, in another VR_CACHE folder)"
        )
    data = load_corpus()
    tv = text_cache(data.texts)
    text_vecs = np.stack([tv[t] for t in data.texts]).astype(np.float32)  # (U, 384)
    ts = make_trainset(data)
    print(
        f"samples {len(data)} train texts {ts.texts.size} pair groups {len(ts.pair_groups)} "
        f"intents {len(ts.intent_texts)}"
    )
    sets = [
        build_eval_set(n, normalizer=model.normalizer)
        for n in ("speech_commands", "wake_phrases", "rhasspy")
    ]
    rng = np.random.default_rng(args.seed + step)
    metrics = (run / "metrics.jsonl").open("a")
    bar = tqdm(range(step, args.steps), initial=step, total=args.steps, smoothing=0.05)
    t0 = time.time()
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, args.steps, hp["warmup"], hp["lr"])
        texts, v1, v2 = draw_batch(ts, rng, hp["n_texts"], hp["n_pair_groups"])
        idx = v1 + v2
        frames, lens = pad_frames(data, idx)
        a = embed_frames(model, frames, lens, path)  # (2B, D)
        t = embed_pooled_text(model, torch.from_numpy(text_vecs[texts]))  # (B, D)
        scale = model.logit_scale.clamp(max=math.log(100.0)).exp()
        temp = 1.0 / scale
        la = torch.tensor(texts + texts)  # (2B,) text label of each audio row
        lt = torch.tensor(texts)  # (B,)
        loss_at = (
            multi_positive_info_nce(a, t, la, lt, temp)
            + multi_positive_info_nce(t, a, lt, la, temp)
        ) / 2
        b = len(texts)
        loss_aa = (
            multi_positive_info_nce(a[:b], a[b:], lt, lt, temp)
            + multi_positive_info_nce(a[b:], a[:b], lt, lt, temp)
        ) / 2
        pa, pb, plab = draw_paraphrases(ts, rng, hp["n_para"])
        ea = embed_pooled_text(model, torch.from_numpy(text_vecs[pa]))
        eb = embed_pooled_text(model, torch.from_numpy(text_vecs[pb]))
        ll = torch.arange(len(pa))
        loss_tt = (
            multi_positive_info_nce(ea, eb, ll, ll, temp)
            + multi_positive_info_nce(eb, ea, ll, ll, temp)
        ) / 2
        loss = hp["w_at"] * loss_at + hp["w_aa"] * loss_aa + hp["w_tt"] * loss_tt
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        rec: dict[str, Any] = {
            "step": step + 1,
            "loss": loss.item(),
            "at": loss_at.item(),
            "aa": loss_aa.item(),
            "tt": loss_tt.item(),
            "scale": float(scale.detach()),
            "lr": opt.param_groups[0]["lr"],
            "t": round(time.time() - t0, 1),
        }
        bar.set_postfix_str(f"at {rec['at']:.2f} aa {rec['aa']:.2f} tt {rec['tt']:.2f}")
        done = step + 1
        if done % args.eval_every == 0 or done == args.steps:
            rec |= synthetic_val(model, path, data, text_vecs)
            rec |= quick_eval(model, path, sets)
            bar.write(
                json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in rec.items()})
            )
        metrics.write(json.dumps(rec) + "\n")
        metrics.flush()
        if done % args.ckpt_every == 0 or done == args.steps:
            tmp = run / "last.tmp.pt"
            torch.save(
                {"model": model.trainable_state_dict(), "opt": opt.state_dict(), "step": done}, tmp
            )
            tmp.replace(ckpt)
            torch.save(
                {"model": model.trainable_state_dict(), "step": done}, run / f"step{done:06d}.pt"
            )


def load_checkpoint(ckpt: str | Path, config: dict[str, Any]) -> Any:
    """A model from a config and a checkpoint written by `train`."""
    cfg = dict(config)
    cfg.pop("train", None)
    model = build_model(cfg)
    st = torch.load(ckpt, map_location="cpu", weights_only=True)
    model.load_state_dict(st["model"], strict=False)
    return model.eval()


def export(args: argparse.Namespace) -> None:
    """Save a checkpoint as a shippable model folder (float16 safetensors + config.json)."""
    from voice_router.model.embedder import save_model

    run = Path(args.run)
    config = json.loads((run / "config.json").read_text())
    config.pop("train", None)
    if args.prep_config:
        # weight-free inference settings (clip normalisation, acoustic part) from another config
        other = json.loads(Path(args.prep_config).read_text())
        for key in ("audio_prep", "acoustic_weight", "description"):
            if key in other:
                config[key] = other[key]
    model = load_checkpoint(args.ckpt or run / "last.pt", config)
    save_model(model, args.out, dtype="float16", card=json.loads(args.card) if args.card else {})
    cfg_path = Path(args.out) / "config.json"
    saved = json.loads(cfg_path.read_text())
    if "audio_path" in config and saved.get("audio_path") != config["audio_path"]:
        # the installed embedder predates the audio_path field: write it so the weights are
        # read back with the path they were trained for
        saved["audio_path"] = config["audio_path"]
        cfg_path.write_text(json.dumps(saved, sort_keys=True, indent=2) + "\n")
    print(f"saved {args.out}")


def main(argv: list[str] | None = None) -> int:
    """CLI: train | export."""
    p = argparse.ArgumentParser(prog="python -m training.compact")
    sub = p.add_subparsers(dest="cmd", required=True)
    tp = sub.add_parser("train")
    tp.add_argument("--run", default="runs/compact")
    tp.add_argument("--config", default=str(DEFAULT_CONFIG))
    tp.add_argument("--steps", type=int, default=6000)
    tp.add_argument("--threads", type=int, default=2)
    tp.add_argument("--seed", type=int, default=0)
    tp.add_argument("--eval-every", type=int, default=250)
    tp.add_argument("--ckpt-every", type=int, default=250)
    ep = sub.add_parser("export")
    ep.add_argument("--run", default="runs/compact")
    ep.add_argument("--ckpt")
    ep.add_argument("--out", default=str(REPO / "voice_router" / "weights" / "compact"))
    ep.add_argument("--card", help="JSON facts for the model card")
    ep.add_argument(
        "--prep-config",
        help="take audio_prep, acoustic_weight and description (no weights) from this config",
    )
    a = p.parse_args(argv)
    if a.cmd == "train":
        train(a)
    else:
        export(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
