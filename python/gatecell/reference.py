# SPDX-License-Identifier: MIT
"""Slow, plain NumPy reference for recurrent networks (forward only), used as a test oracle.

Nothing here is fast or clever: every time step is one loop iteration, every
equation is one assignment, and variable-length batches are handled with a
per-step mask. The module imports only NumPy, so it can check the C++ kernels
without torch and without ``gatecell._core``.

Parameters are dicts keyed exactly like ``torch.nn`` state dicts, with torch's
shapes and gate order (LSTM rows i, f, g, o; GRU rows r, z, n). Missing biases
(``bias=False``) count as zero. All arithmetic is done in float64; results are
cast back to the dtype of ``x``.

Equations (``x`` is the step input, ``h``/``c`` the previous state, ``*`` is
element-wise, W_*x means x @ W_*^T):

    RNN   (R1) h' = act(W_ih x + b_ih + W_hh h + b_hh)            act = tanh or relu

    LSTM  (L1) a = W_ih x + b_ih + W_hh h + b_hh,  split rows as a_i, a_f, a_g, a_o
          (L2) i = σ(a_i)  f = σ(a_f)  g = tanh(a_g)  o = σ(a_o)
          (L3) c' = f * c + i * g
          (L4) m = o * tanh(c')
          (L5) h' = W_hr m   if proj_size > 0, else h' = m

    GRU   (G1) r = σ(W_ir x + b_ir + W_hr h + b_hr)
          (G2) z = σ(W_iz x + b_iz + W_hz h + b_hz)
          (G3) n = tanh(W_in x + b_in + r * (W_hn h + b_hn))      linear_before_reset=True (torch)
          (G3') n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)     linear_before_reset=False (Cho 2014)
          (G4) h' = (1 - z) * n + z * h

Variants (the ONNX operators' attributes; ``activations``, ``clip``, ``input_forget`` and the
peepholes ``weight_peep_l{k}`` [3H] = (p_i, p_f, p_o)): σ and tanh above become the functions
f (gates), g (LSTM cell input, GRU candidate) and h (LSTM cell output) of ``activations``; with
``clip`` every gate pre-activation a (i f g o, r z n, the RNN's) is clipped to [-clip, clip]
before its function (the cell state c' before h is not); the peepholes add p_i * c and p_f * c
to a_i and a_f, and p_o * c' to a_o; ``input_forget`` replaces f by 1 - i.

Network conventions (torch.nn): ``x`` is time-major ``(T, N, I)``; states are
``(L*D, N, Hout)`` with (layer l, direction d) at index ``l*D + d``; the output
``y`` is ``(T, N, D*Hout)`` with the forward direction in columns ``[0:Hout]``
and the reverse one in ``[Hout:2*Hout]``. ``lengths`` follows
``pack_padded_sequence(..., enforce_sorted=False)``: element n is only updated
at steps ``t < lengths[n]`` (so the reverse direction starts from h0 at its own
last valid step), ``y`` is zero at ``t >= lengths[n]``, and ``h_n``/``c_n`` are
the state after the last valid step processed.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["sigmoid", "activation", "ACTIVATIONS", "cell_forward", "network_forward"]

Params = Mapping[str, np.ndarray]

_KINDS = ("rnn", "lstm", "gru")
_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_WORK = np.float64  # every computation runs in float64, whatever the input dtype


def sigmoid(a: np.ndarray) -> np.ndarray:
    """Logistic function 1 / (1 + exp(-a)) that never overflows.

    a: [any] pre-activation
    """
    a = np.asarray(a, dtype=_WORK)
    e = np.exp(-np.abs(a))  # in (0, 1]: safe for any a
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# The eleven ONNX activation functions, a -> value, with their parameters alpha and beta.
ACTIVATIONS = {
    "Relu": lambda a, alpha, beta: np.maximum(a, 0.0),
    "Tanh": lambda a, alpha, beta: np.tanh(a),
    "Sigmoid": lambda a, alpha, beta: sigmoid(a),
    "Affine": lambda a, alpha, beta: alpha * a + beta,
    "LeakyRelu": lambda a, alpha, beta: np.where(a >= 0, a, alpha * a),
    "ThresholdedRelu": lambda a, alpha, beta: np.where(a >= alpha, a, 0.0),
    "ScaledTanh": lambda a, alpha, beta: alpha * np.tanh(beta * a),
    "HardSigmoid": lambda a, alpha, beta: np.clip(alpha * a + beta, 0.0, 1.0),
    "Elu": lambda a, alpha, beta: np.where(a >= 0, a, alpha * np.expm1(np.minimum(a, 0.0))),
    "Softsign": lambda a, alpha, beta: a / (1.0 + np.abs(a)),
    "Softplus": lambda a, alpha, beta: np.logaddexp(0.0, a),
}


def activation(spec: Sequence, a: np.ndarray) -> np.ndarray:
    """One ONNX activation function applied element-wise.

    spec: (name, alpha, beta) with the ONNX spelling of the name, e.g. ("HardSigmoid", 0.2, 0.5)
    a: [any] pre-activation
    """
    name, alpha, beta = spec
    return ACTIVATIONS[name](np.asarray(a, dtype=_WORK), float(alpha), float(beta))


_DEFAULTS = {"rnn": (("Tanh", 0.0, 0.0),), "gru": (("Sigmoid", 0.0, 0.0), ("Tanh", 0.0, 0.0)),
             "lstm": (("Sigmoid", 0.0, 0.0), ("Tanh", 0.0, 0.0), ("Tanh", 0.0, 0.0))}


class _Variant:
    """The cell functions of one direction, with clip, input_forget and peepholes (None: torch's cell)."""

    def __init__(self, specs, clip, input_forget, peep):
        self.funcs = [lambda a, s=s: activation(s, a) for s in specs]
        self.clip = clip
        self.input_forget = input_forget
        self.peep = peep  # [3H] (p_i, p_f, p_o) in float64, or None

    def pre(self, a):
        return a if not self.clip else np.clip(a, -self.clip, self.clip)


def _act(nonlinearity: str, a: np.ndarray) -> np.ndarray:
    if nonlinearity == "tanh":
        return np.tanh(a)
    if nonlinearity == "relu":
        return np.maximum(a, 0.0)
    raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise ValueError(f"kind: expected one of {_KINDS}, got {kind!r}")


def _get(params: Params, name: str, required: bool = True) -> Optional[np.ndarray]:
    """params[name] as float64, None if absent and optional."""
    if name not in params or params[name] is None:
        if required:
            raise ValueError(f"params: missing {name!r}")
        return None
    return np.asarray(params[name], dtype=_WORK)


def _bias(params: Params, name: str, rows: int) -> np.ndarray:
    """A bias vector, or zeros when the module was built with bias=False."""
    b = _get(params, name, required=False)
    return np.zeros(rows, dtype=_WORK) if b is None else b


# ----------------------------------------------------------------------------
# One time step for a whole batch. x: [N, I], h: [N, Hout], c: [N, H].
# ----------------------------------------------------------------------------

def _rnn_step(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity, variant=None):
    a = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh  # (R1)
    if variant is not None:
        return variant.funcs[0](variant.pre(a))
    return _act(nonlinearity, a)


def _lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, variant=None):
    hidden = w_hh.shape[0] // 4
    v = variant or _Variant(_DEFAULTS["lstm"], None, False, None)
    a = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh  # (L1)
    a_i = a[:, 0 * hidden:1 * hidden]
    a_f = a[:, 1 * hidden:2 * hidden]
    a_g = a[:, 2 * hidden:3 * hidden]
    a_o = a[:, 3 * hidden:4 * hidden]
    if v.peep is not None:  # peepholes look at the cell state entering the step
        a_i = a_i + v.peep[:hidden] * c
        a_f = a_f + v.peep[hidden:2 * hidden] * c
    i = v.funcs[0](v.pre(a_i))  # (L2)
    f = 1.0 - i if v.input_forget else v.funcs[0](v.pre(a_f))
    g = v.funcs[1](v.pre(a_g))
    c_new = f * c + i * g  # (L3)
    if v.peep is not None:  # ... and the output gate at the cell state leaving it
        a_o = a_o + v.peep[2 * hidden:] * c_new
    o = v.funcs[0](v.pre(a_o))
    m = o * v.funcs[2](c_new)  # (L4)
    h_new = m if w_hr is None else m @ w_hr.T  # (L5)
    return h_new, c_new


def _gru_step(x, h, w_ih, w_hh, b_ih, b_hh, linear_before_reset, variant=None):
    hidden = w_hh.shape[0] // 3
    v = variant or _Variant(_DEFAULTS["gru"], None, False, None)
    rows_r = slice(0 * hidden, 1 * hidden)
    rows_z = slice(1 * hidden, 2 * hidden)
    rows_n = slice(2 * hidden, 3 * hidden)
    r = v.funcs[0](v.pre(x @ w_ih[rows_r].T + b_ih[rows_r] + h @ w_hh[rows_r].T + b_hh[rows_r]))  # (G1)
    z = v.funcs[0](v.pre(x @ w_ih[rows_z].T + b_ih[rows_z] + h @ w_hh[rows_z].T + b_hh[rows_z]))  # (G2)
    if linear_before_reset:
        # (G3) the reset gate scales the recurrent term after the matrix product
        a_n = x @ w_ih[rows_n].T + b_ih[rows_n] + r * (h @ w_hh[rows_n].T + b_hh[rows_n])
    else:
        # (G3') the reset gate scales the state before the matrix product
        a_n = x @ w_ih[rows_n].T + b_ih[rows_n] + (r * h) @ w_hh[rows_n].T + b_hh[rows_n]
    n = v.funcs[1](v.pre(a_n))
    return (1.0 - z) * n + z * h  # (G4)


# ----------------------------------------------------------------------------
# Cells
# ----------------------------------------------------------------------------

def cell_forward(
    kind: str,
    params: Params,
    x: np.ndarray,
    h: np.ndarray,
    c: Optional[np.ndarray] = None,
    *,
    nonlinearity: str = "tanh",
    linear_before_reset: bool = True,
) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """One time step of a torch.nn RNNCell / LSTMCell / GRUCell; returns h' (LSTM: (h', c')).

    kind: "rnn", "lstm" or "gru"
    params: torch cell state dict: weight_ih [G*H, I], weight_hh [G*H, H], optional bias_ih, bias_hh [G*H]
    x: [N, I] input; its dtype is the dtype of the results
    h: [N, H] previous hidden state
    c: [N, H] previous cell state (LSTM only; None means zeros)
    nonlinearity: "tanh" or "relu" (RNN only)
    linear_before_reset: GRU form, True for torch's (G3), False for Cho's (G3')
    """
    _check_kind(kind)
    dtype = np.asarray(x).dtype
    x = np.asarray(x, dtype=_WORK)
    h = np.asarray(h, dtype=_WORK)
    w_ih = _get(params, "weight_ih")
    w_hh = _get(params, "weight_hh")
    rows = w_ih.shape[0]
    b_ih = _bias(params, "bias_ih", rows)
    b_hh = _bias(params, "bias_hh", rows)
    if kind == "rnn":
        return _rnn_step(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity).astype(dtype)
    if kind == "gru":
        return _gru_step(x, h, w_ih, w_hh, b_ih, b_hh, linear_before_reset).astype(dtype)
    c = np.zeros_like(h) if c is None else np.asarray(c, dtype=_WORK)
    h_new, c_new = _lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, None)
    return h_new.astype(dtype), c_new.astype(dtype)


# ----------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------

def _run_direction(kind, weights, x, h0, c0, valid, reverse, nonlinearity, linear_before_reset, variant=None):
    """One layer, one direction, over all steps.

    weights: (w_ih, w_hh, b_ih, b_hh, w_hr) in float64, w_hr None unless LSTM with projection
    x: [T, N, I] layer input
    h0: [N, Hout], c0: [N, H] (c0 only for LSTM)
    valid: [T, N] bool, valid[t, n] is True when t < lengths[n]
    reverse: walk t = T-1 .. 0 instead of 0 .. T-1
    variant: this direction's cell variant, or None for torch's cell
    Returns y [T, N, Hout] (zero at invalid steps), h_n [N, Hout], c_n [N, H] or None.
    """
    w_ih, w_hh, b_ih, b_hh, w_hr = weights
    steps = x.shape[0]
    y = np.zeros((steps, x.shape[1], h0.shape[1]), dtype=_WORK)
    h = h0.copy()
    c = None if c0 is None else c0.copy()
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        if kind == "rnn":
            h_new = _rnn_step(x[t], h, w_ih, w_hh, b_ih, b_hh, nonlinearity, variant)
        elif kind == "gru":
            h_new = _gru_step(x[t], h, w_ih, w_hh, b_ih, b_hh, linear_before_reset, variant)
        else:
            h_new, c_new = _lstm_step(x[t], h, c, w_ih, w_hh, b_ih, b_hh, w_hr, variant)
        # A sequence that has ended (forward) or not yet started (reverse) keeps
        # its state and outputs zero: this is what packing does.
        mask = valid[t][:, None]
        h = np.where(mask, h_new, h)
        if kind == "lstm":
            c = np.where(mask, c_new, c)
        y[t] = np.where(mask, h_new, 0.0)
    return y, h, c


def network_forward(
    kind: str,
    params: Params,
    x: np.ndarray,
    h0: Optional[np.ndarray] = None,
    c0: Optional[np.ndarray] = None,
    lengths: Optional[Sequence[int]] = None,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    nonlinearity: str = "tanh",
    proj_size: int = 0,
    linear_before_reset: bool = True,
    dropout_masks: Optional[Sequence[np.ndarray]] = None,
    activations: Optional[Sequence[Sequence]] = None,
    clip: Optional[float] = None,
    input_forget: bool = False,
    peepholes: bool = False,
) -> Union[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Multi-layer, optionally bidirectional torch.nn RNN / LSTM / GRU; returns (y, h_n) or (y, h_n, c_n).

    kind: "rnn", "lstm" or "gru"
    params: torch state dict (weight_ih_l{l}[_reverse], weight_hh_..., bias_ih_..., bias_hh_..., weight_hr_...)
    x: [T, N, I] time-major input; its dtype is the dtype of the results
    h0: [L*D, N, Hout] initial hidden state, Hout = proj_size or hidden_size; None means zeros
    c0: [L*D, N, H] initial cell state (LSTM only); None means zeros
    lengths: [N] ints in 1..T, valid steps per batch element (pack_padded_sequence semantics); None means all T
    num_layers: L, number of stacked layers
    bidirectional: D = 2 if True else 1
    nonlinearity: "tanh" or "relu" (RNN only)
    proj_size: LSTM projection size, 0 for none (then weight_hr_* must be absent)
    linear_before_reset: GRU form, True for torch's (G3), False for Cho's (G3')
    dropout_masks: L-1 arrays [T, N, D*Hout], already scaled; mask l-1 multiplies the input of layer l
    activations: None for torch's functions, else (name, alpha, beta) triples, count per direction
        (RNN 1: f; GRU 2: f, g; LSTM 3: f, g, h), given once for all directions or D*count direction-major
    clip: None, or a positive bound for every gate pre-activation
    input_forget: LSTM only, f = 1 - i
    peepholes: LSTM only; params then hold weight_peep_l{l}[_reverse] [3H] = (p_i, p_f, p_o)
    Returns y [T, N, D*Hout], h_n [L*D, N, Hout] and, for LSTM, c_n [L*D, N, H].
    """
    _check_kind(kind)
    if kind != "lstm" and proj_size:
        raise ValueError(f"proj_size: only LSTM has a projection, got {proj_size} for {kind!r}")
    if kind == "rnn":
        _act(nonlinearity, np.zeros(0))  # validates the name early
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"x: expected shape (T, N, I), got {x.shape}")
    dtype = x.dtype
    steps, batch = x.shape[0], x.shape[1]
    directions = 2 if bidirectional else 1
    if dropout_masks is not None and len(dropout_masks) != num_layers - 1:
        raise ValueError(f"dropout_masks: expected {num_layers - 1} arrays, got {len(dropout_masks)}")

    if lengths is None:
        lengths_arr = np.full(batch, steps, dtype=np.int64)
    else:
        lengths_arr = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if lengths_arr.shape != (batch,):
            raise ValueError(f"lengths: expected shape ({batch},), got {lengths_arr.shape}")
        if np.any(lengths_arr < 1) or np.any(lengths_arr > steps):
            raise ValueError(f"lengths: expected values in 1..{steps}, got {lengths_arr.tolist()}")
    valid = np.arange(steps)[:, None] < lengths_arr[None, :]  # [T, N]
    count = len(_DEFAULTS[kind])
    specs = None
    if activations is not None:
        specs = [tuple(s) for s in activations]
        if len(specs) == count:
            specs = specs * directions
        if len(specs) != count * directions:
            raise ValueError(f"activations: expected {count} or {count * directions} functions, got {len(specs)}")
    elif clip or input_forget or peepholes:
        specs = list(_DEFAULTS[kind]) * directions
        if kind == "rnn":
            specs = [(nonlinearity.capitalize(), 0.0, 0.0)] * directions

    gates = _GATES[kind]
    hidden = _get(params, "weight_hh_l0").shape[0] // gates
    h_out = proj_size if proj_size > 0 else hidden

    states = num_layers * directions
    h0 = np.zeros((states, batch, h_out), _WORK) if h0 is None else np.asarray(h0, dtype=_WORK)
    if h0.shape != (states, batch, h_out):
        raise ValueError(f"h0: expected shape {(states, batch, h_out)}, got {h0.shape}")
    if kind == "lstm":
        c0 = np.zeros((states, batch, hidden), _WORK) if c0 is None else np.asarray(c0, dtype=_WORK)
        if c0.shape != (states, batch, hidden):
            raise ValueError(f"c0: expected shape {(states, batch, hidden)}, got {c0.shape}")

    h_n = np.zeros((states, batch, h_out), dtype=_WORK)
    c_n = np.zeros((states, batch, hidden), dtype=_WORK) if kind == "lstm" else None

    layer_input = np.asarray(x, dtype=_WORK)
    for layer in range(num_layers):
        if layer > 0 and dropout_masks is not None:
            layer_input = layer_input * np.asarray(dropout_masks[layer - 1], dtype=_WORK)
        outputs = []
        for direction in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
            w_ih = _get(params, "weight_ih" + suffix)
            w_hh = _get(params, "weight_hh" + suffix)
            b_ih = _bias(params, "bias_ih" + suffix, gates * hidden)
            b_hh = _bias(params, "bias_hh" + suffix, gates * hidden)
            w_hr = _get(params, "weight_hr" + suffix, required=False)
            if (w_hr is not None) != (proj_size > 0):
                raise ValueError(f"params: 'weight_hr{suffix}' must be present exactly when proj_size > 0")
            if w_hh.shape != (gates * hidden, h_out):
                raise ValueError(f"params: 'weight_hh{suffix}' expected shape {(gates * hidden, h_out)}, "
                                 f"got {w_hh.shape}")
            if w_ih.shape[1] != layer_input.shape[2]:
                raise ValueError(f"params: 'weight_ih{suffix}' expected {layer_input.shape[2]} columns, "
                                 f"got {w_ih.shape}")
            index = layer * directions + direction
            variant = None
            if specs is not None:
                peep = _get(params, "weight_peep" + suffix) if peepholes else None
                variant = _Variant(specs[direction * count:(direction + 1) * count], clip, input_forget, peep)
            y, h_last, c_last = _run_direction(
                kind, (w_ih, w_hh, b_ih, b_hh, w_hr), layer_input,
                h0[index], None if kind != "lstm" else c0[index],
                valid, reverse=(direction == 1),
                nonlinearity=nonlinearity, linear_before_reset=linear_before_reset, variant=variant)
            outputs.append(y)
            h_n[index] = h_last
            if kind == "lstm":
                c_n[index] = c_last
        layer_input = np.concatenate(outputs, axis=2)  # [T, N, D*Hout], forward columns first

    y = layer_input.astype(dtype)
    if kind == "lstm":
        return y, h_n.astype(dtype), c_n.astype(dtype)
    return y, h_n.astype(dtype)
