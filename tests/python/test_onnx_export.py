# SPDX-License-Identifier: MIT
"""gc.from_onnx on models written by torch.onnx.export, and on the graph patterns it documents."""

import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

import gatecell as gc  # noqa: E402

from conftest import CASES, record  # noqa: E402
from helpers import assert_close  # noqa: E402

T, N, I, H = 6, 3, 4, 5

# (torch module, kwargs, gatecell class)
NETWORKS = {"rnn_tanh": (torch.nn.RNN, {}, gc.RNN), "rnn_relu": (torch.nn.RNN, {"nonlinearity": "relu"}, gc.RNN),
            "lstm": (torch.nn.LSTM, {}, gc.LSTM), "gru": (torch.nn.GRU, {}, gc.GRU)}


def export(module, x, dynamo):
    """The model torch.onnx.export writes for `module`.

    dynamo=False: the TorchScript exporter (deprecated, still in torch 2.13), one node per layer;
    dynamo=True: torch 2.13's default exporter (needs onnxscript); it writes LSTM and GRU nodes but
    unrolls RNN into MatMul/Tanh, which from_onnx then cannot see.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            return torch.onnx.export(module, (x,), dynamo=True, verbose=False).model_proto
        f = io.BytesIO()
        torch.onnx.export(module, (x,), f, dynamo=False)
    return onnx.load_from_string(f.getvalue())


CASES_EXPORT = [(name, bidirectional, False) for name in sorted(NETWORKS) for bidirectional in (False, True)]
CASES_EXPORT += [("lstm", True, True), ("gru", False, True)]


@pytest.mark.parametrize("name,bidirectional,dynamo", CASES_EXPORT)
def test_from_onnx_reproduces_torch(name, bidirectional, dynamo):
    if dynamo:
        pytest.importorskip("onnxscript")
    cls, kwargs, gc_cls = NETWORKS[name]
    # batch_first and bias vary with the case so that every one of them is exported at least once.
    batch_first, bias = bidirectional, name != "gru" or bidirectional
    torch.manual_seed(len(name) + bidirectional)
    module = cls(I, H, num_layers=2, bidirectional=bidirectional, batch_first=batch_first, bias=bias, **kwargs).eval()
    x = torch.randn((N, T, I) if batch_first else (T, N, I))
    with torch.no_grad():
        y_torch, state = module(x)
    h_torch = (state[0] if name == "lstm" else state).numpy()

    layers = gc.from_onnx(export(module, x, dynamo))
    assert len(layers) == 2  # torch writes one node per layer
    D = 2 if bidirectional else 1
    out, out_batch_first, h_n = x.numpy(), batch_first, []
    for k, layer in enumerate(layers):
        assert isinstance(layer, gc_cls) and layer.num_layers == 1 and layer.bidirectional == bidirectional
        assert layer.input_size == (I if k == 0 else D * H) and layer.hidden_size == H and layer.bias == bias
        if name.startswith("rnn"):
            assert layer.nonlinearity == name[4:]
        if name == "gru":
            assert layer.linear_before_reset  # torch's form, exported as linear_before_reset=1
        # The exporter may transpose batch-first inputs itself (layout 0) or write layout=1 nodes.
        out = out.transpose(1, 0, 2) if layer.batch_first != out_batch_first else out
        out_batch_first = layer.batch_first
        out, s = layer.eval()(np.ascontiguousarray(out))
        h_n.append(s[0] if name == "lstm" else s)
    out = out.transpose(1, 0, 2) if out_batch_first != batch_first else out
    record("from_onnx vs torch", np.float32, assert_close("out", out, y_torch.numpy(), np.float32))
    assert_close("h_n", np.concatenate(h_n), h_torch, np.float32)
    CASES["from_onnx vs torch"] += 1


def _graph_model(nodes, initializers, op="LSTM"):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, N, I])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def test_from_onnx_follows_constant_and_identity():
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    W = rng.standard_normal((1, 4 * H, I)).astype(np.float32)
    R = rng.standard_normal((1, 4 * H, H)).astype(np.float32)
    B = rng.standard_normal((1, 8 * H)).astype(np.float32)
    nodes = [helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(W)),
             helper.make_node("Identity", ["r_init"], ["r1"]), helper.make_node("Identity", ["r1"], ["r"]),
             helper.make_node("LSTM", ["X", "w", "r", "b"], ["Y"], hidden_size=H, layout=0)]
    model = _graph_model(nodes, [numpy_helper.from_array(R, "r_init"), numpy_helper.from_array(B, "b")])
    (layer,) = gc.from_onnx(model)
    expected = gc.convert.onnx_to_torch("lstm", W, R, B)
    for k, v in expected.items():
        assert np.array_equal(layer.parameters()[k], v), k
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    y, _ = layer.eval()(x)
    Y, _, _ = gc.onnx.lstm(x, W, R, B)
    assert_close("Y", y, Y[:, 0], np.float32)


def test_from_onnx_refuses_what_it_cannot_hold():
    from onnx import helper, numpy_helper

    W = np.zeros((1, 4 * H, I), np.float32)
    R = np.zeros((1, 4 * H, H), np.float32)
    inits = [numpy_helper.from_array(W, "w"), numpy_helper.from_array(R, "r")]
    computed = [helper.make_node("Neg", ["w"], ["w2"]), helper.make_node("LSTM", ["X", "w2", "r"], ["Y"])]
    with pytest.raises(NotImplementedError, match="computed by the graph"):
        gc.from_onnx(_graph_model(computed, inits))
    sideways = [helper.make_node("LSTM", ["X", "w", "r"], ["Y"], direction="sideways")]
    with pytest.raises(ValueError, match="direction"):
        gc.from_onnx(_graph_model(sideways, inits))
    clipped = [helper.make_node("LSTM", ["X", "w", "r"], ["Y"], clip=-1.0)]
    with pytest.raises(ValueError, match="clip"):
        gc.from_onnx(_graph_model(clipped, inits))
    with pytest.raises(TypeError, match="model"):
        gc.from_onnx(42)
