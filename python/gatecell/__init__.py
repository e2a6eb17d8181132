# SPDX-License-Identifier: MIT
"""gatecell: vanilla RNN, LSTM and GRU, forward and backward, in a small fast C++ core.

>>> import numpy as np, gatecell as gc
>>> lstm = gc.LSTM(8, 16, num_layers=2, seed=0)
>>> out, (h_n, c_n) = lstm(np.zeros((5, 3, 8), np.float32))
>>> out.shape, h_n.shape
((5, 3, 16), (2, 3, 16))
"""

from ._version import __version__
from .checkpoint import load, save
from .layers import GRU, LSTM, RNN, GRUCell, Linear, LSTMCell, Module, RNNCell, module_from_config
from .stream import Stream

__all__ = ["__version__", "Module", "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "Linear",
           "module_from_config", "save", "load", "Stream"]
