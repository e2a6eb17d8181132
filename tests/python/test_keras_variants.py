# SPDX-License-Identifier: MIT
"""Keras 3 (torch backend) layers with non-default activations, run by gatecell variant layers.

convert.keras_activations maps the Keras functions, convert.keras_to_torch the weights; the
gatecell layer must reproduce Keras' outputs, and Keras must reproduce the gatecell layer's.
"""

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import gatecell as gc  # noqa: E402
from gatecell import convert  # noqa: E402

from conftest import CASES, record  # noqa: E402
from helpers import assert_close  # noqa: E402
from test_keras import H, I, N, T, build_keras, keras_directions, run_keras  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

# (kind, Keras layer, Keras kwargs, gatecell kwargs)
CASES_ = [
    ("lstm", "LSTM", {"activation": "softsign", "recurrent_activation": "hard_sigmoid"}, {}),
    ("lstm", "LSTM", {"activation": "elu", "recurrent_activation": "sigmoid"}, {}),
    ("gru", "GRU", {"activation": "softplus", "recurrent_activation": "hard_sigmoid", "reset_after": True},
     {"linear_before_reset": True}),
    ("gru", "GRU", {"activation": "relu", "recurrent_activation": "sigmoid", "reset_after": False},
     {"linear_before_reset": False}),
    ("rnn", "SimpleRNN", {"activation": "leaky_relu"}, {}),
    ("rnn", "SimpleRNN", {"activation": None}, {}),
]
LAYERS = {"lstm": gc.LSTM, "gru": gc.GRU, "rnn": gc.RNN}


def build(cls, kwargs, bidirectional, seed):
    # Weights around +-1: gate pre-activations cross HardSigmoid's corners at -3 and 3.
    return build_keras(cls, kwargs, bidirectional, seed, 1.0)


@pytest.mark.parametrize("case", range(len(CASES_)))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_keras_activations_run_in_gatecell(case, bidirectional):
    kind, cls, kwargs, gc_kwargs = CASES_[case]
    layer = build(cls, kwargs, bidirectional, seed=case)
    x = 1.5 * np.random.default_rng(case).standard_normal((N, T, I)).astype(np.float32)
    y_keras, h_keras = run_keras(layer, x, kind)
    activations = convert.keras_activations(kind, kwargs.get("activation"), kwargs.get("recurrent_activation"))
    assert activations is not None
    net = LAYERS[kind](I, H, batch_first=True, bidirectional=bidirectional, activations=activations,
                       **gc_kwargs).eval()
    sd = {}
    for d, weights in enumerate(keras_directions(layer)):
        sd.update(convert.keras_to_torch(kind, *weights, reverse=bool(d)))
    net.load_state_dict(sd)
    y, state = net(x)
    err = assert_close("y", y, y_keras, np.float32)
    assert_close("h", state[0] if kind == "lstm" else state, h_keras, np.float32)
    record("keras variants -> gatecell", np.float32, err)

    # And back: the gatecell weights in a fresh Keras layer of the same functions.
    other = build(cls, kwargs, bidirectional, seed=100 + case)
    reset_after = kwargs.get("reset_after", True)
    other.set_weights([w for d in range(2 if bidirectional else 1)
                       for w in convert.torch_to_keras(kind, net.state_dict(), reverse=bool(d),
                                                       reset_after=reset_after)])
    y_back, _ = run_keras(other, x, kind)
    record("keras variants -> gatecell", np.float32, assert_close("y back", y_back, y, np.float32))
    CASES["keras variants -> gatecell"] += 1
