# SPDX-License-Identifier: MIT
"""Losses that return (value, gradient), with masks for padded sequences.

Both losses average over the positions a mask keeps (all positions without a mask), so a
padded batch gives the same loss as its sequences one by one would, weighted by length:

    mse:            L = sum_p m_p * sum_c (y_pc - t_pc)^2 / (C * sum_p m_p)            (M1)
    cross_entropy:  L = sum_p m_p * (logsumexp(z_p) - z_p[label_p]) / sum_p m_p       (M2)
                    dL/dz_p = m_p * (softmax(z_p) - onehot(label_p)) / sum_p m_p        (M3)

A position p is every index but the last axis of `pred`/`logits`: (T, N) for per-step targets,
(N,) for last-step targets.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from ._checks import shape_str, to_numpy

__all__ = ["mse", "cross_entropy", "length_mask"]


def length_mask(lengths: Any, steps: int, batch_first: bool = False, dtype: Any = np.float32) -> np.ndarray:
    """The 0/1 mask of valid steps for a padded batch.

    lengths: [N] valid steps per sequence
    steps: T, the padded length
    batch_first: mask shaped [N, T] instead of [T, N]
    """
    lengths = np.asarray(to_numpy(lengths))
    if lengths.ndim != 1 or lengths.dtype.kind not in "iu":
        raise ValueError(f"lengths: expected a 1-d array of ints, got shape {shape_str(lengths.shape)} "
                         f"and dtype {lengths.dtype}")
    mask = (np.arange(steps)[:, None] < lengths[None, :]).astype(dtype)
    return mask.T.copy() if batch_first else mask


def _float(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(to_numpy(value))
    if arr.dtype.kind != "f":
        raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {arr.dtype}")
    return arr


def _mask(mask: Any, positions: Tuple[int, ...], dtype: np.dtype) -> Optional[np.ndarray]:
    if mask is None:
        return None
    m = np.asarray(to_numpy(mask))
    if m.shape != positions:
        raise ValueError(f"mask: expected shape {shape_str(positions)} (every axis of the prediction but the "
                         f"last), got {shape_str(m.shape)}")
    m = m.astype(dtype)
    if not m.sum() > 0:
        raise ValueError("mask: keeps no position, so the mean loss is undefined")
    return m


def mse(pred: Any, target: Any, mask: Any = None) -> Tuple[float, np.ndarray]:
    """Mean squared error (M1) and its gradient with respect to `pred`.

    pred: [..., C] predictions (float32 or float64)
    target: same shape as pred
    mask: [...] (pred's shape without the last axis), 1 where a position counts, 0 where padded
    returns (loss, dpred) with dpred shaped and typed like pred
    """
    y = _float("pred", pred)
    t = np.asarray(to_numpy(target))
    if t.shape != y.shape:
        raise ValueError(f"target: expected shape {shape_str(y.shape)} (the prediction's), got {shape_str(t.shape)}")
    if y.ndim == 0:
        raise ValueError("pred: expected at least 1 dimension, got a scalar")
    diff = y - t.astype(y.dtype)
    m = _mask(mask, y.shape[:-1], y.dtype)
    if m is None:
        count = diff.size
    else:
        diff = diff * m[..., None]
        count = m.sum() * y.shape[-1]
    loss = float(np.sum(diff.astype(np.float64) ** 2) / count)
    return loss, (diff * (2.0 / count)).astype(y.dtype)


def cross_entropy(logits: Any, labels: Any, mask: Any = None) -> Tuple[float, np.ndarray]:
    """Softmax cross-entropy (M2) and its gradient (M3) with respect to `logits`.

    logits: [..., K] unnormalised class scores
    labels: [...] integer classes in [0, K)
    mask: [...] 1 where a position counts, 0 where padded (labels there are ignored)
    returns (loss, dlogits) with dlogits shaped and typed like logits
    """
    z = _float("logits", logits)
    if z.ndim == 0:
        raise ValueError("logits: expected at least 1 dimension, got a scalar")
    lab = np.asarray(to_numpy(labels))
    if lab.shape != z.shape[:-1]:
        raise ValueError(f"labels: expected shape {shape_str(z.shape[:-1])} (the logits' without the class axis), "
                         f"got {shape_str(lab.shape)}")
    if lab.dtype.kind not in "iu":
        raise TypeError(f"labels: expected integer classes, got dtype {lab.dtype}")
    m = _mask(mask, z.shape[:-1], z.dtype)
    k = z.shape[-1]
    valid = lab if m is None else np.where(m > 0, lab, 0)
    if valid.size and (valid.min() < 0 or valid.max() >= k):
        raise ValueError(f"labels: expected classes in [0, {k}), got values from {valid.min()} to {valid.max()}")
    shifted = z - z.max(axis=-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    idx = valid[..., None].astype(np.int64)
    nll = -np.take_along_axis(log_p, idx, axis=-1)[..., 0]
    grad = np.exp(log_p)
    np.put_along_axis(grad, idx, np.take_along_axis(grad, idx, axis=-1) - 1, axis=-1)  # (M3)
    if m is None:
        count = float(nll.size)
    else:
        nll = nll * m
        grad *= m[..., None]
        count = float(m.sum())
    return float(np.sum(nll, dtype=np.float64) / count), (grad / count).astype(z.dtype)
