# SPDX-License-Identifier: MIT
"""Exact weight converters between PyTorch (= gatecell), ONNX and Keras recurrent layers.

The three frameworks compute the same cells but stack the gate blocks differently:

    cell   PyTorch / gatecell   ONNX (W, R, B)              Keras (kernel, recurrent_kernel, bias)
    LSTM   i, f, g, o           i, o, f, c  (c = torch g)   i, f, c, o
    GRU    r, z, n              z, r, h     (h = torch n)   z, r, h
    RNN    one block            one block                   one block (SimpleRNN)

and store them in different shapes (G gates, H hidden units, I inputs, D directions):

    PyTorch  weight_ih [G*H, I]   weight_hh [G*H, H]          bias_ih [G*H], bias_hh [G*H]
    ONNX     W [D, G*H, I]        R [D, G*H, H]               B [D, 2*G*H] = [Wb, Rb] per direction,
                                                              Wb like bias_ih, Rb like bias_hh
    Keras    kernel [I, G*H]      recurrent_kernel [H, G*H]   bias [G*H] (LSTM, SimpleRNN, GRU with
                                                              reset_after=False) or [2, G*H] =
                                                              [input, recurrent] (GRU reset_after=True)

Every conversion only moves numbers (transposes and block permutations), so every round trip
is bitwise exact, with one exception forced by Keras: a single Keras bias cannot hold two
biases, so going *to* that form adds them (``b_ih + b_hh``, which is the same function: both
enter the pre-activation as a sum) and coming *from* it sets the recurrent bias to ``-0.0``,
the one value whose addition changes nothing bitwise. So Keras -> X -> Keras is bitwise exact,
and X -> Keras -> X preserves ``b_ih + b_hh``.

GRU forms: ONNX ``linear_before_reset=1`` and Keras ``reset_after=True`` are torch's form;
ONNX ``linear_before_reset=0`` and Keras ``reset_after=False`` are the original form
(``gc.GRU(..., linear_before_reset=False)``). The weights have the same layout in both forms;
only a Keras ``reset_after=False`` GRU has the single bias.

Peepholes: ONNX ``P`` [D, 3*H] holds (p_i, p_o, p_f) per direction; gatecell's LSTM(peepholes=True)
holds them as ``weight_peep_l{k}`` (and ``_reverse``) [3*H] in the order (p_i, p_f, p_o), next to
the torch-named weights. ``torch_to_onnx`` and ``onnx_to_torch`` convert them (exactly, like the
rest); Keras has no peepholes, so converting a state dict with them to Keras is refused.

Activations: ``keras_activations`` maps a Keras layer's ``activation``/``recurrent_activation`` to
gatecell's ``activations=`` argument where the Keras function is exactly one of ONNX's eleven
(Keras 3's hard_sigmoid is relu6(x + 3) / 6, i.e. ONNX HardSigmoid with alpha = 1/6, beta = 0.5,
not ONNX's default 0.2/0.5), and refuses the others.

Torch-side arguments and results are dicts keyed like ``torch.nn`` state dicts
(``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), NumPy arrays or torch tensors.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from ._checks import shape_str, to_numpy

__all__ = ["GATES", "torch_to_onnx", "onnx_to_torch", "torch_to_keras", "keras_to_torch",
           "onnx_to_keras", "keras_to_onnx", "keras_activations", "KERAS_ACTIVATIONS"]

Array = np.ndarray
KerasWeights = Tuple[Array, Array, Optional[Array]]

# Number of gate blocks per cell kind.
GATES = {"rnn": 1, "lstm": 4, "gru": 3}

# Position, in the other framework's stacking, of each torch block: other = torch[perm].
_ONNX_FROM_TORCH = {"rnn": [0], "lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}
_KERAS_FROM_TORCH = {"rnn": [0], "lstm": [0, 1, 2, 3], "gru": [1, 0, 2]}
# Peepholes: ONNX P (i, o, f) = gatecell weight_peep (i, f, o)[perm].
_ONNX_PEEP_FROM_TORCH = [0, 2, 1]


def _inverse(perm: Sequence[int]) -> list:
    inv = [0] * len(perm)
    for k, p in enumerate(perm):
        inv[p] = k
    return inv


def _check_kind(kind: str) -> int:
    if kind not in GATES:
        raise ValueError(f"kind: expected one of {sorted(GATES)}, got {kind!r}")
    return GATES[kind]


def _array(name: str, value: Any, ndim: int) -> Array:
    arr = np.asarray(to_numpy(value))
    if arr.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {shape_str(arr.shape)}")
    return arr


def _permute_blocks(a: Array, perm: Sequence[int], axis: int) -> Array:
    """The G equal blocks of `a` along `axis`, restacked so that block k of the result is block perm[k]."""
    blocks = np.split(a, len(perm), axis=axis)
    return np.ascontiguousarray(np.concatenate([blocks[p] for p in perm], axis=axis))


def _suffix(layer: int, direction: int) -> str:
    return f"_l{layer}" + ("_reverse" if direction else "")


def _torch_direction(kind: str, state_dict: Mapping[str, Any], layer: int, direction: int
                     ) -> Tuple[Array, Array, Optional[Array], Optional[Array]]:
    """(weight_ih, weight_hh, bias_ih or None, bias_hh or None) of one (layer, direction), checked."""
    G = _check_kind(kind)
    sfx = _suffix(layer, direction)
    for key in ("weight_ih" + sfx, "weight_hh" + sfx):
        if key not in state_dict:
            raise ValueError(f"state_dict: missing key {key!r}")
    w_ih = _array("weight_ih" + sfx, state_dict["weight_ih" + sfx], 2)
    w_hh = _array("weight_hh" + sfx, state_dict["weight_hh" + sfx], 2)
    H = w_hh.shape[1]
    if w_hh.shape[0] != G * H or w_ih.shape[0] != G * H:
        raise ValueError(f"weight_hh{sfx}: expected {G}*hidden_size rows and hidden_size columns for {kind}, "
                         f"got weight_ih {shape_str(w_ih.shape)}, weight_hh {shape_str(w_hh.shape)} "
                         "(projections, proj_size > 0, have no ONNX or Keras counterpart)")
    has_bias = ("bias_ih" + sfx) in state_dict, ("bias_hh" + sfx) in state_dict
    if has_bias[0] != has_bias[1]:
        raise ValueError(f"state_dict: expected both bias_ih{sfx} and bias_hh{sfx} or neither")
    b_ih = b_hh = None
    if has_bias[0]:
        b_ih = _array("bias_ih" + sfx, state_dict["bias_ih" + sfx], 1)
        b_hh = _array("bias_hh" + sfx, state_dict["bias_hh" + sfx], 1)
        for name, b in (("bias_ih", b_ih), ("bias_hh", b_hh)):
            if b.shape != (G * H,):
                raise ValueError(f"{name}{sfx}: expected shape {shape_str((G * H,))}, got {shape_str(b.shape)}")
    return w_ih, w_hh, b_ih, b_hh


def _torch_peepholes(kind: str, state_dict: Mapping[str, Any], layer: int, direction: int, H: int
                     ) -> Optional[Array]:
    """weight_peep of one (layer, direction) [3*H] (p_i, p_f, p_o), checked, or None when absent."""
    key = "weight_peep" + _suffix(layer, direction)
    if key not in state_dict:
        return None
    if kind != "lstm":
        raise ValueError(f"state_dict: {key!r}: peepholes exist for LSTM only, got kind {kind!r}")
    peep = _array(key, state_dict[key], 1)
    if peep.shape != (3 * H,):
        raise ValueError(f"{key}: expected shape {shape_str((3 * H,))}, got {shape_str(peep.shape)}")
    return peep


def _negative_zero(like: Array) -> Array:
    # x + (-0.0) == x bitwise for every x, so this bias keeps a Keras bias intact on the way back.
    return np.full_like(like, -0.0)


def torch_to_onnx(kind: str, state_dict: Mapping[str, Any], layer: int = 0) -> Dict[str, Optional[Array]]:
    """ONNX inputs W, R, B of one layer of a torch.nn-style RNN/LSTM/GRU state dict.

    kind: "rnn", "lstm" or "gru"
    state_dict: torch.nn names; the layer is bidirectional (D = 2) if its ``_reverse`` keys exist
    layer: which layer (ONNX has one node per layer)
    returns {"W": [D, G*H, I], "R": [D, G*H, H], "B": [D, 2*G*H] or None when the layer has no bias},
        and "P": [D, 3*H] when the state dict has peepholes (``weight_peep_l{layer}``, LSTM only)
    """
    _check_kind(kind)
    perm = _ONNX_FROM_TORCH[kind]
    D = 2 if ("weight_ih" + _suffix(layer, 1)) in state_dict else 1
    W, R, B, P = [], [], [], []
    for d in range(D):
        w_ih, w_hh, b_ih, b_hh = _torch_direction(kind, state_dict, layer, d)
        W.append(_permute_blocks(w_ih, perm, 0))
        R.append(_permute_blocks(w_hh, perm, 0))
        if b_ih is not None:
            B.append(np.concatenate([_permute_blocks(b_ih, perm, 0), _permute_blocks(b_hh, perm, 0)]))
        peep = _torch_peepholes(kind, state_dict, layer, d, w_hh.shape[1])
        if peep is not None:
            P.append(_permute_blocks(peep, _ONNX_PEEP_FROM_TORCH, 0))
    if B and len(B) != D:
        raise ValueError(f"state_dict: layer {layer} has biases in only one of its two directions")
    if P and len(P) != D:
        raise ValueError(f"state_dict: layer {layer} has peepholes in only one of its two directions")
    out = {"W": np.stack(W), "R": np.stack(R), "B": np.stack(B) if B else None}
    if P:
        out["P"] = np.stack(P)
    return out


def onnx_to_torch(kind: str, W: Any, R: Any, B: Any = None, layer: int = 0, P: Any = None) -> Dict[str, Array]:
    """torch.nn state-dict entries of one layer from ONNX inputs W, R, B (and P).

    kind: "rnn", "lstm" or "gru"
    W: [D, G*H, I]; R: [D, G*H, H]; B: [D, 2*G*H] or None (no bias entries are made)
    layer: the layer index used in the names (``weight_ih_l{layer}``, ``..._reverse`` for d = 1)
    P: LSTM peepholes [D, 3*H] (p_i, p_o, p_f), or None; given, ``weight_peep_l{layer}`` entries
        [3*H] (p_i, p_f, p_o) are made, as gatecell's LSTM(peepholes=True) names them
    """
    G = _check_kind(kind)
    perm = _inverse(_ONNX_FROM_TORCH[kind])
    W, R = _array("W", W, 3), _array("R", R, 3)
    D, H = R.shape[0], R.shape[2]
    if D not in (1, 2) or R.shape[1] != G * H:
        raise ValueError(f"R: expected shape (D, {G}*H, H) with D in (1, 2), got {shape_str(R.shape)}")
    if W.shape[:2] != (D, G * H):
        raise ValueError(f"W: expected shape {shape_str((D, G * H, 'I'))}, got {shape_str(W.shape)}")
    if B is not None:
        B = _array("B", B, 2)
        if B.shape != (D, 2 * G * H):
            raise ValueError(f"B: expected shape {shape_str((D, 2 * G * H))}, got {shape_str(B.shape)}")
    if P is not None:
        if kind != "lstm":
            raise ValueError(f"P: peepholes exist for LSTM only, got kind {kind!r}")
        P = _array("P", P, 2)
        if P.shape != (D, 3 * H):
            raise ValueError(f"P: expected shape {shape_str((D, 3 * H))}, got {shape_str(P.shape)}")
    out: Dict[str, Array] = {}
    for d in range(D):
        sfx = _suffix(layer, d)
        out["weight_ih" + sfx] = _permute_blocks(W[d], perm, 0)
        out["weight_hh" + sfx] = _permute_blocks(R[d], perm, 0)
        if B is not None:
            out["bias_ih" + sfx] = _permute_blocks(B[d, :G * H], perm, 0)
            out["bias_hh" + sfx] = _permute_blocks(B[d, G * H:], perm, 0)
        if P is not None:
            out["weight_peep" + sfx] = _permute_blocks(P[d], _inverse(_ONNX_PEEP_FROM_TORCH), 0)
    return out


def torch_to_keras(kind: str, state_dict: Mapping[str, Any], layer: int = 0, reverse: bool = False,
                   reset_after: bool = True) -> KerasWeights:
    """Keras weights (kernel, recurrent_kernel, bias) of one (layer, direction) of a torch.nn-style state dict.

    kind: "rnn" (SimpleRNN), "lstm" or "gru"
    state_dict: torch.nn names
    layer, reverse: which (layer, direction); a Keras Bidirectional wrapper holds one layer per direction
    reset_after: GRU only, the Keras form: True gives bias [2, 3H] (torch's form), False bias [3H]
        (the original form, gatecell's linear_before_reset=False)
    returns kernel [I, G*H], recurrent_kernel [H, G*H], bias (see above; None without bias)
    """
    w_ih, w_hh, b_ih, b_hh = _torch_direction(kind, state_dict, layer, int(bool(reverse)))
    if _torch_peepholes(kind, state_dict, layer, int(bool(reverse)), w_hh.shape[1]) is not None:
        raise ValueError(f"state_dict: weight_peep{_suffix(layer, int(bool(reverse)))}: Keras layers have no "
                         "peepholes, so these weights have no Keras form")
    perm = _KERAS_FROM_TORCH[kind]
    kernel = np.ascontiguousarray(_permute_blocks(w_ih, perm, 0).T)
    recurrent = np.ascontiguousarray(_permute_blocks(w_hh, perm, 0).T)
    bias = None
    if b_ih is not None:
        b_i, b_h = _permute_blocks(b_ih, perm, 0), _permute_blocks(b_hh, perm, 0)
        bias = np.stack([b_i, b_h]) if kind == "gru" and reset_after else b_i + b_h
    return kernel, recurrent, bias


def keras_to_torch(kind: str, kernel: Any, recurrent_kernel: Any, bias: Any = None, layer: int = 0,
                   reverse: bool = False) -> Dict[str, Array]:
    """torch.nn state-dict entries of one (layer, direction) from Keras weights.

    kind: "rnn" (SimpleRNN), "lstm" or "gru"
    kernel: [I, G*H]; recurrent_kernel: [H, G*H]
    bias: [G*H], or GRU reset_after=True [2, G*H], or None (no bias entries are made); a single bias
        becomes bias_ih, with bias_hh = -0.0
    layer, reverse: the names to use (``weight_ih_l{layer}``, ``_reverse``)
    A GRU with a [G*H] bias (reset_after=False) is gatecell's linear_before_reset=False form.
    """
    G = _check_kind(kind)
    perm = _inverse(_KERAS_FROM_TORCH[kind])
    kernel, recurrent = _array("kernel", kernel, 2), _array("recurrent_kernel", recurrent_kernel, 2)
    H = recurrent.shape[0]
    if recurrent.shape != (H, G * H):
        raise ValueError(f"recurrent_kernel: expected shape (H, {G}*H), got {shape_str(recurrent.shape)}")
    if kernel.shape[1] != G * H:
        raise ValueError(f"kernel: expected shape {shape_str(('I', G * H))}, got {shape_str(kernel.shape)}")
    sfx = _suffix(layer, int(bool(reverse)))
    out = {"weight_ih" + sfx: _permute_blocks(kernel.T, perm, 0),
           "weight_hh" + sfx: _permute_blocks(recurrent.T, perm, 0)}
    if bias is not None:
        bias = np.asarray(to_numpy(bias))
        if kind == "gru" and bias.shape == (2, G * H):
            b_i, b_h = bias[0], bias[1]
        elif bias.shape == (G * H,):
            b_i = _array("bias", bias, 1)
            b_h = _negative_zero(b_i)
        else:
            allowed = [(G * H,)] + ([(2, G * H)] if kind == "gru" else [])
            raise ValueError(f"bias: expected shape {' or '.join(map(shape_str, allowed))}, got {shape_str(bias.shape)}")
        out["bias_ih" + sfx] = _permute_blocks(_array("bias", b_i, 1), perm, 0)
        out["bias_hh" + sfx] = _permute_blocks(_array("bias", b_h, 1), perm, 0)
    return out


def onnx_to_keras(kind: str, W: Any, R: Any, B: Any = None, direction: int = 0,
                  reset_after: bool = True, P: Any = None) -> KerasWeights:
    """Keras weights (kernel, recurrent_kernel, bias) of one direction of ONNX inputs W, R, B.

    kind: "rnn", "lstm" or "gru"
    W, R, B: the ONNX inputs ([D, G*H, I], [D, G*H, H], [D, 2*G*H] or None)
    direction: 0 (forward) or 1 (the reverse direction of a bidirectional node)
    reset_after: GRU only: the Keras form (True for ONNX linear_before_reset=1, False for 0)
    P: must be None: Keras has no peepholes (accepted so that ``**torch_to_onnx(...)`` passes through)
    """
    sd = onnx_to_torch(kind, W, R, B, P=P)
    if direction not in (0, 1) or ("weight_ih" + _suffix(0, direction)) not in sd:
        raise ValueError(f"direction: expected 0{' or 1' if 'weight_ih_l0_reverse' in sd else ''}, got {direction!r}")
    return torch_to_keras(kind, sd, 0, bool(direction), reset_after)


def keras_to_onnx(kind: str, forward: Sequence[Any], backward: Optional[Sequence[Any]] = None
                  ) -> Dict[str, Optional[Array]]:
    """ONNX inputs W, R, B from the Keras weights of one direction or of both (a Bidirectional wrapper).

    kind: "rnn", "lstm" or "gru"
    forward: (kernel, recurrent_kernel, bias or None) of the forward layer
    backward: the same for the backward layer, or None for a unidirectional node
    returns {"W", "R", "B"} as torch_to_onnx does
    """
    sd: Dict[str, Array] = {}
    for d, weights in enumerate((forward, backward)):
        if weights is None:
            continue
        if len(weights) not in (2, 3):
            raise ValueError(f"{('forward', 'backward')[d]}: expected (kernel, recurrent_kernel[, bias]), "
                             f"got {len(weights)} arrays")
        sd.update(keras_to_torch(kind, *weights, layer=0, reverse=bool(d)))
    return torch_to_onnx(kind, sd, 0)


# Keras 3 activation name -> gatecell activation (ONNX name, alpha, beta), for exactly those Keras
# functions that equal one of ONNX's eleven (Keras' default arguments).
KERAS_ACTIVATIONS: Dict[str, Tuple[str, float, float]] = {
    "tanh": ("Tanh", 0.0, 0.0),
    "sigmoid": ("Sigmoid", 0.0, 0.0),
    "hard_sigmoid": ("HardSigmoid", 1.0 / 6.0, 0.5),  # relu6(x + 3) / 6 = max(0, min(1, x/6 + 1/2))
    "relu": ("Relu", 0.0, 0.0),
    "linear": ("Affine", 1.0, 0.0),
    "elu": ("Elu", 1.0, 0.0),
    "softsign": ("Softsign", 0.0, 0.0),
    "softplus": ("Softplus", 0.0, 0.0),
    "leaky_relu": ("LeakyRelu", 0.2, 0.0),  # Keras 3's default negative_slope
}
# gatecell's activations=None: torch's functions per kind, as Keras names.
_TORCH_DEFAULT_KERAS = {"rnn": ("tanh",), "gru": ("sigmoid", "tanh"), "lstm": ("sigmoid", "tanh", "tanh")}


def _keras_activation_name(name: str, value: Any) -> str:
    if value is None:
        return "linear"  # Keras: activation=None is the identity
    if callable(value) and not isinstance(value, str):
        value = getattr(value, "__name__", repr(value))
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a Keras activation name or function, got {type(value).__name__}")
    if value not in KERAS_ACTIVATIONS:
        raise ValueError(f"{name}: expected a Keras activation that is exactly one of ONNX's functions, one of "
                         f"{sorted(KERAS_ACTIVATIONS)}, got {value!r}")
    return value


def keras_activations(kind: str, activation: Any = "tanh", recurrent_activation: Any = "sigmoid") -> Optional[list]:
    """gatecell's ``activations=`` for a Keras layer with these activation functions.

    kind: "rnn" (SimpleRNN: only ``activation``), "lstm" or "gru"
    activation: Keras' ``activation`` (a name such as "tanh", a Keras activation function, or None
        for linear); it is the candidate's function (GRU g, LSTM g and h, SimpleRNN f)
    recurrent_activation: Keras' ``recurrent_activation``, the gates' function (LSTM, GRU f)
    returns None when these are torch's functions (gatecell's default), else one
        (ONNX name, alpha, beta) per function in gatecell's order (RNN f; GRU f, g; LSTM f, g, h)
    A Keras function that is not exactly one of ONNX's eleven raises ValueError naming it.
    """
    _check_kind(kind)
    act = _keras_activation_name("activation", activation)
    if kind == "rnn":
        names: Tuple[str, ...] = (act,)
    else:
        gate = _keras_activation_name("recurrent_activation", recurrent_activation)
        names = (gate, act) if kind == "gru" else (gate, act, act)
    if names == _TORCH_DEFAULT_KERAS[kind]:
        return None
    return [KERAS_ACTIVATIONS[n] for n in names]
