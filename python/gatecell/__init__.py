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
from . import convert, onnx
from .checkpoint import load, save
from .layers import GRU, LSTM, RNN, GRUCell, Linear, LSTMCell, Module, RNNCell, module_from_config
from .models import Dropout, Embedding, LastStep, Sequential
from .interop import from_torch
from .onnx import from_onnx
from .stream import Stream
from .training import Trainer, fit
from . import data, introspect, losses, optim

__all__ = ["__version__", "set_num_threads", "get_num_threads", "simd_path", "Module", "RNN", "LSTM", "GRU", "RNNCell",
           "LSTMCell", "GRUCell", "Linear", "module_from_config", "Embedding", "Dropout", "LastStep", "Sequential", "data", "losses", "optim",
           "introspect", "from_torch", "Trainer", "fit", "convert", "onnx", "from_onnx",
           "save", "load", "Stream"]


def set_num_threads(n: int) -> None:
    """Sets how many threads gatecell's kernels use; outputs and gradients are bitwise the same for any n.

    n: number of threads, >= 1
    """
    _core.set_num_threads(check_int("n", n, minimum=1))


def get_num_threads() -> int:
    """The number of threads gatecell's kernels use."""
    return _core.get_num_threads()


def simd_path() -> str:
    """The float32 kernels this process runs, chosen once from the CPU.

    "avx512" (16-float GEMM tiles), "avx2" (AVX2 + FMA) or "portable" (any CPU). The two vector
    paths give bitwise the same results; the portable one agrees to rounding. Setting
    GATECELL_NO_AVX512=1 in the environment before the first call stops at "avx2", and
    GATECELL_PORTABLE=1 at "portable".
    """
    return _core.simd_path()
