# SPDX-License-Identifier: MIT
"""Types of the extension module gatecell._core (the C++ core); use the gatecell layers instead."""

from typing import Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

Array = npt.NDArray[np.floating]
# (w_ih, w_hh, b_ih, b_hh, w_hr) of one (layer, direction), in torch's shapes; None where absent
WeightEntry = Tuple[Array, Array, Optional[Array], Optional[Array], Optional[Array]]

class CellKind:
    rnn_tanh: "CellKind"
    rnn_relu: "CellKind"
    lstm: "CellKind"
    gru: "CellKind"
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

class NetworkConfig:
    kind: CellKind
    input_size: int
    hidden_size: int
    proj_size: int
    num_layers: int
    bidirectional: bool
    bias: bool
    linear_before_reset: bool
    dropout: float
    def __init__(self) -> None: ...
    def validate(self) -> None: ...

class NetworkCacheF32:
    @property
    def filled(self) -> bool: ...
    @property
    def nbytes(self) -> int: ...

class NetworkCacheF64:
    @property
    def filled(self) -> bool: ...
    @property
    def nbytes(self) -> int: ...

NetworkCache = Union[NetworkCacheF32, NetworkCacheF64]

def network_forward(
    config: NetworkConfig,
    weights: Sequence[WeightEntry],
    x: Array,
    lengths: Optional[npt.NDArray[np.int64]] = None,
    h0: Optional[Array] = None,
    c0: Optional[Array] = None,
    batch_first: bool = False,
    training: bool = False,
    seed: int = 0,
) -> Tuple[Array, Array, Optional[Array], Optional[NetworkCache]]: ...
def network_backward(
    cache: NetworkCache,
    weights: Sequence[WeightEntry],
    grads: Sequence[WeightEntry],
    x: Array,
    dout: Optional[Array] = None,
    dh_n: Optional[Array] = None,
    dc_n: Optional[Array] = None,
) -> Tuple[Array, Array, Optional[Array]]: ...

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
