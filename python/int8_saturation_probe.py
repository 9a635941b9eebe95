"""Does this CPU's ONNX Runtime multiply int8 weights exactly? (a probe, not a test)

An `lmbff export --int8` graph quantises activations to uint8 (DynamicQuantizeLinear)
and multiplies them by int8 weights (MatMulInteger). On x86 CPUs without VNNI, ONNX
Runtime's uint8 x int8 kernel adds pairs of products in 16 bits with saturation:
2 x 255 x 127 = 64,770 does not fit, 2 x 255 x 63 = 32,130 does. This probe runs the
export's pattern (DynamicQuantizeLinear, MatMulInteger, Cast, the two rescaling Muls) on
a [64, 384] x [384, 1536] product (MiniLM's feed-forward shape; normal activations, eight
columns scaled by 8 as transformers' outlier features are, normal weights) with weights
quantised to full range (127) and to 7 bits (63), and prints each against the same
arithmetic done exactly in numpy and against fp32. Its CPU flags are printed first.

    .venv/bin/python python/int8_saturation_probe.py
"""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

M, K, N = 64, 384, 1536


def session(wq, ws):
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("MatMulInteger", ["xq", "wq", "xz"], ["acc"]),
        helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["xs", "ws"], ["s"]),
        helper.make_node("Mul", ["accf", "s"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [M, K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [M, N])],
        initializer=[numpy_helper.from_array(wq, "wq"), numpy_helper.from_array(ws, "ws")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # the exports' own
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def dynamic_quantize(x):
    """DynamicQuantizeLinear as the ONNX spec defines it."""
    lo, hi = min(0.0, float(x.min())), max(0.0, float(x.max()))
    scale = (hi - lo) / 255
    zero = np.clip(np.round(-lo / scale), 0, 255)
    return np.clip(np.round(x / scale) + zero, 0, 255), scale, zero


def main():
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next(line for line in f if line.startswith("flags")).split())
    except (OSError, StopIteration):
        pass
    print("CPU flags:", ", ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags) or "unknown")
    print("onnxruntime", ort.__version__)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((M, K)).astype(np.float32)
    x[:, :8] *= 8
    w = (rng.standard_normal((K, N)) * 0.05).astype(np.float32)
    exact_fp32 = x @ w
    print(f"\n| weights | ORT vs the same int8 arithmetic done exactly | vs fp32 | output scale |")
    print("|---|---|---|---|")
    for wmax in (127, 63):
        ws = (np.abs(w).max(axis=0) / wmax).astype(np.float32)
        wq = np.clip(np.round(w / ws), -wmax, wmax).astype(np.int8)
        y = session(wq, ws).run(None, {"x": x})[0]
        xq, s, z = dynamic_quantize(x)
        emulated = ((xq - z) @ wq.astype(np.float64)) * s * ws
        print(f"| +-{wmax} | {np.abs(y - emulated).max():.2e} | {np.abs(y - exact_fp32).max():.2e} | {np.abs(exact_fp32).max():.2f} |")


if __name__ == "__main__":
    main()
