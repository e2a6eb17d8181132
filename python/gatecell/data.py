# SPDX-License-Identifier: MIT
"""Data helpers: pad variable-length sequences into (x, lengths), shuffled mini-batches, train/validation split.

Datasets are tuples of arrays that share their first axis (one row per sample), e.g. (x, y) or
(x, y, lengths) with x [N, T, I]; a batch is the same tuple restricted to some rows.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence, Tuple

import numpy as np

from ._checks import check_bool, check_float, check_int, shape_str, to_numpy

__all__ = ["pad_sequences", "minibatches", "train_val_split", "check_dataset"]

Dataset = Tuple[np.ndarray, ...]


def pad_sequences(sequences: Sequence[Any], batch_first: bool = False, padding_value: float = 0,
                  dtype: Any = None) -> Tuple[np.ndarray, np.ndarray]:
    """Stacks sequences of different lengths into one zero-padded array and their lengths.

    sequences: N arrays [T_n, ...] (or lists) with the same trailing shape
    batch_first: return x as [N, T_max, ...] instead of [T_max, N, ...]
    padding_value: the value past each sequence's end
    dtype: the dtype of x (default: the sequences' common dtype)
    returns (x, lengths) with lengths an int64 array [N], ready for ``layer(x, lengths=lengths)``
    """
    if isinstance(sequences, np.ndarray) or not isinstance(sequences, Sequence) or not sequences:
        raise ValueError("sequences: expected a non-empty list of arrays")
    arrays = [np.asarray(to_numpy(s)) for s in sequences]
    for k, a in enumerate(arrays):
        if a.ndim == 0 or a.shape[0] == 0:
            raise ValueError(f"sequences[{k}]: expected at least one step, got shape {shape_str(a.shape)}")
        if a.shape[1:] != arrays[0].shape[1:]:
            raise ValueError(f"sequences[{k}]: expected trailing shape {shape_str(arrays[0].shape[1:])} "
                             f"(that of sequences[0]), got {shape_str(a.shape[1:])}")
    lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    dtype = np.result_type(*arrays) if dtype is None else np.dtype(dtype)
    x = np.full((len(arrays), int(lengths.max())) + arrays[0].shape[1:], padding_value, dtype=dtype)
    for n, a in enumerate(arrays):
        x[n, :a.shape[0]] = a
    if not check_bool("batch_first", batch_first):
        x = np.ascontiguousarray(np.swapaxes(x, 0, 1))
    return x, lengths


def check_dataset(name: str, data: Any) -> Dataset:
    """A tuple of arrays sharing their first axis (the sample axis)."""
    if not isinstance(data, (tuple, list)) or not data:
        raise TypeError(f"{name}: expected a tuple of arrays such as (x, y), got {type(data).__name__}")
    arrays = tuple(np.asarray(to_numpy(a)) for a in data)
    n = arrays[0].shape[0] if arrays[0].ndim else -1
    for k, a in enumerate(arrays):
        if a.ndim == 0 or a.shape[0] != n:
            raise ValueError(f"{name}[{k}]: expected {n} samples on the first axis (as {name}[0]), "
                             f"got shape {shape_str(a.shape)}")
    return arrays


def minibatches(data: Any, batch_size: int, shuffle: bool = True, rng: Any = None,
                drop_last: bool = False) -> Iterator[Dataset]:
    """One pass over a dataset in mini-batches.

    data: tuple of arrays sharing their first axis
    batch_size: samples per batch (the last batch may be smaller unless drop_last)
    shuffle: visit the samples in a random order; rng: a numpy Generator or a seed
    drop_last: skip a final incomplete batch
    """
    arrays = check_dataset("data", data)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    n = arrays[0].shape[0]
    order = np.random.default_rng(rng).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        rows = order[start:start + batch_size]
        yield tuple(a[rows] for a in arrays)


def train_val_split(data: Any, val_fraction: float = 0.1, seed: Optional[int] = 0,
                    shuffle: bool = True) -> Tuple[Dataset, Dataset]:
    """Splits a dataset into training and validation parts.

    data: tuple of arrays sharing their first axis
    val_fraction: share of samples for validation (at least one sample each side)
    seed: seeds the shuffle; shuffle: False keeps the last samples for validation
    returns (train, val), each a tuple like data
    """
    arrays = check_dataset("data", data)
    frac = check_float("val_fraction", val_fraction, 0.0, 1.0)
    n = arrays[0].shape[0]
    n_val = int(round(n * frac))
    if n < 2 or not 1 <= n_val <= n - 1:
        raise ValueError(f"val_fraction: {frac} of {n} samples leaves an empty side; expected at least one "
                         "sample for training and one for validation")
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    train_rows, val_rows = np.sort(order[:n - n_val]), np.sort(order[n - n_val:])
    return tuple(a[train_rows] for a in arrays), tuple(a[val_rows] for a in arrays)
