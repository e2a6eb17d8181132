# SPDX-License-Identifier: MIT
"""Argument checks shared by the layers: every error names the argument, the expected and the received value."""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import numpy as np

__all__ = ["INT64_MAX", "as_dtype", "check_int", "check_bool", "check_float", "as_float_array", "to_numpy", "shape_str"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def shape_str(shape: Sequence[Any]) -> str:
    """Formats a shape the way NumPy prints it: (3,), (2, 4)."""
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def as_dtype(dtype: Any) -> np.dtype:
    """The layer dtype: float32 or float64, given as a NumPy type, dtype or name."""
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError, SyntaxError) as exc:  # np.dtype(",") parses the string: SyntaxError
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
