# SPDX-License-Identifier: MIT
"""Streaming latency: one time step at batch 1 (float32), LSTM and GRU, H = 16..128, I = 1 and 16.

Compares, in ns per step:
  gatecell C++      Stream::step in a C++ binary built against the installed package (bench/cpp):
                    the median and the fastest run, beside two floors measured on the same core —
                    `read`, one pass over the weights' bytes (each weight is used once per step, so
                    a step cannot be faster once they outgrow L1) and `arith`, the multiply-adds at
                    the core's peak FMA rate
  gatecell Python   gc.Stream(...).step(x, out=y) and .step(x) (a new output array per call)
  onnxruntime       an ONNX LSTM/GRU node run once per step, the state fed back as inputs
  torch cell        torch.nn.LSTMCell / GRUCell called once per step under no_grad

Every figure is the median of several timed runs, in the calling thread's CPU time (every
contender runs single-threaded in the caller; on a shared machine wall-clock time would also
count the other processes).
Usage: python bench/stream_latency.py [--repeats 7] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import gatecell as gc

HERE = Path(__file__).resolve().parent
SIZES = [16, 32, 64, 128]
INPUTS = [1, 16]
KINDS = ["lstm", "gru"]


def median_ns(fn, steps: int, repeats: int) -> float:
    for _ in range(max(100, steps // 10)):
        fn()
    runs = []
    for _ in range(repeats):
        t0 = time.thread_time_ns()
        for _ in range(steps):
            fn()
        runs.append((time.thread_time_ns() - t0) / steps)
    return float(np.median(runs))


def cpp_latencies(repeats: int) -> dict:
    tool = lambda name: str(Path(sys.executable).parent / name) if (Path(sys.executable).parent / name).exists() \
        else shutil.which(name)
    cmake_dir = subprocess.run([sys.executable, "-m", "gatecell", "--cmake-dir"], check=True, capture_output=True,
                               text=True).stdout.strip()
    build = Path(tempfile.mkdtemp(prefix="gatecell_bench_"))
    env = dict(os.environ, CMAKE_PREFIX_PATH=cmake_dir)
    subprocess.run([tool("cmake"), "-S", str(HERE / "cpp"), "-B", str(build), "-G", "Ninja",
                    f"-DCMAKE_MAKE_PROGRAM={tool('ninja')}", "-DCMAKE_BUILD_TYPE=Release"],
                   check=True, env=env, capture_output=True)
    subprocess.run([tool("cmake"), "--build", str(build)], check=True, env=env, capture_output=True)
    out = subprocess.run([str(build / "stream_latency"), str(repeats)], check=True, capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1")).stdout
    shutil.rmtree(build, ignore_errors=True)
    result = {}
    for line in out.splitlines():
        kind, h, i, *figures = line.split()
        result[(kind, int(h), int(i))] = [float(v) for v in figures]  # median, min, read, arith
    return result


def python_stream(kind: str, H: int, I: int, steps: int, repeats: int):
    layer = (gc.LSTM if kind == "lstm" else gc.GRU)(I, H, seed=0).eval()
    s = gc.Stream(layer)
    x = np.full((1, I), 0.5, np.float32)
    y = np.empty((1, H), np.float32)
    step = s.step
    with_out = median_ns(lambda: step(x, y), steps, repeats)
    fresh = median_ns(lambda: step(x), steps, repeats)
    return with_out, fresh


def torch_cell(kind: str, H: int, I: int, steps: int, repeats: int):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    cell = (torch.nn.LSTMCell if kind == "lstm" else torch.nn.GRUCell)(I, H)
    x = torch.full((1, I), 0.5)
    state = {"h": torch.zeros(1, H), "c": torch.zeros(1, H)}

    def lstm_step():
        state["h"], state["c"] = cell(x, (state["h"], state["c"]))

    def gru_step():
        state["h"] = cell(x, state["h"])

    with torch.no_grad():
        return median_ns(lstm_step if kind == "lstm" else gru_step, steps, repeats)


def onnx_step(kind: str, H: int, I: int, steps: int, repeats: int):
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    G = 4 * H if kind == "lstm" else 3 * H
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.uniform(-0.2, 0.2, (1, G, I)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.uniform(-0.2, 0.2, (1, G, H)).astype(np.float32), "R"),
             numpy_helper.from_array(rng.uniform(-0.2, 0.2, (1, 2 * G)).astype(np.float32), "B")]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1, I]),
              helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, 1, H])]
    outputs = [helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, 1, H])]
    node_in = ["X", "W", "R", "B", "", "h0"]
    node_out = ["", "Y_h"]
    if kind == "lstm":
        inputs.append(helper.make_tensor_value_info("c0", TensorProto.FLOAT, [1, 1, H]))
        outputs.append(helper.make_tensor_value_info("Y_c", TensorProto.FLOAT, [1, 1, H]))
        node_in.append("c0")
        node_out.append("Y_c")
        node = helper.make_node("LSTM", node_in, node_out, hidden_size=H)
    else:
        node = helper.make_node("GRU", node_in, node_out, hidden_size=H, linear_before_reset=1)
    graph = helper.make_graph([node], "step", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed = {"X": np.full((1, 1, I), 0.5, np.float32), "h0": np.zeros((1, 1, H), np.float32)}
    if kind == "lstm":
        feed["c0"] = np.zeros((1, 1, H), np.float32)
    names = [o.name for o in outputs]

    def step():
        res = sess.run(names, feed)
        feed["h0"] = res[0]
        if kind == "lstm":
            feed["c0"] = res[1]

    return median_ns(step, max(200, steps // 10), repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="fewer steps per run")
    args = ap.parse_args()
    steps = 2000 if args.quick else 10000
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cpp = cpp_latencies(args.repeats)
    print(f"{'kind':<5} {'H':>4} {'I':>3} {'C++':>9} {'C++ min':>9} {'read':>7} {'arith':>7} {'Py(out=)':>9} {'Py':>9}"
          f" {'Py-C++':>8} {'ORT':>9} {'torch':>9}   (ns per step, batch 1, float32)")
    for kind in KINDS:
        for I in INPUTS:
            for H in SIZES:
                c, c_min, read, arith = cpp.get((kind, H, I), [float("nan")] * 4)
                p_out, p_new = python_stream(kind, H, I, steps, args.repeats)
                o = onnx_step(kind, H, I, steps, args.repeats)
                t = torch_cell(kind, H, I, steps, args.repeats)
                fmt = lambda v: f"{v:9.0f}" if v is not None else f"{'n/a':>9}"
                print(f"{kind:<5} {H:>4} {I:>3} {c:9.0f} {c_min:9.0f} {read:7.0f} {arith:7.0f} {p_out:9.0f} {p_new:9.0f}"
                      f" {p_out - c:8.0f} {fmt(o)} {fmt(t)}", flush=True)


if __name__ == "__main__":
    main()
