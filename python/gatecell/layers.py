# SPDX-License-Identifier: MIT
"""Layers with the torch.nn interface: RNN, LSTM, GRU, their cells, and Linear.

Every layer follows one protocol (see DESIGN.md): call it to run forward; ``backward``
returns the input gradient of the most recent training-mode forward call and *adds* the
parameter gradients into ``grads``; ``parameters()`` and ``grads`` are dicts of live arrays
keyed like torch state dicts.
"""

from __future__ import annotations

import math
import sys
import threading
import warnings
import weakref
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from . import _core
from ._checks import (INT64_MAX, as_dtype, as_float_array, check_activations, check_bool, check_clip, check_float,
                      check_int, shape_str, to_numpy)

__all__ = ["Module", "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "Linear", "MODULE_TYPES",
           "module_from_config"]

Array = np.ndarray
LSTMState = Tuple[Array, Array]
State = Union[Array, LSTMState]


def _refs_in_dict() -> int:
    """sys.getrefcount of an array that only one dict entry holds, read in a loop over the dict's values."""
    alone = {"probe": np.empty(0)}
    for arr in alone.values():
        return sys.getrefcount(arr)
    raise AssertionError("unreachable")


_ALONE_IN_DICT = _refs_in_dict()


class _Holder:
    pass


def _refs_as_attribute() -> int:
    """sys.getrefcount of a dict that only one object's attribute holds, read through that attribute."""
    holder = _Holder()
    holder.probe = {}
    return sys.getrefcount(holder.probe)


_ALONE_AS_ATTRIBUTE = _refs_as_attribute()


class Module:
    """Parameters, gradients, train/eval mode and state dicts: what every gatecell layer shares."""

    def __init__(self, dtype: Any, seed: Optional[int]) -> None:
        self.dtype: np.dtype = as_dtype(dtype)
        if seed is not None:
            check_int("seed", seed, minimum=0)
        self._rng = np.random.default_rng(seed)
        self._params: Dict[str, Array] = {}
        self._grads: Dict[str, Array] = {}
        self.training = True
        # backward calls on one module take turns, so concurrent ones add every gradient exactly.
        self._backward_lock = threading.Lock()
        # Held by a training forward while it refills the previous forward's cache in place: a
        # backward arriving meanwhile waits for it and differentiates the new forward.
        self._refill_lock = threading.Lock()
        # The kernels' packed weights, kept between calls while no one else can reach the
        # parameters (see _kept_packs); made on first use.
        self._packs: Any = None

    # Copies (copy.deepcopy, pickle) take the parameters, gradients, mode and settings; not the
    # activations a training forward saved for backward, nor the locks, which are made anew.
    # The kernels' config (_config) is made anew from the settings.
    _TRANSIENT = ("_backward_lock", "_refill_lock", "_saved", "_saved_x", "_config", "_packs")

    def __getstate__(self) -> Dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in self._TRANSIENT}
        state["_emptied"] = [k for k in ("_saved", "_saved_x") if k in self.__dict__]
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        state = dict(state)
        for k in state.pop("_emptied", ()):
            state[k] = None
        self.__dict__.update(state)
        self._backward_lock = threading.Lock()
        self._refill_lock = threading.Lock()
        self._packs = None
        if hasattr(self, "_core_config"):  # recurrent layers and cells
            self._config = self._core_config()

    def _reserve(self, count: int) -> None:
        """Fails with MemoryError up front when `count` parameters (and as many gradients) cannot fit.

        One allocation of the total, released at once: otherwise an absurd size (num_layers=10**9)
        would run thousands of small allocations until the system, not Python, stops the process.
        """
        if 2 * count * self.dtype.itemsize > INT64_MAX:
            raise MemoryError(f"parameters: {count} values of {self.dtype} exceed the addressable memory")
        np.empty(2 * count, dtype=self.dtype)

    def _add_parameter(self, name: str, shape: Tuple[int, ...], bound: float) -> None:
        # torch's default: every parameter uniform(-1/sqrt(hidden), 1/sqrt(hidden)).
        self._params[name] = self._rng.uniform(-bound, bound, size=shape).astype(self.dtype)
        self._grads[name] = np.zeros(shape, dtype=self.dtype)

    def parameters(self) -> Dict[str, Array]:
        """The live parameter arrays, keyed like the torch.nn state dict; update them in place."""
        self._packs = None  # whoever holds them may change them: the next call packs afresh
        return dict(self._params)

    def _kept_packs(self) -> Any:
        """The kernels' packed weights to keep between calls, or None to pack them for this call only.

        Kept only while nothing but this module can reach a parameter array: a handle from
        parameters() (or a view of one, or a weak reference) could change it in place unseen, and
        so could another module sharing the parameter dict (a copy.copy of this one). A live one
        shows in the reference counts, and then every call packs afresh; handing one out drops
        what was kept, so a change made through a handle that is gone by the next call is seen as
        well.
        """
        shared = sys.getrefcount(self._params) != _ALONE_AS_ATTRIBUTE
        if shared or any(sys.getrefcount(arr) != _ALONE_IN_DICT or weakref.getweakrefcount(arr)
                         for arr in self._params.values()):
            self._packs = None
            return None
        if self._packs is None:
            self._packs = _core.WeightPacksF32() if self.dtype == np.float32 else _core.WeightPacksF64()
        return self._packs

    @property
    def grads(self) -> Dict[str, Array]:
        """The live gradient arrays (same keys and shapes as ``parameters()``); backward adds into them."""
        return dict(self._grads)

    def zero_grad(self) -> None:
        for g in self._grads.values():
            g.fill(0)

    def train(self, mode: bool = True) -> "Module":
        """Training mode: forward saves what backward needs, and dropout is active."""
        self.training = check_bool("mode", mode)
        return self

    def eval(self) -> "Module":
        """Inference mode: forward saves no activations and applies no dropout."""
        return self.train(False)

    def state_dict(self) -> Dict[str, Array]:
        """A copy of every parameter, keyed and shaped as in torch.nn."""
        return {k: v.copy() for k, v in self._params.items()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Copies parameters in place from NumPy arrays or torch tensors with exactly our keys and shapes."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict: expected a mapping, got {type(state_dict).__name__}")
        missing = [k for k in self._params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in self._params]
        if missing or unexpected:
            raise ValueError(f"state_dict: missing keys {missing}, unexpected keys {unexpected}")
        arrays = {}
        for k, v in state_dict.items():
            v = to_numpy(v)
            try:
                arr = np.asarray(v)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"state_dict[{k!r}]: expected an array, got {type(v).__name__}") from exc
            if arr.dtype.kind not in "fiu" or arr.dtype.kind == "b":
                raise TypeError(f"state_dict[{k!r}]: expected a floating-point array, got dtype {arr.dtype}")
            if arr.shape != self._params[k].shape:
                raise ValueError(f"state_dict[{k!r}]: expected shape {shape_str(self._params[k].shape)}, "
                                 f"got {shape_str(arr.shape)}")
            arrays[k] = arr
        self._packs = None
        for k, arr in arrays.items():  # all checked before any is written
            self._params[k][...] = arr

    def config(self) -> Dict[str, Any]:
        """The constructor arguments that rebuild this module (JSON-able), with its class name as "type".

        Checkpoints store this; ``module_from_config`` inverts it.
        """
        raise NotImplementedError(f"{type(self).__name__} has no config()")

    def to_torch(self) -> Any:
        """The torch.nn twin of this module with copied weights (imports torch; see gatecell.interop)."""
        from .interop import to_torch
        return to_torch(self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


_KINDS = {"rnn_tanh": _core.CellKind.rnn_tanh, "rnn_relu": _core.CellKind.rnn_relu,
          "lstm": _core.CellKind.lstm, "gru": _core.CellKind.gru}
_ACTIVATION_KINDS = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "Affine": "affine",
                     "LeakyRelu": "leaky_relu", "ThresholdedRelu": "thresholded_relu", "ScaledTanh": "scaled_tanh",
                     "HardSigmoid": "hard_sigmoid", "Elu": "elu", "Softsign": "softsign", "Softplus": "softplus"}
# Functions per direction in `activations`: RNN (f), GRU (f, g), LSTM (f, g, h).
ACTIVATION_COUNTS = {"rnn_tanh": 1, "rnn_relu": 1, "gru": 2, "lstm": 3}


def core_activations(specs: Optional[list]) -> list:
    """Normalised [[Name, alpha, beta], ...] (see _checks.check_activations) as _core.ActivationSpec values."""
    return [_core.ActivationSpec(getattr(_core.Activation, _ACTIVATION_KINDS[n]), a, b) for n, a, b in specs or ()]


class _RecurrentBase(Module):
    """Multi-layer, optionally bidirectional recurrent network over whole sequences.

    ``reverse=True`` (unidirectional layers only; ONNX's direction="reverse") runs every layer's one
    direction backwards in time, each sequence from its own last valid step down to step 0, so
    ``out[t]`` summarises steps t.. of the sequence and h_n is the state after step 0. Its
    parameters keep the names of the forward direction (``weight_ih_l{k}``).
    """

    def __init__(self, kind: str, input_size: int, hidden_size: int, num_layers: int, bias: bool,
                 batch_first: bool, dropout: float, bidirectional: bool, proj_size: int,
                 linear_before_reset: bool, dtype: Any, seed: Optional[int], activations: Any = None,
                 clip: Any = None, input_forget: bool = False, peepholes: bool = False,
                 reverse: bool = False) -> None:
        super().__init__(dtype, seed)
        self.input_size = check_int("input_size", input_size, minimum=1, maximum=INT64_MAX)
        self.hidden_size = check_int("hidden_size", hidden_size, minimum=1, maximum=INT64_MAX)
        self.num_layers = check_int("num_layers", num_layers, minimum=1, maximum=INT64_MAX)
        self.bias = check_bool("bias", bias)
        self.batch_first = check_bool("batch_first", batch_first)
        self.dropout = check_float("dropout", dropout, 0.0, 1.0)
        self.bidirectional = check_bool("bidirectional", bidirectional)
        self.proj_size = check_int("proj_size", proj_size, minimum=0, maximum=INT64_MAX)
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size: expected a value < hidden_size ({self.hidden_size}), got {self.proj_size}")
        self.linear_before_reset = check_bool("linear_before_reset", linear_before_reset)
        self.reverse = check_bool("reverse", reverse)
        if self.reverse and self.bidirectional:
            raise ValueError("reverse: expected False with bidirectional=True (reverse makes the one direction "
                             "of a unidirectional layer run backwards in time), got True")
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn("dropout acts between recurrent layers, so with num_layers=1 it does nothing",
                          UserWarning, stacklevel=3)
        self.activations = check_activations("activations", activations, ACTIVATION_COUNTS[kind], self.num_directions)
        self.clip = check_clip("clip", clip)
        self.input_forget = check_bool("input_forget", input_forget)
        self.peepholes = check_bool("peepholes", peepholes)
        if (self.input_forget or self.peepholes) and kind != "lstm":
            raise ValueError(f"input_forget, peepholes: only LSTM has them, got input_forget={self.input_forget}, "
                             f"peepholes={self.peepholes} for {kind.upper()}")
        self._kind = kind
        self._config = self._core_config()

        gates = {"lstm": 4, "gru": 3}.get(kind, 1) * self.hidden_size
        out = self.proj_size or self.hidden_size
        bound = 1.0 / math.sqrt(self.hidden_size)
        def per_direction(in_size: int) -> int:
            return (gates * (in_size + out + 2 * self.bias) + self.proj_size * self.hidden_size
                    + 3 * self.hidden_size * self.peepholes)
        self._reserve(self.num_directions * (per_direction(self.input_size) + (self.num_layers - 1)
                                             * per_direction(self.num_directions * out)))
        self._entries = []  # per (layer, direction): the five names in the order _core expects
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else self.num_directions * out
            for direction in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if direction else "")
                self._add_parameter("weight_ih" + sfx, (gates, in_size), bound)
                self._add_parameter("weight_hh" + sfx, (gates, out), bound)
                if self.bias:
                    self._add_parameter("bias_ih" + sfx, (gates,), bound)
                    self._add_parameter("bias_hh" + sfx, (gates,), bound)
                if self.proj_size:
                    self._add_parameter("weight_hr" + sfx, (self.proj_size, self.hidden_size), bound)
                if self.peepholes:  # (p_i, p_f, p_o)
                    self._add_parameter("weight_peep" + sfx, (3 * self.hidden_size,), bound)
                self._entries.append(tuple(
                    (n + sfx) if (n.startswith("weight_") or self.bias) and (n != "weight_hr" or self.proj_size)
                    else None
                    for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"))
                    + (("weight_peep" + sfx,) if self.peepholes else ()))
        self._saved: Optional[Dict[str, Any]] = None

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _weights(self, store: Dict[str, Array]) -> list:
        return [tuple(None if n is None else store[n] for n in entry) for entry in self._entries]

    def _core_config(self) -> Any:
        """The kernels' NetworkConfig for this layer's settings (made at construction and on unpickling)."""
        cfg = _core.NetworkConfig()
        cfg.kind = _KINDS[self._kind]
        cfg.input_size, cfg.hidden_size = self.input_size, self.hidden_size
        cfg.proj_size, cfg.num_layers = self.proj_size, self.num_layers
        cfg.bidirectional, cfg.bias = self.bidirectional, self.bias
        cfg.reverse = self.reverse
        cfg.linear_before_reset, cfg.dropout = self.linear_before_reset, self.dropout
        cfg.activations = core_activations(self.activations)
        cfg.clip = self.clip or 0.0
        cfg.input_forget, cfg.peepholes = self.input_forget, self.peepholes
        cfg.validate()
        return cfg

    def _state_shapes(self, batch: Optional[int]) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        lead = (self.num_layers * self.num_directions,) + (() if batch is None else (batch,))
        return lead + (self.proj_size or self.hidden_size,), lead + (self.hidden_size,)

    def _state_array(self, name: str, value: Any, shape: Tuple[int, ...]) -> Array:
        arr = as_float_array(name, value, self.dtype)
        if arr.shape != shape:
            raise ValueError(f"{name}: expected shape {shape_str(shape)}, got {shape_str(arr.shape)}")
        return arr

    def _lengths(self, lengths: Any, steps: int, batch: int, unbatched: bool) -> Optional[Array]:
        if lengths is None:
            return None
        arr = np.asarray(to_numpy(lengths))
        if arr.dtype.kind not in "iu":
            raise TypeError(f"lengths: expected integers, got dtype {arr.dtype}")
        if unbatched and arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.shape != (batch,):
            raise ValueError(f"lengths: expected shape {shape_str((batch,))}, got {shape_str(arr.shape)}")
        if batch and (arr.min() < 1 or arr.max() > steps):
            raise ValueError(f"lengths: every length must be in [1, {steps}] (the sequence length), "
                             f"got values from {arr.min()} to {arr.max()}")
        return np.ascontiguousarray(arr, dtype=np.int64)

    def forward(self, x: Any, state: Optional[State] = None, lengths: Any = None) -> Tuple[Array, State]:
        """Runs the network: ``out, state = m(x, state=None, lengths=None)``.

        x: [T, N, I], [N, T, I] (batch_first) or unbatched [T, I]
        state: h0 [L*D, N, Hout] (RNN, GRU) or (h0, c0) with c0 [L*D, N, H] (LSTM); zeros if None
        lengths: [N] ints in [1, T], valid steps per sequence (pack_padded_sequence semantics)
        returns out [T, N, D*Hout] (layout of x; zero past each length) and h_n or (h_n, c_n)
        """
        x = as_float_array("x", x, self.dtype)
        if x.ndim not in (2, 3):
            raise ValueError(f"x: expected 3 dimensions (batched) or 2 (unbatched), got shape {shape_str(x.shape)}")
        unbatched = x.ndim == 2
        batch_first = self.batch_first and not unbatched
        if unbatched:
            x = x.reshape(x.shape[0], 1, x.shape[1])
        steps, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
        if x.shape[2] != self.input_size:
            expected = ("T", "I") if unbatched else (("N", "T") if batch_first else ("T", "N"))
            raise ValueError(f"x: expected shape {shape_str(expected + (self.input_size,))}, "
                             f"got {shape_str(x.shape if not unbatched else (x.shape[0], x.shape[2]))}")
        if steps < 1:
            raise ValueError("x: the sequence length must be at least 1, got 0")
        h_shape, c_shape = self._state_shapes(None if unbatched else batch)
        h0 = c0 = None
        if state is not None:
            if self._kind == "lstm":
                if not isinstance(state, (tuple, list)) or len(state) != 2:
                    raise TypeError(f"state: expected a tuple (h0, c0) for LSTM, got {type(state).__name__}")
                h0 = self._state_array("state[0] (h0)", state[0], h_shape)
                c0 = self._state_array("state[1] (c0)", state[1], c_shape)
            else:
                h0 = self._state_array("state (h0)", state, h_shape)
            if unbatched:
                h0 = h0.reshape(h0.shape[0], 1, -1)
                c0 = None if c0 is None else c0.reshape(c0.shape[0], 1, -1)
        lens = self._lengths(lengths, steps, batch, unbatched)
        seed = int(self._rng.integers(0, 2**63)) if self.training and self.dropout > 0 else 0
        # A training forward refills the previous one's cache in place (its buffers, tens of MiB per
        # layer for large ones, are then not mapped and faulted in afresh at every step), but only
        # when nothing but this layer can reach it: a backward running in another thread, or anyone
        # else holding the saved dict or the cache, shows in the reference counts, and then it is
        # left alone. `alone` is the count of an object only a local name holds, on this interpreter.
        # A forward that does not refill leaves the previous one to any backward until it is done.
        saved, reuse, refilling = None, None, False
        if self.training:
            self._refill_lock.acquire()
            refilling = True
            try:
                saved, self._saved = self._saved, None  # from here on, no new reader finds it
                mine = object()
                alone = sys.getrefcount(mine)
                if saved is not None and sys.getrefcount(saved) == alone:
                    reuse = saved["cache"]
                    if sys.getrefcount(reuse) != alone + 1:  # + the saved dict's entry
                        reuse = None
                if reuse is None:
                    self._saved, saved = saved, None
                    refilling = False
                    self._refill_lock.release()
            except BaseException:
                if refilling:
                    self._refill_lock.release()
                raise
        try:
            packs = self._kept_packs()  # before _weights() holds the arrays too
            y, h_n, c_n, cache = _core.network_forward(self._config, self._weights(self._params), x, lens, h0, c0,
                                                       batch_first, self.training, seed, reuse, packs)
            if self.training:
                self._saved = {"cache": cache, "x": x, "unbatched": unbatched, "out_shape": y.shape}
        except BaseException:
            if saved is not None and self._saved is None and (reuse is None or reuse.filled):
                self._saved = saved  # the failed call refilled nothing: backward still has the previous one
            raise
        finally:
            if refilling:
                self._refill_lock.release()
        del saved, reuse
        if unbatched:
            y = y.reshape(y.shape[0], y.shape[2])
            h_n = h_n.reshape(h_n.shape[0], h_n.shape[2])
            c_n = None if c_n is None else c_n.reshape(c_n.shape[0], c_n.shape[2])
        return y, ((h_n, c_n) if self._kind == "lstm" else h_n)

    def backward(self, dout: Any, dstate: Optional[Any] = None) -> Tuple[Array, State]:
        """Backpropagation through time for the most recent training-mode forward call.

        dout: gradient of ``out`` (same shape), or None if only the final state has one
        dstate: gradient of h_n, or (dh_n, dc_n) for LSTM (either may be None); None for zero
        returns (dx, dstate0): dx shaped like x, dstate0 shaped like the state
        Parameter gradients are added into ``grads``.
        """
        with self._refill_lock:  # a forward refilling the cache finishes first
            saved = self._saved
        if saved is None:
            raise ValueError("backward: no forward call in training mode to differentiate; "
                             "call the layer in train() mode first")
        unbatched = saved["unbatched"]
        out_shape = saved["out_shape"]
        shown_out = (out_shape[0], out_shape[2]) if unbatched else out_shape
        dy = None
        if dout is not None:
            dy = as_float_array("dout", dout, self.dtype)
            if dy.shape != shown_out:
                raise ValueError(f"dout: expected shape {shape_str(shown_out)} (the output's), got {shape_str(dy.shape)}")
            dy = dy.reshape(out_shape)
        batch = out_shape[0] if self.batch_first and not unbatched else out_shape[1]
        h_shape, c_shape = self._state_shapes(None if unbatched else batch)
        dh_n = dc_n = None
        if dstate is not None:
            if self._kind == "lstm":
                if not isinstance(dstate, (tuple, list)) or len(dstate) != 2:
                    raise TypeError(f"dstate: expected a tuple (dh_n, dc_n) for LSTM, got {type(dstate).__name__}")
                if dstate[0] is not None:
                    dh_n = self._state_array("dstate[0] (dh_n)", dstate[0], h_shape)
                if dstate[1] is not None:
                    dc_n = self._state_array("dstate[1] (dc_n)", dstate[1], c_shape)
            else:
                dh_n = self._state_array("dstate (dh_n)", dstate, h_shape)
        if unbatched:
            dh_n = None if dh_n is None else dh_n.reshape(dh_n.shape[0], 1, -1)
            dc_n = None if dc_n is None else dc_n.reshape(dc_n.shape[0], 1, -1)
        with self._backward_lock:
            dx, dh0, dc0 = _core.network_backward(saved["cache"], self._weights(self._params),
                                                  self._weights(self._grads), saved["x"], dy, dh_n, dc_n)
        if unbatched:
            dx = dx.reshape(dx.shape[0], dx.shape[2])
            dh0 = dh0.reshape(dh0.shape[0], dh0.shape[2])
            dc0 = None if dc0 is None else dc0.reshape(dc0.shape[0], dc0.shape[2])
        return dx, ((dh0, dc0) if self._kind == "lstm" else dh0)

    def config(self) -> Dict[str, Any]:
        cfg: Dict[str, Any] = {"type": type(self).__name__, "input_size": self.input_size,
                               "hidden_size": self.hidden_size}
        if not isinstance(self, _CellBase):
            cfg.update(num_layers=self.num_layers, batch_first=self.batch_first, dropout=self.dropout,
                       bidirectional=self.bidirectional)
        cfg["bias"] = self.bias
        if self._kind.startswith("rnn"):
            cfg["nonlinearity"] = self.nonlinearity
        if self._kind == "lstm" and not isinstance(self, _CellBase):
            cfg["proj_size"] = self.proj_size
        if self._kind == "gru":
            cfg["linear_before_reset"] = self.linear_before_reset
        # The variants (and reverse) appear only when set, so torch-form configs stay what they were.
        if self.reverse:
            cfg["reverse"] = True
        if self.activations is not None:
            cfg["activations"] = [list(s) for s in self.activations]
        if self.clip is not None:
            cfg["clip"] = self.clip
        if self.input_forget:
            cfg["input_forget"] = True
        if self.peepholes:
            cfg["peepholes"] = True
        cfg["dtype"] = self.dtype.name
        return cfg

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("reverse", False), ("proj_size", 0), ("activations", None),
                              ("clip", None), ("input_forget", False), ("peepholes", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s + f", dtype={self.dtype}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


_VARIANTS_DOC = """
    Variants (the ONNX operators' cells; None/False keep torch's):
    activations: None, or the functions f (gates){g}, as a sequence of {count} items shared by both
        directions or 2*{count} (direction-major); each item an ONNX name, case-insensitive ("Relu",
        "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid", "Elu",
        "Softsign", "Softplus"), or a tuple (name, alpha) / (name, alpha, beta); omitted parameters take
        gatecell._checks.ACTIVATION_DEFAULTS (LeakyRelu 0.01, ThresholdedRelu 1, ScaledTanh 1 1,
        HardSigmoid 0.2 0.5, Elu 1, Affine 1 0)
    clip: None or a positive float: every gate pre-activation is clipped to [-clip, clip] before its
        function{extra}
"""


def _check_nonlinearity(nonlinearity: Any, activations: Any) -> None:
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
    if nonlinearity != "tanh" and activations is not None:
        raise ValueError(f"nonlinearity: give either nonlinearity={nonlinearity!r} or activations, not both "
                         f"(activations={activations!r} already names the function)")


class RNN(_RecurrentBase):
    """Elman RNN, h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) (or relu), torch.nn.RNN's interface.
    """ + _VARIANTS_DOC.format(g="", count=1, extra="") + """
    With activations given, nonlinearity must stay "tanh" (the activation replaces it).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 dtype: Any = np.float32, seed: Optional[int] = None, activations: Any = None,
                 clip: Optional[float] = None, reverse: bool = False) -> None:
        _check_nonlinearity(nonlinearity, activations)
        self.nonlinearity = nonlinearity
        super().__init__("rnn_" + nonlinearity, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, True, dtype, seed, activations, clip, reverse=reverse)


_LSTM_EXTRA = """ (the cell state c is not clipped)
    input_forget: couples the gates, f = 1 - i (the forget-gate weights then receive zero gradients)
    peepholes: adds p_i * c_prev to i's, p_f * c_prev to f's and p_o * c to o's pre-activation, with
        parameters weight_peep_l{k}[_reverse] of shape (3*hidden_size,) ordered (p_i, p_f, p_o)
        (LSTMCell: weight_peep), initialised like the other weights"""


class LSTM(_RecurrentBase):
    """Long short-term memory (gates i, f, g, o), torch.nn.LSTM's interface, projection included.
    """ + _VARIANTS_DOC.format(g=", g (cell input), h (cell output)", count=3, extra=_LSTM_EXTRA)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 dtype: Any = np.float32, seed: Optional[int] = None, activations: Any = None,
                 clip: Optional[float] = None, input_forget: bool = False, peepholes: bool = False,
                 reverse: bool = False) -> None:
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, True, dtype, seed, activations, clip, input_forget, peepholes, reverse)


class GRU(_RecurrentBase):
    """Gated recurrent unit (gates r, z, n), torch.nn.GRU's interface.

    linear_before_reset=True is torch's and cuDNN's form, n = tanh(W_in x + b_in + r*(W_hn h + b_hn));
    False is the original form of Cho et al. (2014), n = tanh(W_in x + b_in + W_hn (r*h) + b_hn),
    which Keras (reset_after=False) and ONNX (linear_before_reset=0) use by default.
    """ + _VARIANTS_DOC.format(g=" and g (candidate n)", count=2, extra="")

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 linear_before_reset: bool = True, dtype: Any = np.float32, seed: Optional[int] = None,
                 activations: Any = None, clip: Optional[float] = None, reverse: bool = False) -> None:
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         0, linear_before_reset, dtype, seed, activations, clip, reverse=reverse)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.linear_before_reset else s + ", linear_before_reset=False"


class _CellBase(_RecurrentBase):
    """One time step; parameters are named like torch's cells (weight_ih, bias_hh, ...)."""

    def __init__(self, kind: str, input_size: int, hidden_size: int, bias: bool, linear_before_reset: bool,
                 dtype: Any, seed: Optional[int], activations: Any = None, clip: Any = None,
                 input_forget: bool = False, peepholes: bool = False) -> None:
        super().__init__(kind, input_size, hidden_size, 1, bias, False, 0.0, False, 0, linear_before_reset,
                         dtype, seed, activations, clip, input_forget, peepholes)
        # torch's cells drop the "_l0" suffix.
        self._params = {k[:-3]: v for k, v in self._params.items()}
        self._grads = {k[:-3]: v for k, v in self._grads.items()}
        self._entries = [tuple(None if n is None else n[:-3] for n in self._entries[0])]

    def forward(self, x: Any, hx: Optional[State] = None) -> State:  # type: ignore[override]
        """h' = cell(x, h) (LSTM: (h', c') = cell(x, (h, c))).

        x: [N, I] or unbatched [I]; hx: [N, H] / [H] (LSTM: a tuple of two), zeros if None
        """
        x = as_float_array("x", x, self.dtype)
        if x.ndim not in (1, 2):
            raise ValueError(f"x: expected shape (N, {self.input_size}) or ({self.input_size},), "
                             f"got {shape_str(x.shape)}")
        unbatched = x.ndim == 1
        xb = x.reshape(1, -1) if unbatched else x
        if xb.shape[1] != self.input_size:
            raise ValueError(f"x: expected shape {shape_str(('N', self.input_size) if not unbatched else (self.input_size,))}, "
                             f"got {shape_str(x.shape)}")
        batch = xb.shape[0]
        shape = (self.hidden_size,) if unbatched else (batch, self.hidden_size)
        state = None
        if hx is not None:
            if self._kind == "lstm":
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError(f"hx: expected a tuple (h, c) for LSTMCell, got {type(hx).__name__}")
                state = tuple(self._state_array(f"hx[{k}]", hx[k], shape).reshape(1, batch, -1) for k in range(2))
            else:
                state = self._state_array("hx", hx, shape).reshape(1, batch, -1)
        _, s = super().forward(xb.reshape(1, batch, -1), state)
        self._cell_unbatched = unbatched
        if self._kind == "lstm":
            return s[0].reshape(shape), s[1].reshape(shape)
        return s.reshape(shape)

    def backward(self, dh: Any, dstate: Optional[Any] = None) -> Tuple[Array, State]:  # type: ignore[override]
        """Gradient of the new state (LSTM: (dh', dc'), either may be None) -> (dx, dhx)."""
        if self._saved is None:
            raise ValueError("backward: no forward call in training mode to differentiate; "
                             "call the cell in train() mode first")
        if dstate is not None:
            raise TypeError("backward: a cell's output is its state; pass its gradient as the first argument")
        batch = self._saved["out_shape"][1]
        unbatched = self._cell_unbatched
        shape = (self.hidden_size,) if unbatched else (batch, self.hidden_size)
        if self._kind == "lstm":
            if not isinstance(dh, (tuple, list)) or len(dh) != 2:
                raise TypeError(f"dh: expected a tuple (dh, dc) for LSTMCell, got {type(dh).__name__}")
            ds = tuple(None if d is None else self._state_array(f"dh[{k}]", d, shape).reshape(1, batch, -1)
                       for k, d in enumerate(dh))
        else:
            ds = self._state_array("dh", dh, shape).reshape(1, batch, -1)
        dx, ds0 = super().backward(None, ds)
        dx = dx.reshape(-1) if unbatched else dx.reshape(batch, -1)
        if self._kind == "lstm":
            return dx, (ds0[0].reshape(shape), ds0[1].reshape(shape))
        return dx, ds0.reshape(shape)


class RNNCell(_CellBase):
    """One step of an Elman RNN, torch.nn.RNNCell's interface; activations and clip as in RNN."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 dtype: Any = np.float32, seed: Optional[int] = None, activations: Any = None,
                 clip: Optional[float] = None) -> None:
        _check_nonlinearity(nonlinearity, activations)
        self.nonlinearity = nonlinearity
        super().__init__("rnn_" + nonlinearity, input_size, hidden_size, bias, True, dtype, seed, activations, clip)


class LSTMCell(_CellBase):
    """One LSTM step, torch.nn.LSTMCell's interface: (h', c') = cell(x, (h, c)); variants as in LSTM."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype: Any = np.float32,
                 seed: Optional[int] = None, activations: Any = None, clip: Optional[float] = None,
                 input_forget: bool = False, peepholes: bool = False) -> None:
        super().__init__("lstm", input_size, hidden_size, bias, True, dtype, seed, activations, clip, input_forget,
                         peepholes)


class GRUCell(_CellBase):
    """One GRU step, torch.nn.GRUCell's interface; linear_before_reset, activations and clip as in GRU."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, linear_before_reset: bool = True,
                 dtype: Any = np.float32, seed: Optional[int] = None, activations: Any = None,
                 clip: Optional[float] = None) -> None:
        super().__init__("gru", input_size, hidden_size, bias, linear_before_reset, dtype, seed, activations, clip)


class Linear(Module):
    """y = x W^T + b on the last axis, torch.nn.Linear's interface (weight [out, in], bias [out])."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype: Any = np.float32,
                 seed: Optional[int] = None) -> None:
        super().__init__(dtype, seed)
        self.in_features = check_int("in_features", in_features, minimum=1, maximum=INT64_MAX)
        self.out_features = check_int("out_features", out_features, minimum=1, maximum=INT64_MAX)
        self.bias = check_bool("bias", bias)
        self._reserve(self.out_features * (self.in_features + self.bias))
        bound = 1.0 / math.sqrt(self.in_features)  # torch's default for Linear
        self._add_parameter("weight", (self.out_features, self.in_features), bound)
        if self.bias:
            self._add_parameter("bias", (self.out_features,), bound)
        self._saved_x: Optional[Array] = None

    def forward(self, x: Any) -> Array:
        """x: [..., in_features] -> [..., out_features]"""
        x = as_float_array("x", x, self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x: expected shape (..., {self.in_features}), got {shape_str(x.shape)}")
        y = x @ self._params["weight"].T
        if self.bias:
            y += self._params["bias"]
        if self.training:
            self._saved_x = x
        return y

    def backward(self, dout: Any) -> Array:
        """dout: [..., out_features] -> dx [..., in_features]; adds dW, db into grads."""
        if self._saved_x is None:
            raise ValueError("backward: no forward call in training mode to differentiate")
        x = self._saved_x
        dy = as_float_array("dout", dout, self.dtype)
        expected = x.shape[:-1] + (self.out_features,)
        if dy.shape != expected:
            raise ValueError(f"dout: expected shape {shape_str(expected)} (the output's), got {shape_str(dy.shape)}")
        dy2, x2 = dy.reshape(-1, self.out_features), x.reshape(-1, self.in_features)
        with self._backward_lock:
            self._grads["weight"] += dy2.T @ x2
            if self.bias:
                self._grads["bias"] += dy2.sum(axis=0)
        return dy @ self._params["weight"]

    def config(self) -> Dict[str, Any]:
        return {"type": "Linear", "in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias, "dtype": self.dtype.name}

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias}, dtype={self.dtype})"


MODULE_TYPES: Dict[str, type] = {c.__name__: c for c in (RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell, Linear)}


def module_from_config(config: Mapping[str, Any]) -> Module:
    """Builds the module a ``config()`` dict describes (parameters freshly initialised)."""
    if not isinstance(config, Mapping) or "type" not in config:
        raise ValueError(f"config: expected a mapping with a 'type' entry, got {config!r}")
    kwargs = dict(config)
    name = kwargs.pop("type")
    if name not in MODULE_TYPES:
        raise ValueError(f"config: unknown module type {name!r}; known: {sorted(MODULE_TYPES)}")
    return MODULE_TYPES[name](**kwargs)
