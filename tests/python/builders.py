# SPDX-License-Identifier: MIT
"""Builders shared by several test suites: a network of every kind (torch forms and cell variants),
and the random variant attributes of ONNX RNN/GRU/LSTM nodes."""

import gatecell as gc
from gatecell._checks import ACTIVATION_DEFAULTS

# Every kind the determinism suites cover: the torch forms, then the ONNX cell variants (the clip,
# input_forget, peepholes, and functions of both the vector and the scalar row code: Elu is scalar).
NETWORK_KINDS = ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru", "gru_original",
                 "rnn_variants", "lstm_peepholes", "lstm_variants", "gru_variants"]


def make_network(kind, input_size, hidden_size, **kw):
    """A network of the given kind (NETWORK_KINDS) with the layer arguments kw (num_layers, dtype, ...)."""
    layer, extra = {
        "rnn_tanh": (gc.RNN, {}),
        "rnn_relu": (gc.RNN, {"nonlinearity": "relu"}),
        "lstm": (gc.LSTM, {}),
        "lstm_proj": (gc.LSTM, {"proj_size": hidden_size // 2}),
        "gru": (gc.GRU, {}),
        "gru_original": (gc.GRU, {"linear_before_reset": False}),
        "rnn_variants": (gc.RNN, {"activations": [("LeakyRelu", 0.1)], "clip": 2.0}),
        "lstm_peepholes": (gc.LSTM, {"peepholes": True}),
        "lstm_variants": (gc.LSTM, {"activations": [("HardSigmoid", 0.2, 0.5), ("Elu", 1.0), "Softsign"],
                                    "clip": 3.0, "input_forget": True, "peepholes": True}),
        "gru_variants": (gc.GRU, {"activations": ["Softsign", ("ScaledTanh", 1.2, 0.8)], "clip": 2.5,
                                  "linear_before_reset": False}),
    }[kind]
    return layer(input_size, hidden_size, **extra, **kw)


# ---- ONNX nodes ----------------------------------------------------------------------------------
NAMES = list(ACTIVATION_DEFAULTS)  # the eleven ONNX functions
COUNT = {"RNN": 1, "GRU": 2, "LSTM": 3}  # functions per direction
USES_ALPHA = {"Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid", "Elu"}
USES_BETA = {"Affine", "ScaledTanh", "HardSigmoid"}
# Functions whose omitted parameters ONNX Runtime fills with Operators.md's defaults; for
# ThresholdedRelu, ScaledTanh and Affine it uses 0 instead (see gatecell.onnx), so random cases
# always give those their parameters.
ORT_DEFAULTS_AGREE = {"LeakyRelu", "HardSigmoid", "Elu"}


def activation_parameter(name, which, rng):
    """A random alpha or beta (`which`) for the function `name`, in a range where it is well behaved."""
    if name == "HardSigmoid":
        return float(rng.uniform(0.1, 0.5)) if which == "alpha" else float(rng.uniform(0.3, 0.7))
    if name == "ThresholdedRelu":
        return float(rng.uniform(-0.3, 0.5))
    return float(rng.uniform(0.2, 1.5)) if which == "alpha" else float(rng.uniform(-0.5, 0.5))


def variant_attributes(op, names, rng, clip_chance, drop_defaults):
    """Node attributes for the functions `names`: activations, their random activation_alpha/beta,
    a clip with probability clip_chance, input_forget for an LSTM with probability 0.4.
    drop_defaults: 30% of the time, trailing parameters ONNX Runtime defaults alike are left out."""
    alphas = [activation_parameter(n, "alpha", rng) for n in names if n in USES_ALPHA]
    betas = [activation_parameter(n, "beta", rng) for n in names if n in USES_BETA]
    if drop_defaults and rng.random() < 0.3:
        while alphas and [n for n in names if n in USES_ALPHA][len(alphas) - 1] in ORT_DEFAULTS_AGREE:
            alphas.pop()
        while betas and [n for n in names if n in USES_BETA][len(betas) - 1] in ORT_DEFAULTS_AGREE:
            betas.pop()
    attrs = {"activations": names}
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    if rng.random() < clip_chance:
        attrs["clip"] = float(rng.uniform(0.3, 2.0))
    if op == "LSTM" and rng.random() < 0.4:
        attrs["input_forget"] = 1
    return attrs
