# SPDX-License-Identifier: MIT
"""Types of the extension module gatecell._core (the C++ core); use the gatecell layers instead."""

from typing import Dict, Optional, Sequence, Tuple, Union

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
    reverse: bool
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
    record_grads: bool
    def layer_arrays(self, layer: int, direction: int = 0) -> Dict[str, Array]: ...

class NetworkCacheF64(NetworkCacheF32): ...

NetworkCache = Union[NetworkCacheF32, NetworkCacheF64]

class WeightPacksF32:
    """Packed weights kept between network_forward calls (see its `packs`)."""
    def __init__(self) -> None: ...
    def clear(self) -> None: ...
    @property
    def size(self) -> int: ...
    @property
    def made(self) -> int: ...

class WeightPacksF64(WeightPacksF32): ...

WeightPacks = Union[WeightPacksF32, WeightPacksF64]

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
    cache: Optional[NetworkCache] = None,
    packs: Optional[WeightPacks] = None,
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

class StreamF32:
    """One time step at a time through a unidirectional model, keeping the state (float32)."""
    def step(self, x: Array, out: Optional[Array] = None) -> Array: ...
    def reset(self) -> None: ...
    def get_state(self) -> Array: ...
    def set_state(self, state: Array) -> None: ...
    @property
    def batch(self) -> int: ...
    @property
    def input_size(self) -> int: ...
    @property
    def output_size(self) -> int: ...
    @property
    def state_size(self) -> int: ...

class StreamF64(StreamF32): ...

class ModelF32:
    """A model rebuilt by the C++ reader from its JSON description and its tensors (inference)."""
    def __init__(self, config_json: str, tensors: Dict[str, Array]) -> None: ...
    @property
    def input_size(self) -> int: ...
    @property
    def output_size(self) -> int: ...
    @property
    def reduces_steps(self) -> bool: ...
    def stream(self, batch: int = 1) -> StreamF32: ...
    def forward(self, x: Array, lengths: Optional[npt.NDArray[np.int64]] = None) -> Array: ...

class ModelF64(ModelF32):
    def stream(self, batch: int = 1) -> StreamF64: ...

def load_model(path: str) -> Union[ModelF32, ModelF64]: ...

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def simd_path() -> str: ...
def _time_gemm(a: np.ndarray, b: np.ndarray, repeats: int) -> Tuple[float, np.ndarray]: ...
