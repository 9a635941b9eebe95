"""Resident memory of an ONNX Runtime session over calls of changing shapes.

ONNX Runtime's memory pattern (on by default, as lmbff's predictor leaves it) plans
memory per input shape; a server's batches change shape every call (batch size, padded
length). This runs an lmbff export's model.onnx on random shapes and prints the
process's resident memory every 200 calls, with the pattern on or off:

    .venv/bin/python python/ort_memory_probe.py EXPORT_DIR on
    .venv/bin/python python/ort_memory_probe.py EXPORT_DIR off
"""
import argparse
import random
import time

import numpy as np
import onnxruntime as ort


def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 // (1 << 20)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("export")
    ap.add_argument("pattern", choices=["on", "off"])
    ap.add_argument("--calls", type=int, default=1200)
    a = ap.parse_args()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.enable_mem_pattern = a.pattern == "on"
    s = ort.InferenceSession(f"{a.export}/model.onnx", so, providers=["CPUExecutionProvider"])
    names = {i.name for i in s.get_inputs()}
    rng = random.Random(0)
    start = time.time()
    for k in range(1, a.calls + 1):
        b, n = rng.randint(1, 16), rng.randint(4, 128)
        feed = {"input_ids": np.full((b, n), 1000, np.int64), "attention_mask": np.ones((b, n), np.int64)}
        if "token_type_ids" in names:
            feed["token_type_ids"] = np.zeros((b, n), np.int64)
        s.run(None, feed)
        if k % 200 == 0:
            print(f"pattern {a.pattern}: {k} calls, resident {resident_mib()} MiB, {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
