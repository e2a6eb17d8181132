# SPDX-License-Identifier: MIT
"""gc.onnx with the operators' variant attributes (activations with alpha/beta, clip, input_forget,
peepholes P) against ONNX Runtime's CPU kernels and onnx.reference, plus argument errors."""

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import gatecell as gc  # noqa: E402

from builders import COUNT, NAMES, variant_attributes  # noqa: E402
from conftest import CASES, record  # noqa: E402
from helpers import assert_close  # noqa: E402
from onnx_helpers import (GATES, OUTPUTS, make_node, output_to_layout1, random_optional_inputs,  # noqa: E402
                          random_outputs, run_ort, run_reference, to_layout0)


def random_variant_case(seed):
    """A random operator with random variant attributes, inputs and requested outputs (float32)."""
    rng = np.random.default_rng(10_000 + seed)
    op = ("RNN", "GRU", "LSTM")[seed % 3]
    direction = ("forward", "reverse", "bidirectional")[int(rng.integers(3))]
    D = 2 if direction == "bidirectional" else 1
    T, N, I, H = (int(v) for v in rng.integers(1, [7, 5, 5, 6]))
    G = GATES[op]
    attrs = {"direction": direction}
    layout = int(rng.integers(2))
    if layout:
        attrs["layout"] = 1
    if op == "GRU":
        attrs["linear_before_reset"] = int(rng.integers(2))
    # every function at least once in every role over the seeds; other roles random
    names = [NAMES[(seed // 3 + 5 * r) % 11] if r == (seed // 33) % COUNT[op] else NAMES[int(rng.integers(11))]
             for r in range(COUNT[op])]
    if D == 2:  # ONNX Runtime wants both directions' functions (gatecell also takes one list for both)
        names = names + [NAMES[int(rng.integers(11))] for _ in range(COUNT[op])]
    attrs.update(variant_attributes(op, names, rng, 0.6, drop_defaults=True))

    def uniform(*shape, scale=1.0):
        return (scale * rng.uniform(-1, 1, size=shape)).astype(np.float32)

    batch = (N, T) if layout else (T, N)
    feeds = {"X": uniform(*batch, I, scale=2.0), "W": uniform(D, G * H, I, scale=0.8),
             "R": uniform(D, G * H, H, scale=0.5)}  # unbounded gates (Affine, Relu, ...) stay well conditioned
    if rng.random() < 0.7:
        feeds["B"] = uniform(D, 2 * G * H, scale=0.5)
    random_optional_inputs(rng, feeds, op, T, N, D, H, layout, uniform)
    if op == "LSTM" and rng.random() < 0.6:
        feeds["P"] = uniform(D, 3 * H)
    return op, feeds, attrs, random_outputs(rng, op)


RANDOM_CASES = 330  # 110 per operator: every function in every role of each operator


def test_random_cases_cover_every_function_in_every_role():
    seen = set()
    for seed in range(RANDOM_CASES):
        op, _, attrs, _ = random_variant_case(seed)
        seen |= {(op, r % COUNT[op], n) for r, n in enumerate(attrs["activations"])}
    assert seen == {(op, r, n) for op in COUNT for r in range(COUNT[op]) for n in NAMES}


@pytest.mark.parametrize("seed", range(RANDOM_CASES))
def test_random_variants_against_onnxruntime(seed):
    op, feeds, attrs, outputs = random_variant_case(seed)
    # ONNX Runtime runs layout 0 only (the transposition of the same problem) and needs hidden_size.
    layout = attrs.get("layout", 0)
    ref_attrs = {k: v for k, v in attrs.items() if k != "layout"}
    ref_attrs["hidden_size"] = feeds["R"].shape[2]
    ref_feeds = to_layout0(feeds) if layout else feeds
    expected = run_ort(make_node(op, ref_feeds, outputs, **ref_attrs), ref_feeds)
    names = [n for n in outputs if n]
    expected = [output_to_layout1(n, e) if layout else e for n, e in zip(names, expected)]
    for dtype in (np.float32, np.float64):  # float64: the same problem, against ONNX Runtime's float32
        typed = {k: (v.astype(dtype) if v.dtype.kind == "f" else v) for k, v in feeds.items()}
        node = make_node(op, typed, outputs, **attrs)
        got = gc.onnx.run_node(node, [typed.get(n) for n in node.input])
        assert len(got) == len(names)
        for name, g, e in zip(names, got, expected):
            assert g.dtype == dtype
            record("onnxruntime variants", dtype, assert_close(f"{op} {attrs} {name}", g, e, np.float32))
    CASES["onnxruntime variants"] += 1


REFERENCE_CASES = 120


@pytest.mark.parametrize("seed", range(REFERENCE_CASES))
def test_variants_against_onnx_reference(seed):
    """Where onnx.reference implements a variant: the RNN's Affine (one direction: it applies the first
    function to every direction) and the LSTM's peepholes (default functions, no sequence_lens)."""
    rng = np.random.default_rng(20_000 + seed)
    dtype = (np.float32, np.float64)[seed % 2]
    op = ("RNN", "LSTM")[(seed // 2) % 2]
    T, N, I, H = (int(v) for v in rng.integers(1, [7, 5, 5, 6]))
    D = 2 if op == "LSTM" and rng.random() < 0.5 else 1
    G = GATES[op]
    attrs = {"direction": "bidirectional" if D == 2 else "forward", "hidden_size": H}
    feeds = {"X": rng.uniform(-2, 2, (T, N, I)).astype(dtype), "W": rng.uniform(-0.8, 0.8, (D, G * H, I)).astype(dtype),
             "R": rng.uniform(-0.8, 0.8, (D, G * H, H)).astype(dtype),
             "B": rng.uniform(-0.5, 0.5, (D, 2 * G * H)).astype(dtype),
             "initial_h": rng.uniform(-1, 1, (D, N, H)).astype(dtype)}
    if op == "RNN":
        attrs.update(activations=["Affine"], activation_alpha=[float(rng.uniform(0.2, 0.9))],
                     activation_beta=[float(rng.uniform(-0.5, 0.5))])
    else:
        feeds["initial_c"] = rng.uniform(-1, 1, (D, N, H)).astype(dtype)
        feeds["P"] = rng.uniform(-1, 1, (D, 3 * H)).astype(dtype)
    outputs = list(OUTPUTS[:3 if op == "LSTM" else 2])
    node = make_node(op, feeds, outputs, **attrs)
    got = gc.onnx.run_node(node, [feeds.get(n) for n in node.input])
    expected = run_reference(node, feeds)
    for name, g, e in zip(outputs, got, expected):
        record("onnx.reference variants", dtype, assert_close(f"{op} {attrs} {name}", g, e, dtype))
    CASES["onnx.reference variants"] += 1


def _inputs(op="LSTM", D=1, dtype=np.float32):
    rng = np.random.default_rng(0)
    T, N, I, H = 3, 2, 2, 3
    G = GATES[op]
    return (rng.standard_normal((T, N, I)).astype(dtype), rng.standard_normal((D, G * H, I)).astype(dtype),
            rng.standard_normal((D, G * H, H)).astype(dtype))


def test_omitted_parameters_follow_operators_md():
    """ThresholdedRelu without alpha is ThresholdedRelu(alpha=1.0), as Operators.md says ("defaults are
    the same as of the corresponding ONNX operators"); ONNX Runtime 1.32 uses alpha = 0 instead."""
    X, W, R = _inputs("RNN")
    X = 3 * X
    implicit = gc.onnx.rnn(X, W, R, activations=["ThresholdedRelu"])
    explicit = gc.onnx.rnn(X, W, R, activations=["ThresholdedRelu"], activation_alpha=[1.0])
    for a, b in zip(implicit, explicit):
        np.testing.assert_array_equal(a, b)
    feeds = {"X": X, "W": W, "R": R}
    ort_explicit = run_ort(make_node("RNN", feeds, ["Y"], activations=["ThresholdedRelu"], activation_alpha=[1.0],
                                     hidden_size=3), feeds)[0]
    assert_close("ThresholdedRelu", implicit[0], ort_explicit, np.float32)
    for name, params in (("Affine", ([1.0], [0.0])), ("ScaledTanh", ([1.0], [1.0])), ("LeakyRelu", ([0.01], [])),
                         ("HardSigmoid", ([0.2], [0.5])), ("Elu", ([1.0], []))):
        a = gc.onnx.rnn(X, W, R, activations=[name])[0]
        b = gc.onnx.rnn(X, W, R, activations=[name], activation_alpha=params[0],
                        activation_beta=params[1] or None)[0]
        np.testing.assert_array_equal(a, b)


def test_parameters_are_consumed_in_the_order_of_the_functions():
    X, W, R = _inputs("LSTM", D=2)
    kw = dict(direction="bidirectional")
    a = gc.onnx.lstm(X, W, R, activations=["Sigmoid", "LeakyRelu", "Tanh", "HardSigmoid", "Tanh", "Affine"],
                     activation_alpha=[0.3, 0.25, 0.9], activation_beta=[0.6, 0.1], **kw)
    from gatecell.onnx import activation_specs
    assert activation_specs("lstm", 2, ["Sigmoid", "LeakyRelu", "Tanh", "HardSigmoid", "Tanh", "Affine"],
                            [0.3, 0.25, 0.9], [0.6, 0.1]) == [
        ["Sigmoid", 0.0, 0.0], ["LeakyRelu", 0.3, 0.0], ["Tanh", 0.0, 0.0],
        ["HardSigmoid", 0.25, 0.6], ["Tanh", 0.0, 0.0], ["Affine", 0.9, 0.1]]
    assert all(np.all(np.isfinite(v)) for v in a)
    # one direction's list serves both directions
    one = gc.onnx.lstm(X, W, R, activations=["HardSigmoid", "Softsign", "Elu"], **kw)
    both = gc.onnx.lstm(X, W, R, activations=["HardSigmoid", "Softsign", "Elu"] * 2, **kw)
    for u, v in zip(one, both):
        np.testing.assert_array_equal(u, v)


def test_default_functions_given_explicitly_take_the_torch_form_path():
    X, W, R = _inputs("GRU", D=2)
    a = gc.onnx.gru(X, W, R, direction="bidirectional")
    b = gc.onnx.gru(X, W, R, direction="bidirectional", activations=["sigmoid", "TANH"] * 2)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    c = gc.onnx.gru(X, W, R, direction="bidirectional", clip=1e30)  # the variant kernels, a clip that never acts
    for u, v in zip(a, c):
        assert_close("clip 1e30", u, v, np.float32)


@pytest.mark.parametrize("call,exc,match", [
    (lambda X, W, R: gc.onnx.lstm(X, W, R, activations=["Sigmoid", "Swish", "Tanh"]), ValueError,
     "activations: expected names among"),
    (lambda X, W, R: gc.onnx.lstm(X, W, R, activations=["Sigmoid", "Tanh"]), ValueError, "expected 3 names"),
    (lambda X, W, R: gc.onnx.lstm(X, W, R, activation_alpha=[0.5]), ValueError, "left over"),
    (lambda X, W, R: gc.onnx.lstm(X, W, R, activations=["Elu", "Tanh", "Tanh"], activation_alpha=[0.5, 0.2]),
     ValueError, "1 alpha and 0 beta value"),
    (lambda X, W, R: gc.onnx.lstm(X, W, R, activations=["Elu", "Tanh", "Tanh"], activation_alpha=["x"]),
     TypeError, "activation_alpha: expected a list of floats"),
    (lambda X, W, R: gc.onnx.lstm(X, W, R, clip=0.0), ValueError, "clip: expected a positive"),
    (lambda X, W, R: gc.onnx.lstm(X, W, R, clip=-2.0), ValueError, "clip"),
    (lambda X, W, R: gc.onnx.lstm(X, W, R, input_forget=2), ValueError, "input_forget: expected 0 or 1"),
    (lambda X, W, R: gc.onnx.lstm(X, W, R, P=np.zeros((1, 12), np.float32)), ValueError,
     r"P: expected shape \(1, 9\)"),
    (lambda X, W, R: gc.onnx.lstm(X, W, R, P=np.zeros((1, 9), np.float64)), TypeError, "P: expected dtype float32"),
])
def test_bad_variant_attributes(call, exc, match):
    with pytest.raises(exc, match=match):
        call(*_inputs())


def test_run_node_passes_every_variant_attribute():
    from onnx import helper

    X, W, R = _inputs("LSTM")
    P = np.random.default_rng(2).standard_normal((1, 9)).astype(np.float32)
    attrs = dict(activations=["HardSigmoid", "Softplus", "ScaledTanh"], activation_alpha=[0.3, 1.2],
                 activation_beta=[0.4, 0.8], clip=0.9, input_forget=1)
    node = helper.make_node("LSTM", ["X", "W", "R", "", "", "", "", "P"], ["Y", "Y_h", "Y_c"], **attrs)
    got = gc.onnx.run_node(node, [X, W, R, None, None, None, None, P])
    expected = gc.onnx.lstm(X, W, R, P=P, **attrs)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)
    feeds = {"X": X, "W": W, "R": R, "P": P}
    ort = run_ort(make_node("LSTM", feeds, ["Y", "Y_h", "Y_c"], hidden_size=3, **attrs), feeds)
    for g, e in zip(got, ort):
        assert_close("LSTM variants", g, e, np.float32)
