# SPDX-License-Identifier: MIT
"""Outputs and every gradient are bitwise identical at 1, 2 and 4 threads."""

import numpy as np
import pytest

import gatecell as gc

# Sizes on both sides of the kernels' thresholds for going parallel and for the batch-1 path.
CASES = [
    ("LSTM", dict(), 7, 1, 5, 9),
    ("LSTM", dict(), 6, 40, 33, 130),
    ("LSTM", dict(num_layers=2, bidirectional=True), 5, 17, 24, 70),
    ("LSTM", dict(proj_size=19, batch_first=True), 6, 36, 12, 120),
    ("GRU", dict(), 9, 1, 11, 64),
    ("GRU", dict(bidirectional=True), 5, 48, 20, 100),
    ("GRU", dict(linear_before_reset=False, num_layers=2), 5, 33, 16, 128),
    ("RNN", dict(), 8, 64, 40, 257),
    ("RNN", dict(nonlinearity="relu", bidirectional=True, batch_first=True), 6, 3, 9, 31),
    # Small weights: a thread may carry a single batch row (row_team).
    ("LSTM", dict(), 9, 2, 6, 20),
    ("LSTM", dict(proj_size=5), 6, 3, 8, 16),
    ("GRU", dict(linear_before_reset=False), 7, 3, 5, 24),
    ("GRU", dict(num_layers=2), 5, 5, 4, 40),
    ("RNN", dict(nonlinearity="relu"), 8, 5, 7, 33),
]


def run_once(kind, kwargs, T, N, I, H, dtype, threads, lengths):
    gc.set_num_threads(threads)
    m = getattr(gc, kind)(I, H, dtype=dtype, seed=3, **kwargs)
    rng = np.random.default_rng(5)
    batch_first = kwargs.get("batch_first", False)
    x = rng.standard_normal((N, T, I) if batch_first else (T, N, I)).astype(dtype)
    out, state = m(x, lengths=lengths)
    dx, dstate = m.backward(rng.standard_normal(out.shape).astype(dtype))
    flat = lambda s: list(s) if isinstance(s, tuple) else [s]  # noqa: E731
    return [out, *flat(state), dx, *flat(dstate), *m.grads.values()]


def assert_identical_across_threads(once, kind, kwargs, T, N, I, H, dtype, seed):
    """Runs once(...) at 1, 2 and 4 threads and compares every array it returns bitwise."""
    before = gc.get_num_threads()
    try:
        lengths = None if N < 3 else np.random.default_rng(seed).integers(1, T + 1, size=N)
        runs = {n: once(kind, kwargs, T, N, I, H, dtype, n, lengths) for n in (1, 2, 4)}
    finally:
        gc.set_num_threads(before)
    for n in (2, 4):
        for k, (a, b) in enumerate(zip(runs[1], runs[n])):
            assert a.tobytes() == b.tobytes(), f"array {k} differs between 1 and {n} threads"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind,kwargs,T,N,I,H", CASES)
def test_bitwise_identical_across_thread_counts(kind, kwargs, T, N, I, H, dtype):
    assert_identical_across_threads(run_once, kind, kwargs, T, N, I, H, dtype, seed=N)


def infer_once(kind, kwargs, T, N, I, H, dtype, threads, lengths):
    gc.set_num_threads(threads)
    m = getattr(gc, kind)(I, H, dtype=dtype, seed=3, **kwargs).eval()
    rng = np.random.default_rng(6)
    batch_first = kwargs.get("batch_first", False)
    x = rng.standard_normal((N, T, I) if batch_first else (T, N, I)).astype(dtype)
    out, state = m(x, lengths=lengths)
    return [out, *(list(state) if isinstance(state, tuple) else [state])]


# Inference projects the input a window of steps at a time, one window per block of batch rows
# when the rows are split between threads; these sizes make windows of a few steps.
INFER_CASES = CASES + [
    ("LSTM", dict(), 13, 64, 7, 256),
    ("GRU", dict(batch_first=True), 11, 50, 5, 300),
    ("GRU", dict(linear_before_reset=False), 9, 27, 6, 320),
    ("RNN", dict(num_layers=2), 17, 130, 3, 1024),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind,kwargs,T,N,I,H", INFER_CASES)
def test_inference_bitwise_identical_across_thread_counts(kind, kwargs, T, N, I, H, dtype):
    assert_identical_across_threads(infer_once, kind, kwargs, T, N, I, H, dtype, seed=N + 1)


def test_set_num_threads_checks_its_argument():
    with pytest.raises(ValueError, match="n"):
        gc.set_num_threads(0)
    with pytest.raises(TypeError, match="n"):
        gc.set_num_threads(1.5)
