# SPDX-License-Identifier: MIT
"""Inference projects the input a window of steps at a time; results match training mode's,
which projects every step at once, whatever the window boundaries."""

import numpy as np
import pytest

import gatecell as gc
from helpers import assert_close

# N * G * H large enough that a window holds only a few steps (the scratch is bounded).
CASES = [
    ("LSTM", dict(bidirectional=True), 11, 64, 7, 256),
    ("LSTM", dict(batch_first=True, proj_size=40), 9, 70, 5, 256),
    ("GRU", dict(bidirectional=True, batch_first=True), 13, 96, 6, 300),
    ("GRU", dict(linear_before_reset=False), 10, 80, 4, 320),
    ("RNN", dict(bidirectional=True, num_layers=2), 23, 257, 3, 1024),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind,kwargs,T,N,I,H", CASES)
def test_inference_windows_match_training(kind, kwargs, T, N, I, H, dtype):
    m = getattr(gc, kind)(I, H, dtype=dtype, seed=1, **kwargs)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((N, T, I) if kwargs.get("batch_first") else (T, N, I)).astype(dtype)
    lengths = rng.integers(1, T + 1, size=N)
    y_train, s_train = m.train()(x, lengths=lengths)
    y_eval, s_eval = m.eval()(x, lengths=lengths)
    assert_close("out", y_eval, y_train, dtype)
    as_list = lambda s: list(s) if isinstance(s, tuple) else [s]  # noqa: E731
    for a, b in zip(as_list(s_eval), as_list(s_train)):
        assert_close("state", a, b, dtype)
