# SPDX-License-Identifier: MIT
"""The ONNX RNN, GRU and LSTM operators (opset 14 and later), executed by the C++ core.

``rnn``, ``gru`` and ``lstm`` take the operator's inputs as NumPy arrays and its attributes as
keywords, and return its outputs, with the semantics of ONNX's Operators.md as ONNX Runtime
implements them:

- ``layout=0``: X [T, N, I], initial_h/initial_c [D, N, H], Y [T, D, N, H], Y_h/Y_c [D, N, H];
  ``layout=1``: X [N, T, I], initial_h/initial_c [N, D, H], Y [N, T, D, H], Y_h/Y_c [N, D, H].
- W [D, G*H, I], R [D, G*H, H], B [D, 2*G*H] = [Wb, Rb] (the input and recurrent biases, kept
  apart exactly like torch's b_ih and b_hh), gate order LSTM i, o, f, c and GRU z, r, h.
- ``sequence_lens`` [N] (values in [0, T]): sequence n only runs its first sequence_lens[n] steps;
  Y is zero at steps t >= sequence_lens[n]; Y_h/Y_c hold the state after the last step that
  direction processed. The reverse direction runs each sequence backwards from its own last
  valid step (t = sequence_lens[n]-1 down to 0), so its Y_h is the state at t = 0. A sequence of
  length 0 has Y, Y_h and Y_c all zero (whatever initial_h/initial_c hold), as in ONNX Runtime.
- GRU ``linear_before_reset=0`` (ONNX's default) is the original form
  h~ = tanh(W_h x + Wb_h + R_h (r * h) + Rb_h), and 1 is torch's form
  h~ = tanh(W_h x + Wb_h + r * (R_h h + Rb_h)).

- ``activations``: the eleven functions of Operators.md (Relu, Tanh, Sigmoid, Affine, LeakyRelu,
  ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, Softsign, Softplus; any case), count per
  direction (RNN f; GRU f, g; LSTM f, g, h), both directions' lists one after the other (a list of
  one direction's functions is also accepted for both). ``activation_alpha`` and
  ``activation_beta`` are consumed in the order of the functions, each value by the next function
  that takes that parameter (alpha: Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid,
  Elu; beta: Affine, ScaledTanh, HardSigmoid), as ONNX Runtime does; values left over raise
  ValueError. A parameter not given takes the default of the ONNX operator of the same name
  (LeakyRelu alpha 0.01, ThresholdedRelu 1.0, HardSigmoid 0.2/0.5, Elu 1.0) and, for the retired
  Affine and ScaledTanh, 1.0/0.0 and 1.0/1.0.
- ``clip`` (> 0) bounds every gate pre-activation (peephole terms included) to [-clip, clip]
  before its function; the LSTM cell state is not clipped before h. ``input_forget=1`` couples
  the LSTM gates, f = 1 - i (the forget gate's peephole then plays no part). ``P`` [D, 3*H] holds
  the peepholes in ONNX's order i, o, f: i and f look at C_{t-1}, o at C_t.

These run in the C++ core (the cell-variant kernels, cpp/src/variants.cpp); the default cells
run in the torch-form kernels. Float16 inputs are refused with TypeError (float32 and float64 only).

ONNX Runtime (1.32, CPU) quirks, where gatecell follows Operators.md instead:
- ThresholdedRelu, ScaledTanh and Affine without activation_alpha/activation_beta: ONNX Runtime
  uses 0 for the missing values (ThresholdedRelu becomes a Relu, ScaledTanh and Affine return 0);
  Operators.md says the defaults are those of the operators (ThresholdedRelu alpha = 1.0).
- ONNX Runtime's LSTM runs float32 only (double inputs fail: "LSTM operator does not support
  double yet"); gatecell runs both.
"""

from __future__ import annotations

import numbers
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _core
from ._checks import ACTIVATION_DEFAULTS, check_clip, shape_str, to_numpy
from .convert import GATES, onnx_to_torch

__all__ = ["rnn", "gru", "lstm", "run_node", "from_onnx", "OPS"]

Array = np.ndarray

# ONNX operator -> gatecell cell kind
OPS = {"RNN": "rnn", "GRU": "gru", "LSTM": "lstm"}
_DEFAULT_ACTIVATIONS = {"rnn": ("Tanh",), "gru": ("Sigmoid", "Tanh"), "lstm": ("Sigmoid", "Tanh", "Tanh")}
_ACTIVATION_NAMES = {name.lower(): name for name in ACTIVATION_DEFAULTS}
# The functions that consume a value of activation_alpha / activation_beta.
_USES_ALPHA = {"Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid", "Elu"}
_USES_BETA = {"Affine", "ScaledTanh", "HardSigmoid"}
_DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


def _float_input(name: str, value: Any, dtype: Optional[np.dtype], shape: Optional[Tuple[int, ...]] = None) -> Array:
    """An ONNX tensor input of type T as a C-contiguous float32/float64 array of `dtype` (that of X)."""
    arr = np.asarray(to_numpy(value))
    if dtype is None:
        if arr.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name}: expected dtype float32 or float64, got {arr.dtype}")
    elif arr.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype} (that of X), got {arr.dtype}")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape_str(shape)}, got {shape_str(arr.shape)}")
    return np.ascontiguousarray(arr)


def _reverse_sequences(x: Array, lengths: Optional[Array], batch_first: bool) -> Array:
    """Each sequence's first lengths[n] steps in reverse order (an involution); later steps unchanged.

    x: [T, N, C] or [N, T, C] (batch_first); lengths: [N] or None for all T
    """
    T, N = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    if lengths is None:
        return np.ascontiguousarray(x[:, ::-1] if batch_first else x[::-1])
    t = np.arange(T)[:, None]
    source = np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)  # [T, N]
    n = np.arange(N)[None, :]
    return np.ascontiguousarray(x[n.T, source.T] if batch_first else x[source, n])


def _real_list(name: str, values: Any) -> List[float]:
    if values is None:
        return []
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected a list of floats, got {values!r}") from exc


def activation_specs(kind: str, D: int, activations: Any, activation_alpha: Any = None,
                     activation_beta: Any = None) -> List[list]:
    """The functions of every direction as [[Name, alpha, beta], ...] (D * count, direction-major).

    kind: "rnn", "gru" or "lstm"; D: number of directions
    activations: the operator's attribute (None or empty for the defaults)
    activation_alpha, activation_beta: the attributes, consumed in the order of the functions
    """
    per_direction = _DEFAULT_ACTIVATIONS[kind]
    count = len(per_direction)
    if activations is None or len(activations) == 0:
        names = list(per_direction) * D
    else:
        names = []
        for a in activations:
            a = a.decode() if isinstance(a, bytes) else str(a)
            if a.lower() not in _ACTIVATION_NAMES:
                raise ValueError(f"activations: expected names among {list(ACTIVATION_DEFAULTS)} (any case), "
                                 f"got {a!r}")
            names.append(_ACTIVATION_NAMES[a.lower()])
        if len(names) not in (count, count * D):
            raise ValueError(f"activations: expected {count * D} names ({count} per direction, {D} direction(s)), "
                             f"got {list(activations)}")
    alphas = _real_list("activation_alpha", activation_alpha)
    betas = _real_list("activation_beta", activation_beta)
    specs = []
    for name in names:
        alpha, beta = ACTIVATION_DEFAULTS[name]
        if name in _USES_ALPHA and alphas:
            alpha = alphas.pop(0)
        if name in _USES_BETA and betas:
            beta = betas.pop(0)
        specs.append([name, alpha, beta])
    if alphas or betas:
        raise ValueError(f"activation_alpha, activation_beta: {len(alphas)} alpha and {len(betas)} beta value(s) "
                         f"left over after the functions {names} took theirs")
    if len(specs) == count and D == 2:
        specs = specs + [list(s) for s in specs]  # one list given for both directions
    return specs


def _torch_kind(kind: str, specs: List[list]) -> Optional[str]:
    """The torch-form cell kind running exactly these functions (one direction's), or None."""
    names = tuple(s[0] for s in specs)
    if kind == "rnn" and names in (("Tanh",), ("Relu",)):
        return "rnn_" + names[0].lower()
    return kind if names == _DEFAULT_ACTIVATIONS[kind] else None


def _check_flag(name: str, value: Any) -> bool:
    if value not in (0, 1):
        raise ValueError(f"{name}: expected 0 or 1, got {value!r}")
    return bool(value)


def _variant_arguments(node: Any, kind: str, D: int, attrs: Dict[str, Any], has_peepholes: bool) -> Dict[str, Any]:
    """The layer keywords that give a node's cells: nonlinearity (RNN) or activations, clip, input_forget,
    peepholes. Torch's functions in every direction stay the torch-form layer (no activations)."""
    try:
        specs = activation_specs(kind, D, attrs.get("activations"), attrs.get("activation_alpha"),
                                 attrs.get("activation_beta"))
        clip = check_clip("clip", attrs.get("clip"))
        coupled = _check_flag("input_forget", attrs.get("input_forget", 0))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"node {node.name!r}: {exc}") from exc
    count = len(specs) // D
    kinds = {_torch_kind(kind, specs[d * count:(d + 1) * count]) for d in range(D)}
    out: Dict[str, Any] = {}
    if len(kinds) == 1 and None not in kinds:
        if kind == "rnn":
            out["nonlinearity"] = kinds.pop()[len("rnn_"):]
    else:
        out["activations"] = specs
    if clip is not None:
        out["clip"] = clip
    if coupled:
        out["input_forget"] = True
    if has_peepholes:
        out["peepholes"] = True
    return out


def _core_forward(kind: str, entries: list, x: Array, lengths: Optional[Array], h0: Optional[Array],
                  c0: Optional[Array], batch_first: bool, linear_before_reset: bool,
                  variants: Optional[Dict[str, Any]] = None) -> Tuple[Array, Array, Optional[Array]]:
    """One layer through gatecell._core.network_forward; entries: 1 or 2 torch-layout weight tuples
    (a sixth item w_peep with peepholes); variants: None for the torch-form cells, else the
    NetworkConfig fields activations (normalised specs of these directions), clip, input_forget, peepholes."""
    from .layers import core_activations

    cfg = _core.NetworkConfig()
    cfg.kind = getattr(_core.CellKind, kind)
    cfg.input_size, cfg.hidden_size = x.shape[2], entries[0][1].shape[1]
    cfg.num_layers, cfg.bidirectional = 1, len(entries) == 2
    cfg.bias = entries[0][2] is not None
    cfg.linear_before_reset = linear_before_reset
    if variants is not None:
        cfg.activations = core_activations(variants["activations"])
        cfg.clip = variants["clip"] or 0.0
        cfg.input_forget, cfg.peepholes = variants["input_forget"], variants["peepholes"]
    y, h_n, c_n, _ = _core.network_forward(cfg, entries, x, lengths, h0, c0, batch_first, False, 0)
    return y, h_n, c_n


def _run(op_kind: str, X: Any, W: Any, R: Any, B: Any, sequence_lens: Any, initial_h: Any, initial_c: Any,
         activations: Any, activation_alpha: Any, activation_beta: Any, clip: Any, direction: Any,
         hidden_size: Any, layout: Any, linear_before_reset: Any = 0, input_forget: Any = 0, P: Any = None,
         ) -> Tuple[Array, Array, Optional[Array]]:
    """Checks the inputs of one ONNX recurrent operator, runs it, returns (Y, Y_h, Y_c or None)."""
    if isinstance(direction, bytes):
        direction = direction.decode()
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction: expected one of {list(_DIRECTIONS)}, got {direction!r}")
    if layout not in (0, 1):
        raise ValueError(f"layout: expected 0 or 1, got {layout!r}")
    if linear_before_reset not in (0, 1):
        raise ValueError(f"linear_before_reset: expected 0 or 1, got {linear_before_reset!r}")
    D = _DIRECTIONS[direction]
    specs = activation_specs(op_kind, D, activations, activation_alpha, activation_beta)
    count = len(specs) // D
    clip = check_clip("clip", clip)
    coupled = _check_flag("input_forget", input_forget)
    kinds = [_torch_kind(op_kind, specs[d * count:(d + 1) * count]) for d in range(D)]
    variants = None
    if clip is not None or coupled or P is not None or None in kinds:
        variants = {"activations": specs, "clip": clip, "input_forget": coupled, "peepholes": P is not None}
        kinds = [op_kind if op_kind != "rnn" else "rnn_tanh"] * D  # the functions come from `activations`
    batch_first = layout == 1

    X = _float_input("X", X, None)
    dtype = X.dtype
    if X.ndim != 3:
        raise ValueError(f"X: expected 3 dimensions ({'[N, T, I]' if batch_first else '[T, N, I]'}), "
                         f"got shape {shape_str(X.shape)}")
    T, N = (X.shape[1], X.shape[0]) if batch_first else (X.shape[0], X.shape[1])
    if T < 1:
        raise ValueError(f"X: the sequence length must be at least 1, got shape {shape_str(X.shape)}")
    G = GATES[op_kind]
    R = _float_input("R", R, dtype)
    if R.ndim != 3 or R.shape[1] != G * R.shape[2]:
        raise ValueError(f"R: expected shape (D, {G}*hidden_size, hidden_size), got {shape_str(R.shape)}")
    H = R.shape[2]
    if hidden_size is not None and hidden_size != H:
        raise ValueError(f"hidden_size: expected {H} (from R's shape {shape_str(R.shape)}), got {hidden_size!r}")
    R = _float_input("R", R, dtype, (D, G * H, H))
    W = _float_input("W", W, dtype, (D, G * H, X.shape[2]))
    if B is not None:
        B = _float_input("B", B, dtype, (D, 2 * G * H))
    lengths = None
    if sequence_lens is not None:
        lens = np.asarray(to_numpy(sequence_lens))
        if lens.dtype.kind not in "iu":
            raise TypeError(f"sequence_lens: expected integers (int32), got dtype {lens.dtype}")
        if lens.shape != (N,):
            raise ValueError(f"sequence_lens: expected shape {shape_str((N,))}, got {shape_str(lens.shape)}")
        if N and (lens.min() < 0 or lens.max() > T):
            raise ValueError(f"sequence_lens: every value must be in [0, {T}], got values from {lens.min()} "
                             f"to {lens.max()}")
        lengths = np.ascontiguousarray(lens, dtype=np.int64)
    state_shape = (N, D, H) if batch_first else (D, N, H)
    states = []
    for name, value in (("initial_h", initial_h), ("initial_c", initial_c)):
        if value is not None:
            value = _float_input(name, value, dtype, state_shape)
            value = np.ascontiguousarray(value.transpose(1, 0, 2)) if batch_first else value
        states.append(value)
    h0, c0 = states

    sd = onnx_to_torch(op_kind, W, R, B)
    entries = [tuple(sd.get(name + ("_l0_reverse" if d else "_l0"))
                     for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")) for d in range(D)]
    if P is not None:
        P = _float_input("P", P, dtype, (D, 3 * H))
        # ONNX orders the peepholes i, o, f; the core (p_i, p_f, p_o).
        entries = [e + (np.ascontiguousarray(np.concatenate([P[d, :H], P[d, 2 * H:], P[d, H:2 * H]])),)
                   for d, e in enumerate(entries)]
    lbr = bool(linear_before_reset)

    def one_direction(d: int, reverse: bool) -> Tuple[Array, Array, Optional[Array]]:
        state = [None if s is None else s[d:d + 1] for s in (h0, c0)]
        x = _reverse_sequences(X, lengths, batch_first) if reverse else X
        mine = None if variants is None else dict(variants, activations=specs[d * count:(d + 1) * count])
        y, h_n, c_n = _core_forward(kinds[d], [entries[d]], x, lengths, state[0], state[1], batch_first, lbr, mine)
        return (_reverse_sequences(y, lengths, batch_first) if reverse else y), h_n, c_n

    if D == 2 and kinds[0] == kinds[1]:
        y, h_n, c_n = _core_forward(kinds[0], entries, X, lengths, h0, c0, batch_first, lbr, variants)
    elif D == 2:  # an RNN with a different activation per direction: one core call each
        parts = [one_direction(0, False), one_direction(1, True)]
        y = np.concatenate([parts[0][0], parts[1][0]], axis=2)
        h_n = np.concatenate([parts[0][1], parts[1][1]], axis=0)
        c_n = None
    else:
        y, h_n, c_n = one_direction(0, direction == "reverse")

    if lengths is not None and np.any(lengths == 0):
        # ONNX Runtime: a sequence that runs no step ends in a zero state, not in its initial state.
        h_n[:, lengths == 0] = 0
        if c_n is not None:
            c_n[:, lengths == 0] = 0
    if batch_first:
        Y = y.reshape(N, T, D, H)
        Y_h = np.ascontiguousarray(h_n.transpose(1, 0, 2))
        Y_c = None if c_n is None else np.ascontiguousarray(c_n.transpose(1, 0, 2))
    else:
        Y = np.ascontiguousarray(y.reshape(T, N, D, H).transpose(0, 2, 1, 3))
        Y_h, Y_c = h_n, c_n
    return Y, Y_h, Y_c


def rnn(X: Any, W: Any, R: Any, B: Any = None, sequence_lens: Any = None, initial_h: Any = None, *,
        activation_alpha: Optional[Sequence[float]] = None, activation_beta: Optional[Sequence[float]] = None,
        activations: Optional[Sequence[str]] = None, clip: Optional[float] = None, direction: str = "forward",
        hidden_size: Optional[int] = None, layout: int = 0) -> Tuple[Array, Array]:
    """The ONNX RNN operator, H_t = f(X_t W^T + H_{t-1} R^T + Wb + Rb) -> (Y, Y_h).

    X: [T, N, I] (layout 0) or [N, T, I] (layout 1), float32 or float64
    W: [D, H, I]; R: [D, H, H]; B: [D, 2*H] = [Wb, Rb] or None for zero
    sequence_lens: [N] ints in [0, T] or None for all T
    initial_h: [D, N, H] (layout 0) or [N, D, H] (layout 1), or None for zeros
    activations: f per direction (default Tanh), any of the eleven functions (see the module docstring)
    activation_alpha, activation_beta: their parameters, consumed in order; clip: None or > 0
    direction: "forward", "reverse" or "bidirectional" (D = 2); hidden_size: checked against R
    layout: 0 or 1, as above; returns Y [T, D, N, H] or [N, T, D, H], Y_h [D, N, H] or [N, D, H]
    """
    Y, Y_h, _ = _run("rnn", X, W, R, B, sequence_lens, initial_h, None, activations, activation_alpha,
                     activation_beta, clip, direction, hidden_size, layout)
    return Y, Y_h


def gru(X: Any, W: Any, R: Any, B: Any = None, sequence_lens: Any = None, initial_h: Any = None, *,
        activation_alpha: Optional[Sequence[float]] = None, activation_beta: Optional[Sequence[float]] = None,
        activations: Optional[Sequence[str]] = None, clip: Optional[float] = None, direction: str = "forward",
        hidden_size: Optional[int] = None, layout: int = 0, linear_before_reset: int = 0) -> Tuple[Array, Array]:
    """The ONNX GRU operator (gates z, r, h) -> (Y, Y_h).

    X: [T, N, I] (layout 0) or [N, T, I] (layout 1), float32 or float64
    W: [D, 3*H, I]; R: [D, 3*H, H]; B: [D, 6*H] = [Wb, Rb] or None for zero
    sequence_lens: [N] ints in [0, T] or None for all T
    initial_h: [D, N, H] (layout 0) or [N, D, H] (layout 1), or None for zeros
    activations: f (gates z, r), g (candidate) per direction (default Sigmoid, Tanh), any of the eleven
        functions; activation_alpha, activation_beta: their parameters, consumed in order; clip: None or > 0
    direction: "forward", "reverse" or "bidirectional" (D = 2); hidden_size: checked against R
    layout: 0 or 1, as above
    linear_before_reset: 0 (ONNX's default, the original form) or 1 (torch's form)
    returns Y [T, D, N, H] or [N, T, D, H], Y_h [D, N, H] or [N, D, H]
    """
    Y, Y_h, _ = _run("gru", X, W, R, B, sequence_lens, initial_h, None, activations, activation_alpha,
                     activation_beta, clip, direction, hidden_size, layout, linear_before_reset)
    return Y, Y_h


def lstm(X: Any, W: Any, R: Any, B: Any = None, sequence_lens: Any = None, initial_h: Any = None,
         initial_c: Any = None, P: Any = None, *, activation_alpha: Optional[Sequence[float]] = None,
         activation_beta: Optional[Sequence[float]] = None, activations: Optional[Sequence[str]] = None,
         clip: Optional[float] = None, direction: str = "forward", hidden_size: Optional[int] = None,
         input_forget: int = 0, layout: int = 0) -> Tuple[Array, Array, Array]:
    """The ONNX LSTM operator (gates i, o, f, c) -> (Y, Y_h, Y_c).

    X: [T, N, I] (layout 0) or [N, T, I] (layout 1), float32 or float64
    W: [D, 4*H, I]; R: [D, 4*H, H]; B: [D, 8*H] = [Wb, Rb] or None for zero
    sequence_lens: [N] ints in [0, T] or None for all T
    initial_h, initial_c: [D, N, H] (layout 0) or [N, D, H] (layout 1), or None for zeros
    P: peepholes [D, 3*H] ordered i, o, f, or None for none
    activations: f (gates), g (cell input), h (cell output) per direction (default Sigmoid, Tanh, Tanh),
        any of the eleven functions; activation_alpha, activation_beta: their parameters, consumed in
        order; clip: None or > 0 (gate pre-activations only); input_forget: 0, or 1 for f = 1 - i
    direction: "forward", "reverse" or "bidirectional" (D = 2); hidden_size: checked against R
    layout: 0 or 1, as above
    returns Y [T, D, N, H] or [N, T, D, H], Y_h and Y_c [D, N, H] or [N, D, H]
    """
    Y, Y_h, Y_c = _run("lstm", X, W, R, B, sequence_lens, initial_h, initial_c, activations, activation_alpha,
                       activation_beta, clip, direction, hidden_size, layout, 0, input_forget, P)
    return Y, Y_h, Y_c


_FUNCTIONS = {"RNN": rnn, "GRU": gru, "LSTM": lstm}
_INPUTS = {"RNN": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
           "GRU": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
           "LSTM": ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")}
_ATTRIBUTES = {"RNN": {"activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size",
                       "layout"}}
_ATTRIBUTES["GRU"] = _ATTRIBUTES["RNN"] | {"linear_before_reset"}
_ATTRIBUTES["LSTM"] = _ATTRIBUTES["RNN"] | {"input_forget"}


def _check_node(node: Any) -> None:
    if type(node).__name__ != "NodeProto":
        raise TypeError(f"node: expected an onnx.NodeProto, got {type(node).__name__}")
    if node.op_type not in _FUNCTIONS or node.domain not in ("", "ai.onnx"):
        raise ValueError(f"node: expected an RNN, GRU or LSTM node of the default domain, got "
                         f"{node.domain + '.' if node.domain else ''}{node.op_type}")


def _node_attributes(node: Any) -> Dict[str, Any]:
    """The node's attributes as Python values (strings decoded); unknown names raise ValueError."""
    from onnx import helper

    attrs: Dict[str, Any] = {}
    for a in node.attribute:
        if a.name not in _ATTRIBUTES[node.op_type]:
            raise ValueError(f"node {node.name!r}: unknown {node.op_type} attribute {a.name!r}; expected one of "
                             f"{sorted(_ATTRIBUTES[node.op_type])}")
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list):
            value = [v.decode() if isinstance(v, bytes) else v for v in value]
        attrs[a.name] = value
    return attrs


def run_node(node: Any, inputs: Sequence[Any]) -> List[Array]:
    """Runs one ONNX RNN, GRU or LSTM node.

    node: an onnx.NodeProto (attributes are read from it)
    inputs: arrays aligned with node.input; None (or anything, for an empty name '') where omitted
    returns one array per non-empty name of node.output, in order (Y, Y_h, Y_c as requested)
    """
    _check_node(node)
    names = _INPUTS[node.op_type]
    if len(node.input) > len(names):
        raise ValueError(f"node {node.name!r}: {node.op_type} takes at most {len(names)} inputs, "
                         f"got {len(node.input)}")
    if not isinstance(inputs, (list, tuple)) or len(inputs) != len(node.input):
        got = len(inputs) if isinstance(inputs, (list, tuple)) else type(inputs).__name__
        raise ValueError(f"inputs: expected a list of {len(node.input)} arrays aligned with node.input "
                         f"{list(node.input)}, got {got}")
    args = {name: (value if node.input[k] else None) for k, (name, value) in enumerate(zip(names, inputs))}
    for required in ("X", "W", "R"):
        if args.get(required) is None:
            raise ValueError(f"inputs: {required} is required, got None")
    outputs = _FUNCTIONS[node.op_type](**args, **_node_attributes(node))
    if len(node.output) > len(outputs):
        raise ValueError(f"node {node.name!r}: {node.op_type} has at most {len(outputs)} outputs, "
                         f"got {len(node.output)}")
    return [outputs[k] for k, name in enumerate(node.output) if name]


def _constants(graph: Any) -> Dict[str, Array]:
    """Every tensor of the graph known without running it: initializers, Constant nodes, Identity of those."""
    from onnx import numpy_helper

    known = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for a in node.attribute:
                if a.name == "value":
                    known[node.output[0]] = numpy_helper.to_array(a.t)
        elif node.op_type == "Identity" and node.input[0] in known:
            known[node.output[0]] = known[node.input[0]]
    return known


def from_onnx(model: Any) -> List[Any]:
    """gatecell layers holding the weights of every RNN, GRU and LSTM node of an ONNX model.

    model: an onnx.ModelProto or the path of an .onnx file
    returns one layer per node, in graph order: gc.RNN / gc.GRU / gc.LSTM with num_layers=1,
        bidirectional for direction="bidirectional", reverse=True for direction="reverse",
        batch_first for layout=1, the GRU form of linear_before_reset, bias=False when B is
        omitted, and the dtype of W. Chain them to rebuild a stacked network (torch.onnx.export
        writes one node per layer).

    Supported graph patterns: W, R and B are initializers, outputs of Constant nodes (attribute
    ``value``), or outputs of Identity nodes applied to either (any depth, in graph order) —
    what torch.onnx.export writes, with either exporter (dynamo=False: one node per layer; the
    default dynamo exporter writes LSTM and GRU nodes too, but unrolls torch.nn.RNN into
    MatMul/Tanh nodes, which hold no RNN node to find). A weight computed by any other node raises
    NotImplementedError.

    Cell variants become variant layers: ``activations`` with ``activation_alpha``/``beta`` (read as
    gc.onnx does; functions may differ between the two directions) -> ``activations=`` as
    [Name, alpha, beta] per function and direction, ``clip`` -> ``clip=``, ``input_forget=1`` ->
    ``input_forget=True``, and ``P`` -> ``peepholes=True`` with ``weight_peep_l0`` (order i, f, o;
    ONNX's P is i, o, f). Nodes with torch's functions build torch-form layers.
    """
    import onnx

    from .layers import GRU, LSTM, RNN

    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = onnx.load(model)
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"model: expected an onnx.ModelProto or a path, got {type(model).__name__}")
    known = _constants(model.graph)
    layers = []
    for node in model.graph.node:
        if node.op_type not in OPS or node.domain not in ("", "ai.onnx"):
            continue
        kind = OPS[node.op_type]
        attrs = _node_attributes(node)
        direction = attrs.get("direction", "forward")
        if direction not in _DIRECTIONS:
            raise ValueError(f"node {node.name!r}: direction: expected one of {list(_DIRECTIONS)}, got {direction!r}")
        D = _DIRECTIONS[direction]
        names = list(node.input) + [""] * (8 - len(node.input))
        weights = {}
        for k, name in ((1, "W"), (2, "R"), (3, "B"), (7, "P")):
            if not names[k]:
                weights[name] = None
            elif names[k] in known:
                weights[name] = known[names[k]]
            else:
                raise NotImplementedError(f"node {node.name!r}: input {name} ({names[k]!r}) is computed by the "
                                          "graph; only initializers, Constant and Identity of those are supported")
        W, R = weights["W"], weights["R"]
        if W is None or R is None or W.ndim != 3 or R.ndim != 3:
            raise ValueError(f"node {node.name!r}: expected W and R of 3 dimensions")
        if W.dtype not in (np.float32, np.float64):
            raise TypeError(f"node {node.name!r}: W: expected dtype float32 or float64, got {W.dtype}")
        common = dict(input_size=W.shape[2], hidden_size=R.shape[2], num_layers=1, bias=weights["B"] is not None,
                      batch_first=attrs.get("layout", 0) == 1, bidirectional=D == 2, dtype=W.dtype,
                      reverse=direction == "reverse", **_variant_arguments(node, kind, D, attrs, weights["P"] is not None))
        if kind == "lstm":
            layer = LSTM(**common)
        elif kind == "gru":
            layer = GRU(**common, linear_before_reset=bool(attrs.get("linear_before_reset", 0)))
        else:
            layer = RNN(**common)
        layer.load_state_dict(onnx_to_torch(kind, W, R, weights["B"], P=weights["P"]))
        layers.append(layer)
    return layers
