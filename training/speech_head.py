"""Train the head of the Whisper-tower model on cached encoder frames (training/speech_cache.py).

Model (voice_router AudioTextEmbedder, config training/configs/whisper_tiny_attn.json):

    audio: frozen Whisper tiny.en frames (B, T, 384) -> prenet (conv stride 2 + transformer)
           -> projector -> attention pooling (or mean) -> head -> L2            (B, 384)
    text : frozen all-MiniLM-L6-v2 mean pool -> the same head -> L2             (B, 384)

The text side's frozen MiniLM vector of every transcript is cached once
(training/features.text_cache), so a step runs only the trainable parts.

Losses (SONAR / SAMU-XLSR style distillation plus the seed's contrastive objective):
- bidirectional multi-positive InfoNCE between audio and the transcripts' text embeddings
  (clips of the same text in a batch are all positives), temperature = exp(-logit_scale);
- distillation: 1 - cos(audio, frozen MiniLM vector of its transcript), so the audio lands
  where MiniLM puts the text, and route descriptions written in words find it zero-shot.

Batches mix the sources by weight (real speechocean762, TTS commands, TTS short words).
AdamW, warm-up + cosine decay, checkpoints (resumable with the same command), metrics.jsonl,
and every `--eval-every` steps the speaker-disjoint speechocean762 test retrieval (R@1 audio->
text, cvR@5 text->audio over its transcripts) from the cache.

Usage:
    python -m training.speech_head train --run runs/whisper_attn --steps 4000
    python -m training.speech_head average --a A.pt --b B.pt --weight 0.5 --run runs/soup
    python -m training.speech_head export --run runs/whisper_attn \
        --out voice_router/weights/whisper_tiny
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from training.speech_cache import SOURCES, SPEECH_CACHE, SpeechCache, load_cache
from voice_router.metrics import retrieval_metrics
from voice_router.model import AudioTextEmbedder, save_model

CONFIGS = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIGS / "whisper_tiny_attn.json"
DEFAULT_MIX = {"so762-train": 0.3, "tts": 0.6, "tts-short": 0.1}
TRAIN_SOURCES = tuple(  # what --mix may name: never a test-only source
    s for s in SOURCES if s != "so762-test" and not s.startswith("vocab-test")
)


def parse_mix(spec: str | None) -> dict[str, float]:
    """The batch mix over training sources: "so762-train=0.3,tts=0.5,tts-short=0.2" (weights
    are renormalised; a source left out is not drawn). None gives DEFAULT_MIX."""
    if not spec:
        return dict(DEFAULT_MIX)
    mix: dict[str, float] = {}
    for part in spec.split(","):
        name, sep, w = part.strip().partition("=")
        if not sep or name not in TRAIN_SOURCES:
            known = ", ".join(TRAIN_SOURCES)
            raise SystemExit(f"--mix: {part!r} is not SOURCE=WEIGHT with SOURCE one of {known}")
        try:
            mix[name] = float(w)
        except ValueError:
            raise SystemExit(f"--mix: weight {w!r} of {name} is not a number") from None
        if mix[name] < 0:
            raise SystemExit(f"--mix: weight of {name} is negative ({w})")
    if sum(mix.values()) <= 0:
        raise SystemExit("--mix: the weights sum to zero; give at least one positive weight")
    return mix


# Words whose swap turns a command into its opposite while MiniLM barely moves ("turn the
# lights on" / "... off": cosine ~0.9). A transcript with one of them gets hard-negative texts
# (the same sentence with that one word swapped) in the audio->text InfoNCE.
_OPPOSITES = [
    ("on", "off"),
    ("up", "down"),
    ("open", "close"),
    ("lock", "unlock"),
    ("start", "stop"),
    ("increase", "decrease"),
    ("raise", "lower"),
    ("enable", "disable"),
    ("play", "pause"),
    ("next", "previous"),
    ("yes", "no"),
    ("left", "right"),
    ("louder", "quieter"),
    ("brighter", "dimmer"),
    ("warmer", "cooler"),
    ("higher", "lower"),
    ("add", "remove"),
    ("before", "after"),
    ("today", "tomorrow"),
    ("mute", "unmute"),
    ("show", "hide"),
    ("arm", "disarm"),
    ("true", "false"),
    ("hot", "cold"),
]
SWAPS: dict[str, str] = {}
for _a, _b in _OPPOSITES:
    SWAPS.setdefault(_a, _b)
    SWAPS.setdefault(_b, _a)


def one_word_negatives(text: str, limit: int = 2) -> list[str]:
    """Up to `limit` copies of `text` with one opposite word swapped (`SWAPS`), in word order."""
    words = text.split()
    out = []
    for i, w in enumerate(words):
        core = w.lower().strip(".,!?")
        if core in SWAPS:
            swapped = w.lower().replace(core, SWAPS[core], 1)
            out.append(" ".join([*words[:i], swapped, *words[i + 1 :]]))
            if len(out) == limit:
                break
    return out


def text_vectors(texts: list[str]) -> np.ndarray:
    """Frozen MiniLM mean-pooled vectors (N, 384) of `texts` (cached on disk)."""
    from training.features import FEATURES, text_cache

    cache = text_cache(texts, FEATURES / "text_minilm_speech.npz")
    return np.stack([cache[t] for t in texts])


def pad(cache: SpeechCache, idx: np.ndarray, max_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples -> (B, T, 384) float32 zero-padded, lengths (B,); clips longer than
    `max_frames` keep their first `max_frames` frames (6 s at 300: ~1% of speechocean762's
    sentences are longer; this bounds a step's memory and time)."""
    lens = np.minimum(cache.f_len[idx], max_frames)
    out = np.zeros((len(idx), int(lens.max()), cache.frames.shape[1]), np.float32)  # (B, T, D)
    for j, i in enumerate(idx):
        out[j, : lens[j]] = cache.sample(int(i))[: lens[j]]
    return torch.from_numpy(out), torch.from_numpy(lens.astype(np.int64))


def multi_positive_nce(
    a: torch.Tensor,
    t: torch.Tensor,
    tid: torch.Tensor,
    scale: torch.Tensor,
    hard: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bidirectional InfoNCE where every pair with the same text id is a positive; `hard`
    (H, D) are extra text negatives (one-word swaps, other training texts) in the audio->text
    direction only."""
    sim = scale * a @ t.T  # (B, B)
    pos = tid[:, None] == tid[None, :]  # (B, B)
    neg_inf = torch.finfo(sim.dtype).min

    def one_way(s: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return (torch.logsumexp(s, 1) - torch.logsumexp(s.masked_fill(~p, neg_inf), 1)).mean()

    a2t, a2t_pos = sim, pos
    if hard is not None and len(hard):
        a2t = torch.cat([sim, scale * a @ hard.T], 1)  # (B, B + H)
        a2t_pos = torch.cat([pos, pos.new_zeros(len(a), len(hard))], 1)
    return (one_way(a2t, a2t_pos) + one_way(sim.T, pos.T)) / 2


def draw_text_negatives(
    rng: np.random.Generator, pool: np.ndarray, batch: np.ndarray, n: int
) -> np.ndarray:
    """Up to `n` distinct text ids from `pool` (the training texts), none of them a text of the
    batch (`batch`): extra audio->text negatives for one step."""
    draw = rng.choice(pool, size=min(n, len(pool)), replace=False)
    return draw[~np.isin(draw, batch)]


def evaluate_cached(
    model: Any, cache: SpeechCache, idx: np.ndarray, tvec: torch.Tensor, tid: np.ndarray
) -> dict[str, float]:
    """Retrieval on cached clean test clips: audio->text R@1/R@5 and text->audio cvR@5."""
    model.eval()
    outs = []
    with torch.inference_mode():
        for s in range(0, len(idx), 64):
            f, n = pad(cache, idx[s : s + 64], 10_000)
            outs.append(model.encode_frames(f, n)[:, : model.joint_dim])
        a = F.normalize(torch.cat(outs), dim=-1).numpy()  # (N, D)
        texts_u, inv = np.unique(tid, return_inverse=True)
        t = F.normalize(model.head(tvec[torch.from_numpy(texts_u)]), dim=-1).numpy()  # (U, D)
    model.train()
    m = retrieval_metrics(
        t, a, [set(np.nonzero(inv == u)[0].tolist()) for u in range(len(texts_u))]
    )
    return {k: round(float(v), 4) for k, v in m.items()}


def _lr(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    config = json.loads(Path(args.config).read_text())
    tcfg = config.pop("train", {})
    (run / "config.json").write_text(json.dumps({**config, "train": tcfg}, indent=2))
    mix = parse_mix(args.mix)
    # the command line of this (latest) invocation, so a run folder says how it was made
    (run / "args.json").write_text(json.dumps({**vars(args), "mix": mix}, indent=2, default=str))
    cache = load_cache(Path(args.cache))
    texts = sorted({m["text"] for m in cache.meta})
    text_id = {t: i for i, t in enumerate(texts)}
    tvec = torch.from_numpy(text_vectors(texts))  # (U, 384) pooled, not normalised
    tid = np.array([text_id[m["text"]] for m in cache.meta])
    src = np.array([m["source"] for m in cache.meta])
    split = np.array([m["split"] for m in cache.meta])
    version = np.array([m["version"] for m in cache.meta])
    pools = {s: np.nonzero((src == s) & (split == "train"))[0] for s in mix if mix[s] > 0}
    missing = [s for s, p in pools.items() if not p.size]
    if missing:
        print(f"warning: no training clips of {', '.join(missing)} in the cache; not drawn")
    pools = {s: p for s, p in pools.items() if p.size}
    if not pools:
        raise SystemExit(
            f"--mix {','.join(mix)}: the cache in {args.cache} has no training clips of these "
            "sources; build them (python -m training.speech_cache build --sources ...)"
        )
    weights = np.array([mix[s] for s in pools])
    weights /= weights.sum()
    test_idx = np.nonzero((src == "so762-test") & (version == 0))[0]
    print({s: int(p.size) for s, p in pools.items()}, "test", test_idx.size, "texts", len(texts))
    # one-word-swap hard negatives: their texts' frozen vectors, and which text each belongs to
    neg_of: dict[int, list[int]] = {}
    neg_texts: list[str] = []
    if args.hard_negatives:
        tset = set(text_id)
        for t in texts:
            # a swap that is itself a training text is a real other command, already a negative
            negs = [n for n in one_word_negatives(t) if n not in tset]
            if negs:
                neg_of[text_id[t]] = list(range(len(neg_texts), len(neg_texts) + len(negs)))
                neg_texts += negs
        print(f"hard negatives: {len(neg_texts)} texts for {len(neg_of)} transcripts")
    nvec = torch.from_numpy(text_vectors(neg_texts)) if neg_texts else None  # (N, 384)
    # texts of training clips only: the pool of random extra negatives (--text-negatives)
    train_tids = np.unique(tid[split == "train"])

    model = AudioTextEmbedder(config).train()
    params = [p for p in model.parameters() if p.requires_grad]
    print(f"trainable parameters: {sum(p.numel() for p in params):,}")
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05)
    start = 0
    ckpts = sorted(run.glob("step*.pt"))
    if ckpts:
        state = torch.load(ckpts[-1], map_location="cpu")
        model.load_state_dict(state["model"], strict=False)
        opt.load_state_dict(state["opt"])
        start = int(state["step"])
        print(f"resumed from {ckpts[-1]}")
    elif args.init:
        state = torch.load(args.init, map_location="cpu")
        model.load_state_dict(state["model"], strict=False)
        print(f"initialised from {args.init} (step {state['step']})")
    rng = np.random.default_rng(args.seed + start)
    w_distill = float(tcfg.get("distill_weight", 1.0))
    log = (run / "metrics.jsonl").open("a")
    end = min(args.steps, args.stop_after or args.steps)  # a shorter run on the same schedule
    bar = tqdm(range(start, end), initial=start, total=end)
    t0 = time.time()
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = _lr(step, args.steps, args.warmup, args.lr)
        counts = rng.multinomial(args.batch, weights)
        idx = np.concatenate(
            [
                rng.choice(p, size=n, replace=False)
                for p, n in zip(pools.values(), counts, strict=True)
                if n
            ]
        )
        frames, lens = pad(cache, idx, args.max_frames)
        a = model.encode_frames(frames, lens)[:, : model.joint_dim]  # (B, D)
        ids = torch.from_numpy(tid[idx])
        target = F.normalize(tvec[ids], dim=-1)  # (B, D) frozen MiniLM
        t = F.normalize(model.head(tvec[ids]), dim=-1)  # (B, D) text side (shared head)
        scale = model.logit_scale.exp().clamp(max=100)
        hard = None
        if nvec is not None:
            rows = sorted({j for i in tid[idx].tolist() for j in neg_of.get(i, [])})
            if rows:
                hard = F.normalize(model.head(nvec[rows]), dim=-1)  # (H, D)
        if args.text_negatives:
            # other training texts as audio->text negatives: the batch alone (96 texts) is an
            # easy task; routing picks one text among many
            extra = draw_text_negatives(rng, train_tids, tid[idx], args.text_negatives)
            ev = F.normalize(model.head(tvec[torch.from_numpy(extra)]), dim=-1)  # (E, D)
            hard = ev if hard is None else torch.cat([hard, ev])  # (H + E, D)
        nce = multi_positive_nce(a, t, ids, scale, hard)
        distill = (1 - (a * target).sum(-1)).mean()
        loss = nce + w_distill * distill
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        rec: dict[str, Any] = {
            "step": step + 1,
            "loss": float(loss.detach()),
            "nce": float(nce.detach()),
            "distill": float(distill.detach()),
            "scale": float(scale),
            "secs": round(time.time() - t0, 1),
        }
        bar.set_postfix(nce=f"{rec['nce']:.3f}", cos=f"{1 - rec['distill']:.3f}")
        if test_idx.size and ((step + 1) % args.eval_every == 0 or step + 1 == end):
            rec.update(evaluate_cached(model, cache, test_idx, tvec, tid[test_idx]))
            tqdm.write(json.dumps(rec))
        if (step + 1) % args.ckpt_every == 0 or step + 1 == end:
            tmp = run / "ckpt.tmp"
            torch.save(
                {"model": model.trainable_state_dict(), "opt": opt.state_dict(), "step": step + 1},
                tmp,
            )
            tmp.replace(run / f"step{step + 1:06d}.pt")
        log.write(json.dumps(rec) + "\n")
        log.flush()


def load_run(run: str | Path, ckpt: str | Path | None = None) -> tuple[Any, Path]:
    """(AudioTextEmbedder with a run's checkpoint loaded, in eval mode; the checkpoint file):
    `ckpt`, or the run's last one."""
    run = Path(run)
    config = json.loads((run / "config.json").read_text())
    config.pop("train", None)
    ckpt = Path(ckpt) if ckpt else sorted(run.glob("step*.pt"))[-1]
    model = AudioTextEmbedder(config)
    model.load_trainable_state_dict(torch.load(ckpt, map_location="cpu")["model"], str(ckpt))
    return model.eval(), ckpt


def average(args: argparse.Namespace) -> None:
    """Write a checkpoint whose weights are `weight` * B + (1 - weight) * A (WiSE-FT style
    interpolation of two checkpoints of the same model, e.g. a fine-tuned run and the one it
    started from), into `--run` with B's run config, so `export` and eval_speech take it."""
    a = torch.load(args.a, map_location="cpu")
    b = torch.load(args.b, map_location="cpu")
    if set(a["model"]) != set(b["model"]):
        raise SystemExit("the two checkpoints hold different parameters: not the same model")
    w = float(args.weight)
    mixed = {
        k: (w * b["model"][k].float() + (1 - w) * v.float()).to(v.dtype)
        if v.is_floating_point()
        else b["model"][k]
        for k, v in a["model"].items()
    }
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text((Path(args.b).parent / "config.json").read_text())
    out = run / f"step{int(b['step']):06d}.pt"
    torch.save({"model": mixed, "step": int(b["step"]), "averaged": [args.a, args.b, w]}, out)
    print(f"wrote {out}: {w:g} x {args.b} + {1 - w:g} x {args.a}")


def export(args: argparse.Namespace) -> None:
    """Save the run's last (or `--ckpt`) checkpoint as a model folder (float16 weights)."""
    if args.fusion is not None:
        from voice_router.decision import Fusion
        from voice_router.errors import VoiceRouterError

        try:
            Fusion.parse(args.fusion)
        except VoiceRouterError as e:
            raise SystemExit(f"--fusion: {e}") from None
    model, ckpt = load_run(args.run, args.ckpt)
    card = json.loads(Path(args.card).read_text()) if args.card else {}
    out = save_model(model.eval(), args.out, dtype="float16", card=card)
    print(f"saved {out} from {ckpt}")
    if args.fusion is not None:
        from voice_router.model.routing_defaults import write_fusion

        print(f"wrote {write_fusion(out, args.fusion, args.fusion_note)}")
    if args.onnx:
        # the graphs of the torch-free runtime, over the float16-rounded weights the folder holds
        from voice_router.model.onnx_export import export_onnx

        files = export_onnx(out)
        print("ONNX runtime files:", ", ".join(f"{f.name} ({f.stat().st_size / 1e6:.1f} MB)"
                                                for f in files))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.speech_head",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train (resumes from the run's last checkpoint)")
    t.add_argument("--run", required=True, help="run folder (checkpoints, metrics.jsonl)")
    t.add_argument("--config", default=str(DEFAULT_CONFIG), help="model config JSON (+ 'train')")
    t.add_argument("--cache", default=str(SPEECH_CACHE), help="feature cache folder")
    t.add_argument("--steps", type=int, default=4000, help="length of the lr schedule")
    t.add_argument("--stop-after", type=int, help="stop at this step (comparisons on one schedule)")
    t.add_argument("--batch", type=int, default=96)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--warmup", type=int, default=200)
    t.add_argument("--max-frames", type=int, default=400, help="crop longer clips (8 s)")
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--eval-every", type=int, default=250)
    t.add_argument("--ckpt-every", type=int, default=250)
    t.add_argument(
        "--hard-negatives",
        action="store_true",
        help="add one-word-swap texts (on/off, up/down, ...) as audio->text negatives",
    )
    t.add_argument(
        "--text-negatives",
        type=int,
        default=0,
        help="random other training texts added as audio->text negatives per step [0]",
    )
    t.add_argument(
        "--mix",
        help="batch mix over sources, e.g. so762-train=0.3,tts=0.5,tts-short=0.2 "
        f"[{','.join(f'{k}={v:g}' for k, v in DEFAULT_MIX.items())}]",
    )
    t.add_argument(
        "--init", help="start a new run from this checkpoint's weights (fresh optimiser)"
    )
    e = sub.add_parser("export", help="write a model folder from a checkpoint")
    e.add_argument("--run", required=True)
    e.add_argument("--ckpt", help="checkpoint file (default: the last)")
    e.add_argument("--out", required=True, help="model folder to write")
    e.add_argument("--card", help="JSON of extra model-card facts")
    e.add_argument(
        "--fusion",
        metavar="SPEC",
        help="the model's default fusion, written to the folder's routing.json (e.g. "
        "'weighted:0.3,0.7;k=3'; choose it on held-out clips: scripts/eval_speech.py --split dev)",
    )
    e.add_argument(
        "--fusion-note", default="", help="how --fusion was chosen (data, command), for the file"
    )
    e.add_argument(
        "--onnx",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also write the graphs of the torch-free ONNX runtime (as `voice-router "
        "export-onnx` does) [on]",
    )
    v = sub.add_parser("average", help="interpolate two checkpoints (WiSE-FT) into a run")
    v.add_argument("--a", required=True, help="checkpoint A (e.g. the starting point)")
    v.add_argument("--b", required=True, help="checkpoint B (e.g. the fine-tuned one)")
    v.add_argument("--weight", type=float, default=0.5, help="weight of B [0.5]")
    v.add_argument("--run", required=True, help="run folder to write the checkpoint into")
    args = ap.parse_args(argv)
    {"train": train, "export": export, "average": average}[args.cmd](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
