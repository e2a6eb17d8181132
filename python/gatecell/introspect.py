# SPDX-License-Identifier: MIT
"""Introspection: per-step gate activations and cell states of a recurrent layer, and after backward
the per-step gradients dL/dh_t and dL/dc_t (and their norms), read from the layer's own cache.

    probe = Probe(model["rnn"])        # any RNN / LSTM / GRU layer, also inside a Sequential
    out = model(x, lengths=lengths)    # a forward call in training mode
    probe.record_grads()               # the next backward also stores dL/dh_t, dL/dc_t
    model.backward(dout)
    probe.gates()["f"]                 # LSTM forget gate, [T, N, H]
    probe.grad_norms()["dh"]           # [T] mean over the batch of ||dL/dh_t||

Every array is time-major [T, N, C] whatever the layer's layout. dL/dh_t is the gradient of the
layer's output h_t at step t, everything after it included (its own output gradient and what flows
back through later steps); dL/dc_t likewise for the LSTM cell state. Steps past a sequence's end
hold zeros.
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

from .layers import _RecurrentBase

__all__ = ["Probe", "GATE_NAMES", "run", "step_norms"]

GATE_NAMES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), "rnn_tanh": ("h",), "rnn_relu": ("h",)}


def step_norms(grad: np.ndarray) -> np.ndarray:
    """Per step, the batch mean of the vectors' L2 norms: [T, N, C] -> [T].

    Computed in float64: a vanishing float32 gradient of 1e-24 would square to 0 in float32.
    """
    return np.linalg.norm(grad.astype(np.float64), axis=-1).mean(axis=1)


class Probe:
    """Reads one recurrent layer's saved activations and recorded gradients.

    layer: a gatecell RNN, LSTM or GRU (or cell) that has run forward in training mode
    """

    def __init__(self, layer: Any) -> None:
        if not isinstance(layer, _RecurrentBase):
            raise TypeError(f"layer: expected a gatecell RNN, LSTM or GRU, got {type(layer).__name__}")
        self.layer = layer

    def _saved(self) -> Dict[str, Any]:
        saved = self.layer._saved
        if saved is None:
            raise ValueError("layer: no forward call in training mode to inspect; call it in train() mode first")
        return saved

    def _arrays(self, layer: int, direction: int) -> Dict[str, np.ndarray]:
        saved = self._saved()
        x = saved["x"]
        batch_first = self.layer.batch_first and not saved["unbatched"]
        steps, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
        out = {}
        for key, rows in saved["cache"].layer_arrays(layer, direction).items():
            a = rows.reshape((batch, steps, -1) if batch_first else (steps, batch, -1))
            out[key] = np.ascontiguousarray(a.transpose(1, 0, 2)) if batch_first else a
        return out

    def record_grads(self) -> None:
        """Makes the next backward of the most recent forward call also store dL/dh_t and dL/dc_t."""
        self._saved()["cache"].record_grads = True

    def gates(self, layer: int = 0, direction: int = 0) -> Dict[str, np.ndarray]:
        """Activated gates per step, [T, N, H] each: "i", "f", "g", "o" (LSTM), "r", "z", "n" (GRU), "h" (RNN)."""
        g = self._arrays(layer, direction)["gates"]
        names = GATE_NAMES[self.layer._kind]
        h = self.layer.hidden_size
        return {name: g[..., k * h:(k + 1) * h] for k, name in enumerate(names)}

    def cell_states(self, layer: int = 0, direction: int = 0) -> np.ndarray:
        """The LSTM cell state c_t leaving every step, [T, N, H]."""
        if self.layer._kind != "lstm":
            raise ValueError(f"layer: only an LSTM has a cell state, got {type(self.layer).__name__}")
        return self._arrays(layer, direction)["c"]

    def hidden_states(self, layer: int = 0, direction: int = 0) -> np.ndarray:
        """The state h_{t-1} entering every step, [T, N, Hout]."""
        return self._arrays(layer, direction)["h_prev"]

    def _grad(self, key: str, layer: int, direction: int) -> np.ndarray:
        arrays = self._arrays(layer, direction)
        if key not in arrays:
            raise ValueError("no recorded gradients: call record_grads() after the forward call and before backward")
        return arrays[key]

    def dh(self, layer: int = 0, direction: int = 0) -> np.ndarray:
        """dL/dh_t for every step, [T, N, Hout] (needs record_grads() before backward)."""
        return self._grad("dh", layer, direction)

    def dc(self, layer: int = 0, direction: int = 0) -> np.ndarray:
        """dL/dc_t for every step, [T, N, H] (LSTM; needs record_grads() before backward)."""
        if self.layer._kind != "lstm":
            raise ValueError(f"layer: only an LSTM has a cell state, got {type(self.layer).__name__}")
        return self._grad("dc", layer, direction)

    def grad_norms(self, layer: int = 0, direction: int = 0) -> Dict[str, np.ndarray]:
        """Per step t, the batch mean of ||dL/dh_t|| (and ||dL/dc_t|| for LSTM), each [T]."""
        norms = {"dh": step_norms(self.dh(layer, direction))}
        if self.layer._kind == "lstm":
            norms["dc"] = step_norms(self.dc(layer, direction))
        return norms


def run(layer: Any, x: Any, dout: Any = None, lengths: Any = None, state: Any = None,
        dstate: Any = None) -> Dict[str, Any]:
    """Runs a layer forward (training mode) and, if dout or dstate is given, backward, returning what happened.

    layer: a gatecell RNN, LSTM or GRU
    x, lengths, state: as for ``layer(x, state, lengths)``
    dout, dstate: as for ``layer.backward``; both None skips backward
    returns {"out", "state", "gates": [per (layer, direction)] dicts, "c": [...] (LSTM), and after backward
    "dx", "dstate0", "dh": [...], "dc": [...] (LSTM), "dh_norm"/"dc_norm": [...] [T] batch means}
    """
    probe = Probe(layer)
    was_training = layer.training
    layer.train()
    try:
        out, final = layer(x, state, lengths)
    finally:
        layer.train(was_training)
    ids = [(l, d) for l in range(layer.num_layers) for d in range(layer.num_directions)]
    result: Dict[str, Any] = {"out": out, "state": final, "gates": [probe.gates(l, d) for l, d in ids]}
    lstm = layer._kind == "lstm"
    if lstm:
        result["c"] = [probe.cell_states(l, d) for l, d in ids]
    if dout is not None or dstate is not None:
        probe.record_grads()
        result["dx"], result["dstate0"] = layer.backward(dout, dstate)
        result["dh"] = [probe.dh(l, d) for l, d in ids]
        result["dh_norm"] = [step_norms(a) for a in result["dh"]]
        if lstm:
            result["dc"] = [probe.dc(l, d) for l, d in ids]
            result["dc_norm"] = [step_norms(a) for a in result["dc"]]
    return result
