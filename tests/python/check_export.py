"""Checks an lmbff ONNX export with the onnx package, and optionally a Triton model repository.

Runs onnx's full checker (shape inference included) on EXPORT_DIR/model.onnx, external
data (model.onnx.data) resolved relative to the file, and prints a JSON summary: opset,
IR version, inputs and outputs (name, element type, shape with ints or dim_param
names), initializer count, whether external data is used, the sorted op types, the
largest magnitude of the int8 weights stored in the file (null if none). An
export with similarity-filtered demonstrations also has demo-encoder.onnx, checked the
same way and summarised under "demo_encoder".

With --triton MODEL_REPO_DIR (one model folder <name>/ holding config.pbtxt and
1/model.onnx), parses config.pbtxt with Triton's own ModelConfig protobuf and checks
that it matches the ONNX graph: platform, name, input/output names, data types and
dims (without the batch dimension when max_batch_size > 0, -1 for symbolic dims).
Exits 1 with a message on the first failing stage.

Usage:
    python check_export.py EXPORT_DIR [--triton MODEL_REPO_DIR]
"""
import argparse
import importlib.util
import json
import os
import sys

import onnx
import onnx.numpy_helper
from google.protobuf import text_format

# ONNX element type -> Triton data type name.
TRITON_TYPES = {onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16"}


def load_graph(path):
    # Weights are not needed for the summary; the checker reads the external data itself.
    return onnx.load(path, load_external_data=False)


def shape_of(value_info):
    dims = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param if d.HasField("dim_param") else None))
    return dims


def describe(values):
    return [{"name": v.name, "elem_type": onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type),
             "shape": shape_of(v)} for v in values]


def op_types(graph, out):
    for node in graph.node:
        out.add(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}")
        for attr in node.attribute:  # subgraphs of If / Loop / Scan
            for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                op_types(g, out)
    return out


def read_names(graph, out):
    for node in graph.node:
        out.update(node.input)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                read_names(sub, out)
    return out


def summarize(model_path):
    onnx.checker.check_model(model_path, full_check=True)  # a path, so models over 2 GB work
    model = load_graph(model_path)
    g = model.graph
    # An initializer that no node reads is legal, but ONNX Runtime warns at every open.
    read = read_names(g, set()) | {o.name for o in g.output}
    unused = sorted(t.name for t in g.initializer if t.name not in read)
    if unused:
        sys.exit(f"check_export: {model_path} has initializers that no node reads (ONNX Runtime warns at every open): {unused[:5]}")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    external = any(onnx.external_data_helper.uses_external_data(t) for t in g.initializer)
    # The largest int8 weight stored in the file itself (an --int8 export's quantised
    # matrices; None when there are none there).
    int8 = [int(abs(onnx.numpy_helper.to_array(t).astype("int64")).max()) for t in g.initializer
            if t.data_type == onnx.TensorProto.INT8 and not onnx.external_data_helper.uses_external_data(t)]
    return {"ok": True, "opset": opset, "ir_version": model.ir_version, "inputs": describe(g.input),
            "outputs": describe(g.output), "initializers": len(g.initializer), "external_data": external,
            "ops": sorted(op_types(g, set())), "int8_abs_max": max(int8) if int8 else None}


def load_model_config_pb2():
    # Loaded by file path: `import tritonclient.grpc` raises unless tritonclient's grpc
    # extra is installed, and that extra would pull grpcio and pin protobuf < 7.
    locations = importlib.util.find_spec("tritonclient").submodule_search_locations
    path = os.path.join(list(locations)[0], "grpc", "model_config_pb2.py")
    spec = importlib.util.spec_from_file_location("model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_triton(repo):
    """Returns the triton part of the summary, or raises ValueError listing the mismatches."""
    pb2 = load_model_config_pb2()
    folders = [d for d in sorted(os.listdir(repo)) if os.path.isdir(os.path.join(repo, d))]
    if len(folders) != 1:
        raise ValueError(f"{repo} must hold exactly one model folder, found {folders}")
    name = folders[0]
    with open(os.path.join(repo, name, "config.pbtxt"), encoding="utf-8") as f:
        cfg = text_format.Parse(f.read(), pb2.ModelConfig())
    problems = []
    if cfg.platform != "onnxruntime_onnx":
        problems.append(f"platform is {cfg.platform!r}, expected 'onnxruntime_onnx'")
    if cfg.name != name:
        problems.append(f"config name {cfg.name!r} differs from the folder name {name!r}")
    model_path = os.path.join(repo, name, "1", "model.onnx")
    if not os.path.isfile(model_path):
        raise ValueError("; ".join(problems + [f"{model_path} does not exist"]))
    graph = load_graph(model_path).graph
    batched = cfg.max_batch_size > 0
    for kind, onnx_values, cfg_values in (("input", graph.input, cfg.input), ("output", graph.output, cfg.output)):
        onnx_by_name = {v.name: v for v in onnx_values}
        cfg_by_name = {v.name: v for v in cfg_values}
        if set(onnx_by_name) != set(cfg_by_name):
            problems.append(f"{kind} names differ: ONNX {sorted(onnx_by_name)}, config {sorted(cfg_by_name)}")
            continue
        for n, v in onnx_by_name.items():
            c = cfg_by_name[n]
            want_type = TRITON_TYPES.get(v.type.tensor_type.elem_type, "unsupported")
            got_type = pb2.DataType.Name(c.data_type)
            if got_type != want_type:
                problems.append(f"{kind} {n}: data_type {got_type}, the ONNX type needs {want_type}")
            shape = [d if isinstance(d, int) and d > 0 else -1 for d in shape_of(v)]
            if batched:
                if not shape or shape[0] != -1:
                    problems.append(f"{kind} {n}: max_batch_size > 0 needs a symbolic first dim, ONNX shape {shape}")
                shape = shape[1:]
            if list(c.dims) != shape:
                problems.append(f"{kind} {n}: dims {list(c.dims)}, the ONNX shape needs {shape}")
    if problems:
        raise ValueError("; ".join(problems))
    io = lambda values: [{"name": v.name, "data_type": pb2.DataType.Name(v.data_type), "dims": list(v.dims)} for v in values]
    return {"ok": True, "model": name, "max_batch_size": cfg.max_batch_size, "inputs": io(cfg.input), "outputs": io(cfg.output)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("export_dir")
    p.add_argument("--triton", metavar="MODEL_REPO_DIR")
    a = p.parse_args()
    try:
        summary = summarize(os.path.join(a.export_dir, "model.onnx"))
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, OSError) as e:
        hint = ("\n(onnx shape inference cannot read external data: keep tensors that ops read as values,"
                " such as Reshape shapes or ReduceSum axes, inline)") if "external tensors" in str(e) else ""
        sys.exit(f"check_export: model.onnx fails the ONNX checker: {e}{hint}")
    encoder = os.path.join(a.export_dir, "demo-encoder.onnx")
    if os.path.exists(encoder):
        try:
            summary["demo_encoder"] = summarize(encoder)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, OSError) as e:
            sys.exit(f"check_export: demo-encoder.onnx fails the ONNX checker: {e}")
    if a.triton:
        try:
            summary["triton"] = check_triton(a.triton)
        except (ValueError, OSError, text_format.ParseError) as e:
            sys.exit(f"check_export: Triton repository {a.triton} does not match: {e}")
    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
