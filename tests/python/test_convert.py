# SPDX-License-Identifier: MIT
"""Weight converters between torch.nn, ONNX and Keras layouts: exact round trips, right gate orders."""

import numpy as np
import pytest

import gatecell as gc
from gatecell import convert

from conftest import CASES, record
from helpers import assert_close

KINDS = ("rnn", "lstm", "gru")
G = convert.GATES


def bitwise_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same_dict(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert bitwise_equal(a[k], b[k]), k


def random_state_dict(kind, I, H, layer, bidirectional, bias, dtype, seed):
    """torch.nn-named weights of one layer with every value distinct (so any misplaced block shows)."""
    rng = np.random.default_rng(seed)
    sd = {}
    for d in range(2 if bidirectional else 1):
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        sd["weight_ih" + sfx] = rng.standard_normal((G[kind] * H, I)).astype(dtype)
        sd["weight_hh" + sfx] = rng.standard_normal((G[kind] * H, H)).astype(dtype)
        if bias:
            sd["bias_ih" + sfx] = rng.standard_normal(G[kind] * H).astype(dtype)
            sd["bias_hh" + sfx] = rng.standard_normal(G[kind] * H).astype(dtype)
    return sd


GRID = [(kind, bidir, bias, dtype, layer) for kind in KINDS for bidir in (False, True) for bias in (False, True)
        for dtype in (np.float32, np.float64) for layer in (0, 1)]


@pytest.mark.parametrize("kind,bidirectional,bias,dtype,layer", GRID)
def test_torch_onnx_round_trips_are_bitwise(kind, bidirectional, bias, dtype, layer):
    sd = random_state_dict(kind, 3, 4, layer, bidirectional, bias, dtype, seed=len(kind) + layer)
    onnx_w = convert.torch_to_onnx(kind, sd, layer)
    D = 2 if bidirectional else 1
    assert onnx_w["W"].shape == (D, G[kind] * 4, 3) and onnx_w["R"].shape == (D, G[kind] * 4, 4)
    assert (onnx_w["B"] is None) == (not bias) and (not bias or onnx_w["B"].shape == (D, 2 * G[kind] * 4))
    assert_same_dict(convert.onnx_to_torch(kind, **onnx_w, layer=layer), sd)
    back = convert.torch_to_onnx(kind, convert.onnx_to_torch(kind, **onnx_w, layer=layer), layer)
    for k in ("W", "R", "B"):
        assert (back[k] is None and onnx_w[k] is None) or bitwise_equal(back[k], onnx_w[k])
    CASES["converter round trips"] += 1


KERAS_FORMS = [("rnn", True), ("lstm", True), ("gru", True), ("gru", False)]  # (kind, reset_after)


@pytest.mark.parametrize("kind,reset_after", KERAS_FORMS)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_keras_round_trips(kind, reset_after, bias, reverse):
    rng = np.random.default_rng(7)
    I, H = 3, 5
    kernel = rng.standard_normal((I, G[kind] * H)).astype(np.float32)
    recurrent = rng.standard_normal((H, G[kind] * H)).astype(np.float32)
    b = None
    if bias:
        b = rng.standard_normal((2, G[kind] * H) if kind == "gru" and reset_after else G[kind] * H)
        b = b.astype(np.float32)
        b.flat[0] = -0.0  # survives the trip bitwise too
    # Keras -> torch -> Keras, and Keras -> ONNX -> Keras: bitwise.
    sd = convert.keras_to_torch(kind, kernel, recurrent, b, layer=1, reverse=reverse)
    for got in (convert.torch_to_keras(kind, sd, layer=1, reverse=reverse, reset_after=reset_after),
                convert.onnx_to_keras(kind, **convert.keras_to_onnx(kind, (kernel, recurrent, b)),
                                      reset_after=reset_after)):
        assert bitwise_equal(got[0], kernel) and bitwise_equal(got[1], recurrent)
        assert (got[2] is None) == (b is None) and (b is None or bitwise_equal(got[2], b))
    # torch -> Keras -> torch: bitwise where Keras keeps two biases, else b_ih + b_hh is kept.
    sd = random_state_dict(kind, I, H, 0, True, bias, np.float64, seed=3)
    back = convert.keras_to_torch(kind, *convert.torch_to_keras(kind, sd, reverse=reverse, reset_after=reset_after),
                                  reverse=reverse)
    sfx = "_l0_reverse" if reverse else "_l0"
    for name in ("weight_ih", "weight_hh"):
        assert bitwise_equal(back[name + sfx], sd[name + sfx])
    if bias and kind == "gru" and reset_after:
        assert bitwise_equal(back["bias_ih" + sfx], sd["bias_ih" + sfx])
        assert bitwise_equal(back["bias_hh" + sfx], sd["bias_hh" + sfx])
    elif bias:
        assert bitwise_equal(back["bias_ih" + sfx] + back["bias_hh" + sfx], sd["bias_ih" + sfx] + sd["bias_hh" + sfx])
    # Keras (forward, backward) -> ONNX bidirectional -> each direction back.
    onnx_w = convert.keras_to_onnx(kind, (kernel, recurrent, b), (kernel[:, ::-1], recurrent[::-1], b))
    got = convert.onnx_to_keras(kind, **onnx_w, direction=1, reset_after=reset_after)
    assert bitwise_equal(got[0], np.ascontiguousarray(kernel[:, ::-1]))
    assert bitwise_equal(got[1], np.ascontiguousarray(recurrent[::-1]))
    CASES["converter round trips"] += 1


def test_onnx_gate_order_against_torch():
    """Weights converted from torch.nn run by ONNX Runtime reproduce torch.nn (gate orders are right)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from onnx_helpers import make_node, run_ort

    T, N, I, H = 5, 3, 4, 6
    x = np.random.default_rng(0).standard_normal((T, N, I)).astype(np.float32)
    for kind, module in (("rnn", torch.nn.RNN), ("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU)):
        for bidirectional in (False, True):
            torch.manual_seed(0)
            m = module(I, H, bidirectional=bidirectional)
            with torch.no_grad():
                out = m(torch.from_numpy(x))
            y_torch = out[0].numpy()
            feeds = dict(X=x, **convert.torch_to_onnx(kind, {k: v.numpy() for k, v in m.state_dict().items()}))
            attrs = {"hidden_size": H, "direction": "bidirectional" if bidirectional else "forward"}
            if kind == "gru":
                attrs["linear_before_reset"] = 1
            op = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[kind]
            Y = run_ort(make_node(op, feeds, ["Y"], **attrs), feeds)[0]  # [T, D, N, H]
            y = Y.transpose(0, 2, 1, 3).reshape(T, N, -1)
            record("converters vs torch", np.float32, assert_close(f"{kind} {bidirectional}", y, y_torch, np.float32))
            CASES["converters vs torch"] += 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_converted_weights_give_the_layer_outputs(kind, bidirectional):
    """gc.onnx on torch_to_onnx(layer weights) equals the gatecell layer itself, for both layouts."""
    kw = {"linear_before_reset": False} if kind == "gru" else {}
    layer = {"rnn": gc.RNN, "lstm": gc.LSTM, "gru": gc.GRU}[kind](3, 4, bidirectional=bidirectional, seed=1,
                                                                 dtype=np.float64, **kw).eval()
    x = np.random.default_rng(2).standard_normal((6, 2, 3))
    y, state = layer(x, lengths=[6, 3])
    fn = {"rnn": gc.onnx.rnn, "lstm": gc.onnx.lstm, "gru": gc.onnx.gru}[kind]
    D = 2 if bidirectional else 1
    out = fn(x, **convert.torch_to_onnx(kind, layer.state_dict()), sequence_lens=np.array([6, 3], np.int32),
             direction="bidirectional" if bidirectional else "forward")
    assert_close("Y", out[0].transpose(0, 2, 1, 3).reshape(6, 2, D * 4), y, np.float64)
    assert_close("Y_h", out[1], state[0] if kind == "lstm" else state, np.float64)
    if kind == "lstm":
        assert_close("Y_c", out[2], state[1], np.float64)


def test_converter_errors():
    sd = random_state_dict("lstm", 3, 4, 0, False, True, np.float32, 0)
    with pytest.raises(ValueError, match="kind"):
        convert.torch_to_onnx("transformer", sd)
    with pytest.raises(ValueError, match="weight_hh_l0"):
        convert.torch_to_onnx("gru", sd)
    with pytest.raises(ValueError, match="missing key 'weight_ih_l1'"):
        convert.torch_to_onnx("lstm", sd, layer=1)
    with pytest.raises(ValueError, match="B: expected shape"):
        convert.onnx_to_torch("lstm", np.zeros((1, 16, 3)), np.zeros((1, 16, 4)), np.zeros((1, 16)))
    with pytest.raises(ValueError, match="bias: expected shape"):
        convert.keras_to_torch("lstm", np.zeros((3, 16)), np.zeros((4, 16)), np.zeros((2, 16)))
    with pytest.raises(TypeError, match="kernel"):
        convert.keras_to_torch("lstm", np.zeros((3, 16), int), np.zeros((4, 16)))
    with pytest.raises(ValueError, match="direction"):
        convert.onnx_to_keras("lstm", np.zeros((1, 16, 3)), np.zeros((1, 16, 4)), direction=1)
