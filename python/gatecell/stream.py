# SPDX-License-Identifier: MIT
"""Streaming inference from Python over the C++ stream: one time step per call, state kept."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from . import _core

__all__ = ["Stream"]


class Stream:
    """Feeds a unidirectional model one time step at a time, keeping every layer's state.

    ``Stream(model, batch=1)``: model is a gatecell module (layer, cell, Linear or Sequential)
    or the path of a checkpoint written by ``gatecell.save`` (read by the C++ reader); the weights
    are copied, so later changes to the module do not affect the stream.

    ``y = s.step(x)``: x [batch, I] (or [I] when batch is 1) of the model's dtype -> y [batch, O];
    ``s.step(x, out=y)`` writes into an existing array. ``reset()``, ``get_state()`` and
    ``set_state(state)`` handle the flat state: per recurrent module, h [L, N, Hout] then, for
    LSTM, c [L, N, H].
    """

    def __init__(self, model: Any, batch: int = 1) -> None:
        if isinstance(model, (str, os.PathLike)):
            self.model = _core.load_model(os.fspath(model))
        elif hasattr(model, "config") and hasattr(model, "state_dict"):
            state = {k: np.asarray(v) for k, v in model.state_dict().items()}
            dtypes = {v.dtype for v in state.values()}
            dtype = dtypes.pop() if len(dtypes) == 1 else np.dtype(model.config().get("dtype", "float32"))
            cls = _core.ModelF64 if dtype == np.float64 else _core.ModelF32
            self.model = cls(json.dumps(model.config()), state)
        else:
            raise TypeError(f"model: expected a gatecell module or a checkpoint path, got {type(model).__name__}")
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ValueError(f"batch: expected an integer >= 1, got {batch!r}")
        self._impl = self.model.stream(int(batch))
        self.dtype = np.dtype(np.float64) if isinstance(self._impl, _core.StreamF64) else np.dtype(np.float32)
        # The bound C++ method itself: a step costs one pybind11 call, no Python frame.
        self.step = self._impl.step
        self.reset = self._impl.reset
        self.get_state = self._impl.get_state
        self.set_state = self._impl.set_state

    @property
    def batch(self) -> int:
        return self._impl.batch

    @property
    def input_size(self) -> int:
        return self._impl.input_size

    @property
    def output_size(self) -> int:
        return self._impl.output_size

    @property
    def state_size(self) -> int:
        return self._impl.state_size

    def __repr__(self) -> str:
        return (f"Stream(batch={self.batch}, input_size={self.input_size}, output_size={self.output_size}, "
                f"dtype={self.dtype})")
