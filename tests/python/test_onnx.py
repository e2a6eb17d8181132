# SPDX-License-Identifier: MIT
"""gc.onnx against the ONNX project's node tests, ONNX Runtime's CPU kernels and onnx.reference."""

import numpy as np
import pytest

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import gatecell as gc  # noqa: E402

from conftest import CASES, record  # noqa: E402
from helpers import assert_close  # noqa: E402
from onnx_helpers import (GATES, OUTPUTS, make_node, node_cases, output_to_layout1,  # noqa: E402
                          run_ort, run_reference, to_layout0)

NODE_CASES = node_cases()


@pytest.mark.parametrize("case", NODE_CASES, ids=[c[0] for c in NODE_CASES])
def test_onnx_node_case(case):
    name, node, inputs, expected = case
    got = gc.onnx.run_node(node, inputs)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype
        record("onnx node tests", e.dtype, assert_close(name, g, e, e.dtype))
    CASES["onnx node tests"] += 1


def test_node_cases_cover_every_operator():
    ops = {c[1].op_type for c in NODE_CASES}
    assert ops == {"RNN", "GRU", "LSTM"} and len(NODE_CASES) >= 18
    assert "test_lstm_with_peepholes" in {c[0] for c in NODE_CASES}


def random_case(seed, dtype=None, reference=False):
    """A random operator, attributes (torch-form cells; test_onnx_variants.py draws the variants), inputs
    and requested outputs.

    dtype: that of every float input; None picks float32 or float64 at random
    reference: only what onnx.reference runs (it ignores sequence_lens and knows no Relu)
    """
    rng = np.random.default_rng(seed)
    op = ("RNN", "GRU", "LSTM")[seed % 3]
    drawn = (np.float32, np.float64)[int(rng.integers(2))]
    dtype = dtype or drawn
    direction = ("forward", "reverse", "bidirectional")[int(rng.integers(3))]
    D = 2 if direction == "bidirectional" else 1
    T, N, I, H = (int(v) for v in rng.integers(1, [7, 5, 5, 6]))
    G = GATES[op]
    layout = int(rng.integers(2))
    attrs = {"direction": direction}
    if layout:
        attrs["layout"] = 1
    if rng.random() < 0.5:
        attrs["hidden_size"] = H
    if op == "GRU":
        attrs["linear_before_reset"] = int(rng.integers(2))
    if op == "RNN" and rng.random() < 0.6 and not reference:
        attrs["activations"] = [("Tanh", "Relu")[int(rng.integers(2))] for _ in range(D)]
    elif rng.random() < 0.2:
        attrs["activations"] = {"GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}.get(op, ["Tanh"]) * D

    def uniform(*shape, scale=1.0):
        return (scale * rng.uniform(-1, 1, size=shape)).astype(dtype)

    batch = (N, T) if layout else (T, N)
    feeds = {"X": uniform(*batch, I), "W": uniform(D, G * H, I, scale=0.8), "R": uniform(D, G * H, H, scale=0.8)}
    if rng.random() < 0.7:
        feeds["B"] = uniform(D, 2 * G * H, scale=0.5)
    if rng.random() < 0.5 and not reference:
        feeds["sequence_lens"] = rng.integers(0 if rng.random() < 0.3 else 1, T + 1, size=N).astype(np.int32)
    state = (N, D, H) if layout else (D, N, H)
    if rng.random() < 0.5:
        feeds["initial_h"] = uniform(*state)
    if op == "LSTM" and rng.random() < 0.5:
        feeds["initial_c"] = uniform(*state)
    n_out = 3 if op == "LSTM" else 2
    outputs = [name if rng.random() < 0.7 else "" for name in OUTPUTS[:n_out]]
    if not any(outputs):
        k = int(rng.integers(n_out))
        outputs[k] = OUTPUTS[k]
    while not outputs[-1]:
        outputs.pop()
    return op, feeds, attrs, outputs


RANDOM_CASES = 600


@pytest.mark.parametrize("seed", range(RANDOM_CASES))
def test_random_attributes_against_onnxruntime(seed):
    op, feeds, attrs, outputs = random_case(seed, np.float32)  # ONNX Runtime's kernels are float32 only
    node = make_node(op, feeds, outputs, **attrs)
    got = gc.onnx.run_node(node, [feeds.get(n) for n in node.input])
    # ONNX Runtime rejects layout=1 (it runs the layout-0 transposition of the same problem) and
    # requires hidden_size.
    layout = attrs.get("layout", 0)
    ref_attrs = {k: v for k, v in attrs.items() if k != "layout"}
    ref_attrs["hidden_size"] = feeds["R"].shape[2]
    ref_feeds = to_layout0(feeds) if layout else feeds
    ref_node = make_node(op, ref_feeds, outputs, **ref_attrs)
    expected = run_ort(ref_node, ref_feeds)
    names = [n for n in outputs if n]
    assert len(got) == len(expected) == len(names)
    dtype = feeds["X"].dtype
    for name, g, e in zip(names, got, expected):
        e = output_to_layout1(name, e) if layout else e
        assert g.dtype == dtype
        record("onnxruntime random", dtype, assert_close(f"{op} {attrs} {name}", g, e, dtype))
    CASES["onnxruntime random"] += 1


@pytest.mark.parametrize("seed", range(RANDOM_CASES // 2))
def test_random_attributes_against_onnx_reference(seed):
    op, feeds, attrs, _ = random_case(seed, reference=True)
    outputs = list(OUTPUTS[:3 if op == "LSTM" else 2])
    node = make_node(op, feeds, outputs, **attrs)
    got = gc.onnx.run_node(node, [feeds.get(n) for n in node.input])
    expected = run_reference(node, feeds)
    dtype = feeds["X"].dtype
    for name, g, e in zip(outputs, got, expected):
        record("onnx.reference random", dtype, assert_close(f"{op} {attrs} {name}", g, e, dtype))
    CASES["onnx.reference random"] += 1


def _lstm_inputs(dtype=np.float32, D=1):
    rng = np.random.default_rng(0)
    T, N, I, H = 3, 2, 2, 3
    return (rng.standard_normal((T, N, I)).astype(dtype), rng.standard_normal((D, 4 * H, I)).astype(dtype),
            rng.standard_normal((D, 4 * H, H)).astype(dtype))


def test_run_node_aligns_inputs_and_outputs():
    from onnx import helper

    X, W, R = _lstm_inputs(D=2)
    h0 = np.random.default_rng(3).standard_normal((2, 2, 3)).astype(np.float32)
    node = helper.make_node("LSTM", ["X", "W", "R", "", "", "h0"], ["", "", "Y_c"], direction="bidirectional")
    (Y_c,) = gc.onnx.run_node(node, [X, W, R, None, None, h0])
    _, _, expected = gc.onnx.lstm(X, W, R, initial_h=h0, direction="bidirectional")
    assert np.array_equal(Y_c, expected)
    with pytest.raises(ValueError, match="aligned with node.input"):
        gc.onnx.run_node(node, [X, W, R])
    with pytest.raises(ValueError, match="expected an RNN, GRU or LSTM"):
        gc.onnx.run_node(helper.make_node("Relu", ["X"], ["Y"]), [X])
    with pytest.raises(ValueError, match="unknown LSTM attribute 'linear_before_reset'"):
        gc.onnx.run_node(helper.make_node("LSTM", ["X", "W", "R"], ["Y"], linear_before_reset=1), [X, W[:1], R[:1]])
    with pytest.raises(TypeError, match="NodeProto"):
        gc.onnx.run_node("LSTM", [X, W, R])


def test_bad_inputs_name_the_argument():
    X, W, R = _lstm_inputs()
    with pytest.raises(TypeError, match="W: expected dtype float32"):
        gc.onnx.lstm(X, W.astype(np.float64), R)
    with pytest.raises(TypeError, match="X: expected dtype float32 or float64"):
        gc.onnx.lstm(X.astype(np.float16), W, R)
    with pytest.raises(ValueError, match="W: expected shape"):
        gc.onnx.lstm(X, W[:, :, :1], R)
    with pytest.raises(ValueError, match=r"R: expected shape \(2, 12, 3\)"):
        gc.onnx.lstm(X, W, R, direction="bidirectional")
    with pytest.raises(ValueError, match="hidden_size: expected 3"):
        gc.onnx.lstm(X, W, R, hidden_size=4)
    with pytest.raises(ValueError, match="direction"):
        gc.onnx.lstm(X, W, R, direction="backward")
    with pytest.raises(ValueError, match="layout"):
        gc.onnx.lstm(X, W, R, layout=2)
    with pytest.raises(ValueError, match=r"sequence_lens: every value must be in \[0, 3\]"):
        gc.onnx.lstm(X, W, R, sequence_lens=np.array([4, 1], np.int32))
    with pytest.raises(TypeError, match="sequence_lens"):
        gc.onnx.lstm(X, W, R, sequence_lens=np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="initial_h: expected shape"):
        gc.onnx.lstm(X, W, R, initial_h=np.zeros((1, 3, 3), np.float32))
    with pytest.raises(ValueError, match="initial_c: expected shape"):
        gc.onnx.lstm(X, W, R, initial_c=np.zeros((2, 1, 3), np.float32), layout=1)
    with pytest.raises(ValueError, match="B: expected shape"):
        gc.onnx.lstm(X, W, R, B=np.zeros((1, 12), np.float32))
    with pytest.raises(ValueError, match="linear_before_reset"):
        gc.onnx.gru(X, W[:, :9], R[:, :9], linear_before_reset=2)
