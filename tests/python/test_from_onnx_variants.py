# SPDX-License-Identifier: MIT
"""gc.from_onnx on nodes beyond torch's layers: direction="reverse", checked against ONNX Runtime.

Each model holds one RNN/GRU/LSTM node made with onnx.helper, its weights as initializers and X,
sequence_lens and the initial states as graph inputs; the layer from_onnx returns, run on the
same inputs, must give ONNX Runtime's Y and Y_h (and Y_c).
"""

import itertools

import numpy as np
import pytest

import gatecell as gc

from conftest import CASES, record
from helpers import assert_close

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx_helpers import GATES, INPUTS  # noqa: E402
from builders import COUNT, NAMES, variant_attributes  # noqa: E402

T, N, I, H = 5, 3, 4, 3


def weight_model(op, weights, attributes, dtype, with_state):
    """A one-node model: weights (W, R, B, P) as initializers; X, sequence_lens, initial states as inputs."""
    from onnx import TensorProto, helper, numpy_helper

    element = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    D = weights["W"].shape[0]
    inputs = [helper.make_tensor_value_info("X", element, [T, N, I]),
              helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, [N])]
    names = {"X": "X", "sequence_lens": "sequence_lens"}
    if with_state:
        for s in ("initial_h", "initial_c") if op == "LSTM" else ("initial_h",):
            inputs.append(helper.make_tensor_value_info(s, element, [D, N, H]))
            names[s] = s
    inits = []
    for k, v in weights.items():
        if v is not None:
            inits.append(numpy_helper.from_array(v, k.lower()))
            names[k] = k.lower()
    node_inputs = [names.get(n, "") for n in INPUTS[op]]
    while not node_inputs[-1]:
        node_inputs.pop()
    outputs = ["Y", "Y_h", "Y_c"] if op == "LSTM" else ["Y", "Y_h"]
    node = helper.make_node(op, node_inputs, outputs, name="rnn_node", hidden_size=H, **attributes)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info(o, element, None) for o in outputs],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)


def run_both(model, op, feeds, dtype):
    """(ORT outputs, gatecell outputs in ONNX's layout 0) for the model's single layer."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)
    (layer,) = gc.from_onnx(model)
    layer.eval()
    state = None
    if "initial_h" in feeds:
        state = (feeds["initial_h"], feeds["initial_c"]) if op == "LSTM" else feeds["initial_h"]
    y, s_n = layer(feeds["X"], state, lengths=feeds["sequence_lens"].astype(np.int64))
    D = 2 if layer.bidirectional else 1
    got = [y.reshape(T, N, D, H).transpose(0, 2, 1, 3)] + (list(s_n) if op == "LSTM" else [s_n])
    return expected, got, layer


def random_feeds(op, rng, dtype, with_state, D=1):
    feeds = {"X": rng.standard_normal((T, N, I)).astype(dtype),
             "sequence_lens": rng.integers(1, T + 1, size=N).astype(np.int32)}
    if with_state:
        feeds["initial_h"] = rng.standard_normal((D, N, H)).astype(dtype)
        if op == "LSTM":
            feeds["initial_c"] = rng.standard_normal((D, N, H)).astype(dtype)
    return feeds


def random_weights(op, rng, dtype, bias, D=1):
    G = GATES[op]
    return {"W": rng.uniform(-1, 1, (D, G * H, I)).astype(dtype), "R": rng.uniform(-1, 1, (D, G * H, H)).astype(dtype),
            "B": rng.uniform(-1, 1, (D, 2 * G * H)).astype(dtype) if bias else None}


@pytest.mark.parametrize("op,lbr,bias,with_state", [
    (op, lbr, bias, st) for op in ("RNN", "GRU", "LSTM") for lbr in ((0, 1) if op == "GRU" else (0,))
    for bias, st in itertools.product([False, True], [False, True])])
def test_reverse_node_against_onnxruntime(op, lbr, bias, with_state):
    rng = np.random.default_rng(len(op) * 10 + lbr * 4 + bias * 2 + with_state)
    attrs = {"direction": "reverse"}
    if op == "GRU":
        attrs["linear_before_reset"] = lbr
    weights = random_weights(op, rng, np.float32, bias)
    feeds = random_feeds(op, rng, np.float32, with_state)
    expected, got, layer = run_both(weight_model(op, weights, attrs, np.float32, with_state), op, feeds, np.float32)
    assert layer.reverse and not layer.bidirectional
    errors = [assert_close(name, g, e, np.float32) for name, g, e in zip(("Y", "Y_h", "Y_c"), got, expected)]
    CASES["from_onnx reverse vs onnxruntime"] += 1
    record("from_onnx reverse vs onnxruntime", np.float32, max(errors))


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_reverse_node_float64_against_run_node(op):
    """float64 (which ORT's RNN kernel lacks): the layer equals gc.onnx.run_node on the same node."""
    rng = np.random.default_rng(5)
    weights = random_weights(op, rng, np.float64, True)
    feeds = random_feeds(op, rng, np.float64, True)
    model = weight_model(op, weights, {"direction": "reverse"}, np.float64, True)
    node = model.graph.node[0]
    values = dict(feeds, **{k.lower(): v for k, v in weights.items()})
    expected = gc.onnx.run_node(node, [values[n] if n else None for n in node.input])
    (layer,) = gc.from_onnx(model)
    state = (feeds["initial_h"], feeds["initial_c"]) if op == "LSTM" else feeds["initial_h"]
    y, s_n = layer.eval()(feeds["X"], state, lengths=feeds["sequence_lens"].astype(np.int64))
    got = [y.reshape(T, N, 1, H).transpose(0, 2, 1, 3)] + (list(s_n) if op == "LSTM" else [s_n])
    errors = [assert_close(name, g, e, np.float64) for name, g, e in zip(("Y", "Y_h", "Y_c"), got, expected)]
    CASES["from_onnx reverse vs run_node"] += 1
    record("from_onnx reverse vs run_node", np.float64, max(errors))


def random_variant_attributes(op, rng):
    """direction, activations (each direction its own), alpha/beta for every
    function that takes them (ONNX Runtime substitutes 0 for missing ones, see gc.onnx), clip, ..."""
    direction = ["forward", "reverse", "bidirectional"][rng.integers(3)]
    D = 2 if direction == "bidirectional" else 1
    per = COUNT[op] * D  # ONNX Runtime refuses one list for both directions, which gc.onnx accepts
    names = [NAMES[k] for k in rng.integers(0, len(NAMES), per)]
    attrs = {"direction": direction, **variant_attributes(op, names, rng, 0.5, drop_defaults=False)}
    if op == "GRU":
        attrs["linear_before_reset"] = int(rng.integers(2))
    return attrs, D


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_variant_nodes_against_onnxruntime(op):
    """Random activations (any of the eleven, per direction), alpha/beta, clip, input_forget, P."""
    rng = np.random.default_rng({"RNN": 1, "GRU": 2, "LSTM": 3}[op])
    errors = []
    for case in range(40):
        attrs, D = random_variant_attributes(op, rng)
        # Weights in [-0.5, 0.5]: unbounded functions (Relu gates times Softplus ...) stay far from
        # float32 overflow, where ONNX Runtime's Softplus gives inf and then NaN (0 * inf).
        weights = {k: None if v is None else v / 2 for k, v in
                   random_weights(op, rng, np.float32, bool(rng.integers(2)), D).items()}
        if op == "LSTM" and rng.random() < 0.6:
            weights["P"] = rng.uniform(-1, 1, (D, 3 * H)).astype(np.float32)
        feeds = random_feeds(op, rng, np.float32, bool(rng.integers(2)), D)
        expected, got, layer = run_both(weight_model(op, weights, attrs, np.float32, "initial_h" in feeds),
                                        op, feeds, np.float32)
        assert layer.reverse == (attrs["direction"] == "reverse")
        assert (layer.config().get("peepholes", False)) == ("P" in weights)
        for name, g, e in zip(("Y", "Y_h", "Y_c"), got, expected):
            errors.append(assert_close(f"case {case} {attrs} {name}", g, e, np.float32))
        CASES["from_onnx variants vs onnxruntime"] += 1
    record("from_onnx variants vs onnxruntime", np.float32, max(errors))


def test_variant_layer_round_trips_through_onnx_weights():
    """from_onnx's layer holds P as weight_peep (i, f, o), and converts back to the node's P exactly."""
    rng = np.random.default_rng(9)
    weights = random_weights("LSTM", rng, np.float32, True, 2)
    weights["P"] = rng.uniform(-1, 1, (2, 3 * H)).astype(np.float32)
    attrs = {"direction": "bidirectional", "activations": ["HardSigmoid", "Softsign", "Elu"],
             "activation_alpha": [0.3, 0.8], "activation_beta": [0.45], "clip": 1.5, "input_forget": 1}
    (layer,) = gc.from_onnx(weight_model("LSTM", weights, attrs, np.float32, False))
    cfg = layer.config()
    assert cfg["clip"] == np.float32(1.5) and cfg["input_forget"] and cfg["peepholes"]
    assert cfg["activations"] == [["HardSigmoid", pytest.approx(0.3), pytest.approx(0.45)], ["Softsign", 0.0, 0.0],
                                  ["Elu", pytest.approx(0.8), 0.0]] * 2
    back = gc.convert.torch_to_onnx("lstm", layer.state_dict())
    for k in ("W", "R", "B", "P"):
        assert np.array_equal(back[k], weights[k]), k
