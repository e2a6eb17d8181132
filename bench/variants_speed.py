# SPDX-License-Identifier: MIT
"""Speed of the cell variants: gatecell.onnx against ONNX Runtime on the same ONNX node (inference),
and gatecell's training step (forward + backward) of the same layer against the torch-form layer of
the same kind and size (Sigmoid/Tanh, or Relu for rnn-relu-clip); float32, medians of alternating rounds,
at each thread count. The two ratios compare within one process, so they hold on a loaded machine
where absolute times do not.

python bench/variants_speed.py [--threads 1 2] [--rounds 7] [--json out.json]
"""

import argparse
import json
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

import gatecell as gc

T, N, I, H = 100, 32, 128, 256
# name, ONNX op, attributes, gatecell layer arguments (same functions in gatecell's spelling)
CASES = [
    ("lstm-peepholes", "LSTM", {}, {"peepholes": True}),
    ("lstm-clip-input_forget", "LSTM", {"clip": 3.0, "input_forget": 1}, {"clip": 3.0, "input_forget": True}),
    ("gru-hardsigmoid-softsign", "GRU", {"activations": ["HardSigmoid", "Softsign"],
                                         "activation_alpha": [0.2], "activation_beta": [0.5]},
     {"activations": [("HardSigmoid", 0.2, 0.5), "Softsign"]}),
    # Relu alone is torch's rnn_relu (gatecell runs it on the torch-form kernel); the clip makes it a variant
    ("rnn-relu-clip", "RNN", {"activations": ["Relu"], "clip": 5.0}, {"activations": ["Relu"], "clip": 5.0}),
    ("rnn-leakyrelu", "RNN", {"activations": ["LeakyRelu"], "activation_alpha": [0.1]},
     {"activations": [("LeakyRelu", 0.1)]}),
]
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
LAYER = {"RNN": gc.RNN, "GRU": gc.GRU, "LSTM": gc.LSTM}


def inputs(op, rng):
    G = GATES[op]
    feeds = {"X": rng.uniform(-1, 1, (T, N, I)), "W": 0.1 * rng.uniform(-1, 1, (1, G * H, I)),
             "R": 0.1 * rng.uniform(-1, 1, (1, G * H, H)), "B": 0.1 * rng.uniform(-1, 1, (1, 2 * G * H))}
    if op == "LSTM":
        feeds["P"] = 0.1 * rng.uniform(-1, 1, (1, 3 * H))
    return {k: v.astype(np.float32) for k, v in feeds.items()}


def ort_session(op, attrs, feeds, threads):
    names = ["X", "W", "R", "B", "", "", ""] + (["P"] if op == "LSTM" else [])
    names = names[:6] if op != "LSTM" else names
    node = helper.make_node(op, names, ["Y"], hidden_size=H, **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape)
                                            for k, v in feeds.items()],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # leave the core to the other side
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def gatecell_inference(op, attrs, feeds):
    fn = {"RNN": gc.onnx.rnn, "GRU": gc.onnx.gru, "LSTM": gc.onnx.lstm}[op]
    return lambda: fn(**feeds, **attrs)[0]


def gatecell_training(op, layer_args):
    """One training step (forward, backward of every gradient) of the layer with layer_args."""
    m = LAYER[op](I, H, seed=0, dtype=np.float32, **layer_args).train()
    x = np.random.default_rng(1).uniform(-1, 1, (T, N, I)).astype(np.float32)

    def step():
        y, _ = m.forward(x)
        m.zero_grad()
        m.backward(np.ones_like(y))
    return step


def median_ms(fns, rounds):
    for f in fns:
        f()
    times = [[] for _ in fns]
    for _ in range(rounds):
        for f, ts in zip(fns, times):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
    return [1e3 * statistics.median(ts) for ts in times]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--json")
    args = p.parse_args()
    rows = []
    print(f"T={T} N={N} I={I} H={H} float32; ms are medians of {args.rounds} alternating rounds")
    print(f"{'case':28} {'thr':>3} {'gatecell':>9} {'ORT':>9} {'ORT/gc':>7} {'train gc':>9} {'torch-form':>10}"
          f" {'tf/gc':>6}")
    for threads in args.threads:
        gc.set_num_threads(threads)
        for name, op, attrs, layer_args in CASES:
            feeds = inputs(op, np.random.default_rng(0))
            sess = ort_session(op, attrs, feeds, threads)
            ort_run = lambda: sess.run(["Y"], feeds)[0]  # noqa: E731
            ours = gatecell_inference(op, attrs, feeds)
            y_ort, y_gc = ort_run(), ours()
            err = float(np.max(np.abs(y_ort - y_gc)))
            g_ms, o_ms = median_ms([ours, ort_run], args.rounds)
            torch_form = {"nonlinearity": "relu"} if name == "rnn-relu-clip" else {}
            t_ms, tf_ms = median_ms([gatecell_training(op, layer_args), gatecell_training(op, torch_form)],
                                    max(3, args.rounds // 2))
            rows.append({"case": name, "threads": threads, "gatecell_ms": g_ms, "ort_ms": o_ms,
                         "train_ms": t_ms, "torch_form_train_ms": tf_ms, "max_abs_diff": err})
            print(f"{name:28} {threads:3d} {g_ms:9.2f} {o_ms:9.2f} {o_ms / g_ms:7.2f} {t_ms:9.2f} {tf_ms:10.2f}"
                  f" {tf_ms / t_ms:6.2f}   (max |gc - ORT| {err:.1e})", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
