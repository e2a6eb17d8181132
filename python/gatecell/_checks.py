# SPDX-License-Identifier: MIT
"""Argument checks shared by the layers: every error names the argument, the expected and the received value."""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import numpy as np

__all__ = ["INT64_MAX", "as_dtype", "check_int", "check_bool", "check_float", "as_float_array", "to_numpy", "shape_str",
           "ACTIVATION_DEFAULTS", "check_activations", "check_clip"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def shape_str(shape: Sequence[Any]) -> str:
    """Formats a shape the way NumPy prints it: (3,), (2, 4)."""
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def as_dtype(dtype: Any) -> np.dtype:
    """The layer dtype: float32 or float64, given as a NumPy type, dtype or name."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from exc
    if dt not in _FLOAT_DTYPES:
        raise TypeError(f"dtype: expected float32 or float64, got {dt}")
    return dt


INT64_MAX = 2**63 - 1  # sizes cross into C++ as int64


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (not bool, not float) in [`minimum`, `maximum`]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: expected an int <= {maximum}, got {value}")
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


def check_float(name: str, value: Any, low: float, high: float) -> float:
    """A real number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a float, got {type(value).__name__}")
    value = float(value)
    if not low <= value <= high:
        raise ValueError(f"{name}: expected a value in [{low}, {high}], got {value}")
    return value


def to_numpy(value: Any) -> Any:
    """A torch tensor becomes a NumPy array (no torch import needed); anything else is returned as is."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value


def as_float_array(name: str, value: Any, dtype: np.dtype) -> np.ndarray:
    """`value` as a C-contiguous array of `dtype`, without a copy when it already is one.

    A NumPy array (or torch tensor) of another dtype is refused with TypeError rather than
    converted silently, as torch does; nested lists and Python numbers are converted.
    """
    value = to_numpy(value)
    if isinstance(value, np.ndarray):
        if value.dtype != dtype:
            raise TypeError(f"{name}: expected dtype {dtype}, got {value.dtype}")
        return np.ascontiguousarray(value)
    if value is None:
        raise TypeError(f"{name}: expected an array, got None")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name}: expected an array of numbers, got {type(value).__name__}") from exc
    if arr.dtype.kind not in "iuf" or arr.dtype.kind == "b":
        raise TypeError(f"{name}: expected an array of numbers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


# The ONNX activation functions (Operators.md spelling) and their default (alpha, beta): those of
# the ONNX operators of the same name (LeakyRelu, ThresholdedRelu, HardSigmoid, Elu) and, for the
# retired Affine and ScaledTanh, the identity's parameters; unused parameters are 0.
ACTIVATION_DEFAULTS = {
    "Relu": (0.0, 0.0), "Tanh": (0.0, 0.0), "Sigmoid": (0.0, 0.0), "Affine": (1.0, 0.0),
    "LeakyRelu": (0.01, 0.0), "ThresholdedRelu": (1.0, 0.0), "ScaledTanh": (1.0, 1.0),
    "HardSigmoid": (0.2, 0.5), "Elu": (1.0, 0.0), "Softsign": (0.0, 0.0), "Softplus": (0.0, 0.0),
}
_ACTIVATION_NAMES = {name.lower(): name for name in ACTIVATION_DEFAULTS}


def _activation_spec(name: str, item: Any) -> list:
    """One activation item (a name, or a tuple (name, alpha) / (name, alpha, beta)) as [Name, alpha, beta]."""
    parts = list(item) if isinstance(item, (tuple, list)) else [item]
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"{name}: expected a name or a tuple (name, alpha[, beta]), got {item!r}")
    fn = parts[0]
    if isinstance(fn, bytes):
        fn = fn.decode()
    if not isinstance(fn, str):
        raise TypeError(f"{name}: expected an activation name (str), got {type(fn).__name__}")
    if fn.lower() not in _ACTIVATION_NAMES:
        raise ValueError(f"{name}: expected one of {list(ACTIVATION_DEFAULTS)} (any case), got {fn!r}")
    fn = _ACTIVATION_NAMES[fn.lower()]
    values = list(ACTIVATION_DEFAULTS[fn])
    for k, v in enumerate(parts[1:]):
        what = ("alpha", "beta")[k]
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{name}: {what} of {fn}: expected a float, got {type(v).__name__}")
        if not np.isfinite(float(v)):
            raise ValueError(f"{name}: {what} of {fn}: expected a finite float, got {v}")
        values[k] = float(v)
    return [fn, values[0], values[1]]


def check_activations(name: str, value: Any, count: int, directions: int) -> list | None:
    """None, or `count` activation items (shared by every direction) or directions*count (direction-major),
    as the normalised list of [Name, alpha, beta] of length directions*count."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name}: expected a sequence of {count} or {directions * count} activation names, "
                        f"got {type(value).__name__}")
    items = list(value)
    if len(items) not in (count, directions * count):
        raise ValueError(f"{name}: expected {count}" + (f" or {directions * count}" if directions > 1 else "")
                         + f" functions, got {len(items)}")
    specs = [_activation_spec(f"{name}[{k}]", item) for k, item in enumerate(items)]
    if len(specs) == count:
        specs = [list(s) for s in specs * directions]
    return specs


def check_clip(name: str, value: Any) -> float | None:
    """None (no clip) or a positive, finite float."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a positive float or None, got {type(value).__name__}")
    value = float(value)
    if not (value > 0 and np.isfinite(value)):
        raise ValueError(f"{name}: expected a positive, finite float or None, got {value}")
    return value
