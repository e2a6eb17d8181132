# SPDX-License-Identifier: MIT
"""Keras 3 (torch backend) LSTM, GRU (both reset_after forms) and SimpleRNN against converted weights."""

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import gatecell as gc  # noqa: E402
from gatecell import convert  # noqa: E402

from conftest import CASES, record  # noqa: E402
from helpers import assert_close  # noqa: E402

# Keras 3.15 converting torch tensors under NumPy 2 warns about __array__'s copy keyword.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

N, T, I, H = 3, 6, 4, 5
# name -> (kind, Keras layer, Keras kwargs, gatecell layer kwargs, ONNX function kwargs)
FORMS = {
    "lstm": ("lstm", "LSTM", {}, {}, {}),
    "gru_reset_after": ("gru", "GRU", {"reset_after": True}, {"linear_before_reset": True},
                        {"linear_before_reset": 1}),
    "gru_reset_before": ("gru", "GRU", {"reset_after": False}, {"linear_before_reset": False},
                         {"linear_before_reset": 0}),
    "simple_rnn": ("rnn", "SimpleRNN", {}, {}, {}),
}
GC_LAYER = {"lstm": gc.LSTM, "gru": gc.GRU, "rnn": gc.RNN}
ONNX_FN = {"lstm": gc.onnx.lstm, "gru": gc.onnx.gru, "rnn": gc.onnx.rnn}


def build_keras(cls, kwargs, bidirectional, seed, scale):
    """A built Keras layer keras.layers.cls(H, **kwargs) with weights and biases uniform in [-scale, scale]
    (Keras zeroes biases)."""
    layer = getattr(keras.layers, cls)(H, return_sequences=True, return_state=True, **kwargs)
    if bidirectional:
        layer = keras.layers.Bidirectional(layer)
    layer.build((N, T, I))
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.uniform(-scale, scale, size=w.shape).astype(np.float32) for w in layer.get_weights()])
    return layer


def keras_layer(name, bidirectional, seed):
    """A built Keras layer of the form `name` with random weights and biases."""
    _, cls, kwargs, _, _ = FORMS[name]
    return build_keras(cls, kwargs, bidirectional, seed, 0.6)


def run_keras(layer, x, kind):
    """(sequence output [N, T, D*H], final h of each direction [D, N, H])."""
    out = [keras.ops.convert_to_numpy(o) for o in layer(x)]
    per_direction = 2 if kind == "lstm" else 1  # LSTM returns y, then (h, c) per direction
    states = out[1:]
    return out[0], np.stack([states[k] for k in range(0, len(states), per_direction)])


def keras_directions(layer):
    """[(kernel, recurrent_kernel, bias)] per direction of a (possibly Bidirectional) Keras layer."""
    if isinstance(layer, keras.layers.Bidirectional):
        return [tuple(layer.forward_layer.get_weights()), tuple(layer.backward_layer.get_weights())]
    return [tuple(layer.get_weights())]


@pytest.mark.parametrize("name", sorted(FORMS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_keras_weights_run_in_gatecell(name, bidirectional):
    """Keras -> torch layout (gc layer) and Keras -> ONNX (gc.onnx) reproduce Keras' outputs."""
    kind, _, _, gc_kwargs, onnx_kwargs = FORMS[name]
    layer = keras_layer(name, bidirectional, seed=len(name) + bidirectional)
    x = np.random.default_rng(1).standard_normal((N, T, I)).astype(np.float32)
    y_keras, h_keras = run_keras(layer, x, kind)

    sd = {}
    for d, weights in enumerate(keras_directions(layer)):
        sd.update(convert.keras_to_torch(kind, *weights, reverse=bool(d)))
    net = GC_LAYER[kind](I, H, batch_first=True, bidirectional=bidirectional, **gc_kwargs).eval()
    net.load_state_dict(sd)
    y, state = net(x)
    record("keras -> gatecell", np.float32, assert_close(f"{name} y", y, y_keras, np.float32))
    assert_close(f"{name} h", state[0] if kind == "lstm" else state, h_keras, np.float32)

    directions = keras_directions(layer)
    onnx_w = convert.keras_to_onnx(kind, *directions)
    out = ONNX_FN[kind](x, **onnx_w, layout=1, direction="bidirectional" if bidirectional else "forward",
                        **onnx_kwargs)
    assert_close(f"{name} Y", out[0].reshape(N, T, -1), y_keras, np.float32)
    assert_close(f"{name} Y_h", out[1].transpose(1, 0, 2), h_keras, np.float32)
    CASES["keras -> gatecell"] += 1


@pytest.mark.parametrize("name", sorted(FORMS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_gatecell_weights_run_in_keras(name, bidirectional):
    """A gatecell layer's weights, converted to Keras' layout, reproduce its outputs in Keras."""
    kind, _, _, gc_kwargs, _ = FORMS[name]
    net = GC_LAYER[kind](I, H, batch_first=True, bidirectional=bidirectional, seed=3, **gc_kwargs).eval()
    x = np.random.default_rng(2).standard_normal((N, T, I)).astype(np.float32)
    y, state = net(x)
    reset_after = FORMS[name][2].get("reset_after", True)
    layer = keras_layer(name, bidirectional, seed=0)
    converted = [convert.torch_to_keras(kind, net.state_dict(), reverse=bool(d), reset_after=reset_after)
                 for d in range(2 if bidirectional else 1)]
    layer.set_weights([w for weights in converted for w in weights])
    y_keras, h_keras = run_keras(layer, x, kind)
    record("gatecell -> keras", np.float32, assert_close(f"{name} y", y_keras, y, np.float32))
    assert_close(f"{name} h", h_keras, state[0] if kind == "lstm" else state, np.float32)
    CASES["gatecell -> keras"] += 1
