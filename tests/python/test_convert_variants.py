# SPDX-License-Identifier: MIT
"""Converters for the cell variants: ONNX peepholes P <-> weight_peep, Keras activations -> gatecell's."""

import numpy as np
import pytest

from gatecell import convert

from conftest import CASES
from test_convert import bitwise_equal, random_state_dict

# Keras 3.15 converting torch tensors under NumPy 2 warns about __array__'s copy keyword.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

# ONNX's eleven functions as Operators.md defines them (NumPy, float64).
ONNX_FUNCTIONS = {
    "Relu": lambda x, a, b: np.maximum(x, 0.0),
    "Tanh": lambda x, a, b: np.tanh(x),
    "Sigmoid": lambda x, a, b: 1.0 / (1.0 + np.exp(-x)),
    "Affine": lambda x, a, b: a * x + b,
    "LeakyRelu": lambda x, a, b: np.where(x < 0, a * x, x),
    "ThresholdedRelu": lambda x, a, b: np.where(x > a, x, 0.0),
    "ScaledTanh": lambda x, a, b: a * np.tanh(b * x),
    "HardSigmoid": lambda x, a, b: np.clip(a * x + b, 0.0, 1.0),
    "Elu": lambda x, a, b: np.where(x < 0, a * (np.exp(x) - 1.0), x),
    "Softsign": lambda x, a, b: x / (1.0 + np.abs(x)),
    "Softplus": lambda x, a, b: np.log1p(np.exp(x)),
}


def peephole_state_dict(I, H, layer, bidirectional, dtype, seed):
    sd = random_state_dict("lstm", I, H, layer, bidirectional, True, dtype, seed)
    rng = np.random.default_rng(seed + 100)
    for d in range(2 if bidirectional else 1):
        sd[f"weight_peep_l{layer}" + ("_reverse" if d else "")] = rng.standard_normal(3 * H).astype(dtype)
    return sd


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", [0, 2])
def test_peephole_round_trips_are_bitwise(bidirectional, dtype, layer):
    H = 4
    sd = peephole_state_dict(3, H, layer, bidirectional, dtype, seed=layer + bidirectional)
    onnx_w = convert.torch_to_onnx("lstm", sd, layer)
    D = 2 if bidirectional else 1
    assert onnx_w["P"].shape == (D, 3 * H) and onnx_w["P"].dtype == dtype
    for d in range(D):  # ONNX P is (p_i, p_o, p_f); gatecell's weight_peep is (p_i, p_f, p_o)
        peep = sd[f"weight_peep_l{layer}" + ("_reverse" if d else "")]
        p_i, p_f, p_o = peep[:H], peep[H:2 * H], peep[2 * H:]
        assert bitwise_equal(onnx_w["P"][d], np.concatenate([p_i, p_o, p_f]))
    back = convert.onnx_to_torch("lstm", **onnx_w, layer=layer)
    assert sorted(back) == sorted(sd) and all(bitwise_equal(back[k], sd[k]) for k in sd)
    again = convert.torch_to_onnx("lstm", back, layer)
    assert all(bitwise_equal(again[k], onnx_w[k]) for k in onnx_w)
    CASES["converter round trips"] += 1


def test_no_peepholes_no_P():
    sd = random_state_dict("lstm", 3, 4, 0, True, True, np.float32, 1)
    assert "P" not in convert.torch_to_onnx("lstm", sd)
    assert not any(k.startswith("weight_peep") for k in convert.onnx_to_torch("lstm", **convert.torch_to_onnx("lstm", sd)))


def test_peephole_errors():
    sd = peephole_state_dict(3, 4, 0, True, np.float32, 0)
    onnx_w = convert.torch_to_onnx("lstm", sd)
    with pytest.raises(ValueError, match="P: expected shape"):
        convert.onnx_to_torch("lstm", onnx_w["W"], onnx_w["R"], onnx_w["B"], P=onnx_w["P"][:, :5])
    with pytest.raises(ValueError, match="P: peepholes exist for LSTM only"):
        convert.onnx_to_torch("gru", np.zeros((1, 12, 3)), np.zeros((1, 12, 4)), P=np.zeros((1, 12)))
    with pytest.raises(TypeError, match="P"):
        convert.onnx_to_torch("lstm", onnx_w["W"], onnx_w["R"], P=np.zeros((2, 12), int))
    one_sided = dict(sd)
    del one_sided["weight_peep_l0_reverse"]
    with pytest.raises(ValueError, match="peepholes in only one of its two directions"):
        convert.torch_to_onnx("lstm", one_sided)
    bad = dict(sd, weight_peep_l0=np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="weight_peep_l0: expected shape"):
        convert.torch_to_onnx("lstm", bad)
    with pytest.raises(ValueError, match="no peepholes"):
        convert.torch_to_keras("lstm", sd)
    with pytest.raises(ValueError, match="no peepholes"):
        convert.onnx_to_keras("lstm", **onnx_w)


def test_keras_activation_mapping():
    assert convert.keras_activations("lstm") is None  # Keras' defaults are torch's functions
    assert convert.keras_activations("gru", "tanh", "sigmoid") is None
    assert convert.keras_activations("rnn", "tanh") is None
    assert convert.keras_activations("lstm", "tanh", "hard_sigmoid") == [
        ("HardSigmoid", 1 / 6, 0.5), ("Tanh", 0.0, 0.0), ("Tanh", 0.0, 0.0)]
    assert convert.keras_activations("gru", "softsign", "sigmoid") == [("Sigmoid", 0.0, 0.0), ("Softsign", 0.0, 0.0)]
    assert convert.keras_activations("rnn", None) == [("Affine", 1.0, 0.0)]
    assert convert.keras_activations("rnn", "relu") == [("Relu", 0.0, 0.0)]
    for bad in ("selu", "gelu", "swish", "relu6", "hard_tanh"):
        with pytest.raises(ValueError, match=f"activation: .*{bad}"):
            convert.keras_activations("lstm", bad)
        with pytest.raises(ValueError, match="recurrent_activation"):
            convert.keras_activations("gru", "tanh", bad)
    with pytest.raises(TypeError, match="activation"):
        convert.keras_activations("lstm", 3)
    with pytest.raises(ValueError, match="kind"):
        convert.keras_activations("transformer")


def test_keras_activation_table_against_keras():
    """Every mapped Keras function equals the ONNX function it maps to (Operators.md's definition)."""
    import os
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    x = np.concatenate([np.linspace(-8.0, 8.0, 801), [-3.0, 3.0, -1e-3, 0.0, 1e-3]]).astype(np.float32)
    for name, (onnx_name, alpha, beta) in convert.KERAS_ACTIVATIONS.items():
        got = keras.ops.convert_to_numpy(keras.activations.get(name)(keras.ops.convert_to_tensor(x)))
        want = ONNX_FUNCTIONS[onnx_name](x.astype(np.float64), alpha, beta)
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6, err_msg=name)
        assert convert.keras_activations("rnn", keras.activations.get(name)) == (
            None if name == "tanh" else [(onnx_name, alpha, beta)])
    CASES["keras activation table"] += len(convert.KERAS_ACTIVATIONS)
