# SPDX-License-Identifier: MIT
"""gatecell: vanilla RNN, LSTM and GRU, forward and backward, in a small fast C++ core.

>>> import numpy as np, gatecell as gc
>>> lstm = gc.LSTM(8, 16, num_layers=2, seed=0)
>>> out, (h_n, c_n) = lstm(np.zeros((5, 3, 8), np.float32))
>>> out.shape, h_n.shape
((5, 3, 16), (2, 3, 16))
"""

from . import _core
from ._checks import check_int
from ._version import __version__
from .layers import GRU, LSTM, RNN, GRUCell, Linear, LSTMCell, Module, RNNCell, module_from_config

__all__ = ["__version__", "set_num_threads", "get_num_threads", "Module", "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "Linear",
           "module_from_config"]


def set_num_threads(n: int) -> None:
    """Sets how many threads gatecell's kernels use; outputs and gradients are bitwise the same for any n.

    n: number of threads, >= 1
    """
    _core.set_num_threads(check_int("n", n, minimum=1))


def get_num_threads() -> int:
    """The number of threads gatecell's kernels use."""
    return _core.get_num_threads()
