# SPDX-License-Identifier: MIT
"""Comparison helpers for the test suites."""

import numpy as np

TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}


def rel_err(actual, expected) -> float:
    """max |a - e| relative to the magnitude of e (at least 1)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    if actual.size == 0:
        return 0.0
    assert np.all(np.isfinite(actual)), "non-finite values"
    return float(np.max(np.abs(actual - expected)) / max(1.0, float(np.max(np.abs(expected)))))


def assert_close(name, actual, expected, dtype, errors=None):
    err = rel_err(actual, expected)
    if errors is not None:
        errors.append(err)
    assert err <= TOL[np.dtype(dtype)], f"{name}: relative error {err:.3e} > {TOL[np.dtype(dtype)]:.0e}"
    return err


def central_difference(loss, arr, index, eps=1e-6):
    """(loss(arr[index] + eps) - loss(arr[index] - eps)) / (2 eps), perturbing arr in place and restoring it."""
    old = arr[index]
    arr[index] = old + eps
    up = loss()
    arr[index] = old - eps
    down = loss()
    arr[index] = old
    return (up - down) / (2 * eps)
