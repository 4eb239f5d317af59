"""Whisper's decoder step as an ONNX graph: built by maintainers (needs the `onnx` package,
scripts/convert_whisper_ct2.py writes it), run by `WhisperDecoder` on ONNX Runtime.

One call = one token per hypothesis: tokens (B, 1), the position, every layer's self-attention
cache (B, H, t, dh) and the utterance's cross-attention keys (H, dh, T') and values (H, T', dh)
-> full-vocabulary log-probabilities (B, V) and the caches with that token appended. Every
linear layer runs in int8 (MatMulInteger over the activations quantised per call, weights per
output column); the final layer norm's gain is folded into the output weights (its normalised
input has no outlier dimensions). Weights are graph INPUTS: the runtime quantises the shipped
float16 tensors when it loads and hands them over as OrtValues, so the file is structure only.

Why a graph: the numpy step (`WhisperDecoder.hidden`) spends its time reading 33 MB of float32
weights per step for a 5-row batch; int8 weights are a quarter of that and ONNX Runtime's
kernels skip numpy's per-call overhead.
"""

from __future__ import annotations

from typing import Any

LINEARS = ("qkv", "out", "xq", "xo", "fc1", "fc2")
"""Each layer's linear layers, in graph input order: fused self q/k/v, self out, cross q,
cross out, feed-forward in and out."""


def weight_inputs(layers: int) -> list[str]:
    """Names of the graph's weight inputs, in order."""
    names = ["embed", "positions"]
    for i in range(layers):
        for ln in ("ln1", "ln2", "ln3"):
            names += [f"l{i}.{ln}.w", f"l{i}.{ln}.b"]
        for lin in LINEARS:
            names += [f"l{i}.{lin}.wq", f"l{i}.{lin}.scale", f"l{i}.{lin}.b"]
    return [*names, "lm.wq", "lm.scale", "lm.b"]


def build_step_graph(dim: int, heads: int, layers: int, ffn: int) -> bytes:
    """The serialised ONNX model of one decoder step (see the module docstring)."""
    import math

    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    dh = dim // heads
    nodes: list[Any] = []
    inits: list[Any] = []
    count = [0]

    def name(base: str) -> str:
        count[0] += 1
        return f"{base}_{count[0]}"

    def const(values: Any, dtype: Any = np.int64) -> str:
        n = name("c")
        inits.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), n))
        return n

    def node(op: str, inputs: list[str], **attrs: Any) -> str:
        out = name(op.lower())
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def linear(x: str, prefix: str) -> str:
        q, s, z = name("xq"), name("xs"), name("xz")
        nodes.append(helper.make_node("DynamicQuantizeLinear", [x], [q, s, z]))
        acc = node("MatMulInteger", [q, f"{prefix}.wq", z])  # (B, 1, out) int32
        scale = node("Mul", [s, f"{prefix}.scale"])  # (out,)
        y = node("Mul", [node("Cast", [acc], to=TensorProto.FLOAT), scale])
        return node("Add", [y, f"{prefix}.b"])

    def layer_norm(x: str, prefix: str) -> str:
        return node("LayerNormalization", [x, f"{prefix}.w", f"{prefix}.b"], axis=-1,
                    epsilon=1e-5)  # fmt: skip

    def split_heads(x: str) -> str:  # (B, 1, D) -> (B, H, 1, dh)
        r = node("Reshape", [x, const([0, 1, heads, dh])])
        return node("Transpose", [r], perm=[0, 2, 1, 3])

    def merge_heads(x: str) -> str:  # (B, H, 1, dh) -> (B, 1, D)
        t = node("Transpose", [x], perm=[0, 2, 1, 3])
        return node("Reshape", [t, const([0, 1, dim])])

    scale = const(np.float32(1.0 / math.sqrt(dh)), np.float32)
    inputs = [
        helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", 1]),
        helper.make_tensor_value_info("position", TensorProto.INT64, [1]),
    ]
    outputs = [helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, ["batch", "vocab"])]
    for i in range(layers):
        for kind in ("k", "v"):
            inputs.append(helper.make_tensor_value_info(
                f"past_{kind}{i}", TensorProto.FLOAT, ["batch", heads, "past", dh]))  # fmt: skip
            outputs.append(helper.make_tensor_value_info(
                f"new_{kind}{i}", TensorProto.FLOAT, ["batch", heads, "total", dh]))  # fmt: skip
        inputs.append(helper.make_tensor_value_info(
            f"cross_k{i}", TensorProto.FLOAT, [heads, dh, "frames"]))  # fmt: skip
        inputs.append(helper.make_tensor_value_info(
            f"cross_v{i}", TensorProto.FLOAT, [heads, "frames", dh]))  # fmt: skip
    shapes = {
        "embed": (TensorProto.FLOAT16, ["vocab", dim]),
        "positions": (TensorProto.FLOAT, ["npos", dim]),
        "lm.wq": (TensorProto.INT8, [dim, "vocab"]),
        "lm.scale": (TensorProto.FLOAT, ["vocab"]),
        "lm.b": (TensorProto.FLOAT, ["vocab"]),
    }
    sizes = {"qkv": (dim, 3 * dim), "out": (dim, dim), "xq": (dim, dim), "xo": (dim, dim),
             "fc1": (dim, ffn), "fc2": (ffn, dim)}  # (in, out) of each linear  # fmt: skip
    for w in weight_inputs(layers):
        part = w.split(".")[1] if w.startswith("l") and "." in w else ""
        if w in shapes:
            dtype, shape = shapes[w]
        elif w.endswith(".wq"):
            dtype, shape = TensorProto.INT8, list(sizes[part])
        elif part in sizes:  # a linear's scale or bias: one per output
            dtype, shape = TensorProto.FLOAT, [sizes[part][1]]
        else:  # a layer norm's gain or bias
            dtype, shape = TensorProto.FLOAT, [dim]
        inputs.append(helper.make_tensor_value_info(w, dtype, shape))

    tok = node("Gather", ["embed", "tokens"], axis=0)  # (B, 1, D) float16
    pos = node("Gather", ["positions", "position"], axis=0)  # (1, D)
    x = node("Add", [node("Cast", [tok], to=TensorProto.FLOAT), pos])  # (B, 1, D)
    for i in range(layers):
        p = f"l{i}"
        y = layer_norm(x, f"{p}.ln1")
        qkv = linear(y, f"{p}.qkv")  # (B, 1, 3D)
        q_, k_, v_ = (name("q"), name("k"), name("v"))
        nodes.append(helper.make_node("Split", [qkv, const([dim, dim, dim])], [q_, k_, v_],
                                      axis=-1))  # fmt: skip
        q, k, v = split_heads(q_), split_heads(k_), split_heads(v_)  # (B, H, 1, dh)
        k_all = f"new_k{i}"
        v_all = f"new_v{i}"
        nodes.append(helper.make_node("Concat", [f"past_k{i}", k], [k_all], axis=2))
        nodes.append(helper.make_node("Concat", [f"past_v{i}", v], [v_all], axis=2))
        att = node("MatMul", [node("Mul", [q, scale]),
                              node("Transpose", [k_all], perm=[0, 1, 3, 2])])  # fmt: skip
        y = merge_heads(node("MatMul", [node("Softmax", [att], axis=-1), v_all]))
        x = node("Add", [x, linear(y, f"{p}.out")])  # (B, 1, D)

        y = layer_norm(x, f"{p}.ln2")
        q = node("Mul", [split_heads(linear(y, f"{p}.xq")), scale])  # (B, H, 1, dh)
        att = node("MatMul", [q, f"cross_k{i}"])  # (B, H, 1, T')
        y = merge_heads(node("MatMul", [node("Softmax", [att], axis=-1), f"cross_v{i}"]))
        x = node("Add", [x, linear(y, f"{p}.xo")])

        y = linear(layer_norm(x, f"{p}.ln3"), f"{p}.fc1")  # (B, 1, F)
        gelu = node("Mul", [node("Mul", [y, const(np.float32(0.5), np.float32)]),
                            node("Add", [node("Erf", [node("Mul", [y, const(
                                np.float32(1 / math.sqrt(2)), np.float32)])]),
                                const(np.float32(1.0), np.float32)])])  # fmt: skip
        x = node("Add", [x, linear(gelu, f"{p}.fc2")])
    # the final layer norm without its gain and bias (folded into lm.*), then the vocabulary
    normed = node("LayerNormalization", [x, const(np.ones(dim, np.float32), np.float32),
                                         const(np.zeros(dim, np.float32), np.float32)],
                  axis=-1, epsilon=1e-5)  # fmt: skip
    flat = node("Reshape", [normed, const([-1, dim])])  # (B, D)
    logits = linear(flat, "lm")  # (B, V)
    nodes.append(helper.make_node("LogSoftmax", [logits], ["log_probs"], axis=-1))
    graph = helper.make_graph(nodes, "whisper_decoder_step_int8", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()
