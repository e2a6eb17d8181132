# SPDX-License-Identifier: MIT
"""The forward pass of a few sequences (fewer than a row team of threads needs) with large weights
splits every step by units over the threads (cpp/src/batch_split.cpp): each thread keeps its
units' columns of W_ih^T and W_hh^T and runs their products and gate math for every sequence, with
a barrier per step; in training it also records its units' part of the cache. Its results (and in
training every gradient) must be the single-threaded kernels' bit for bit, for every cell it
takes, with lengths, initial states, either layout, stacked layers, and when the first thread
takes over every slice (another thread lost its core on a busy machine)."""

import itertools

import numpy as np
import pytest

import gatecell as gc
from gatecell import _core

from helpers import assert_close

KINDS = {
    "rnn-tanh": ("RNN", dict(nonlinearity="tanh")),
    "rnn-relu": ("RNN", dict(nonlinearity="relu")),
    "lstm": ("LSTM", {}),
    "gru": ("GRU", dict(linear_before_reset=True)),
}
# Hidden sizes from just above the 128 KiB floor of weights per step (LSTM 96, GRU 112, RNN 184)
# to sizes whose slices are not multiples of 8 units (the last slice takes the rest) and that cut
# into 3 and 4 slices; input widths below and above the vector width.
SIZES = {
    "rnn-tanh": [(5, 184), (100, 300)],
    "rnn-relu": [(37, 200)],
    "lstm": [(3, 96), (64, 130), (100, 200)],
    "gru": [(9, 112), (64, 170), (33, 256)],
}
CASES = [(kind, I, H, N) for kind, sizes in SIZES.items() for (I, H), N in zip(sizes, itertools.cycle([2, 5, 3, 7]))]
# (batch_first, initial state, lengths, layers): every combination meets every cell kind.
OPTIONS = list(itertools.product([False, True], [False, True], [False, True], [1, 2]))


def _ids(case):
    kind, I, H, N = case
    return f"{kind}-I{I}-H{H}-N{N}"


def _inputs(m, name, N, T, I, batch_first, with_state, with_lengths, rng):
    """x, the initial state (or None) and lengths (or None: else one sequence ends at step 5)."""
    x = rng.standard_normal((N, T, I) if batch_first else (T, N, I)).astype(np.float32)
    state = None
    if with_state:
        h_shape, c_shape = m._state_shapes(N)
        h0 = rng.standard_normal(h_shape).astype(np.float32)
        state = (h0, rng.standard_normal(c_shape).astype(np.float32)) if name == "LSTM" else h0
    lengths = None
    if with_lengths:
        lengths = rng.integers(1, T + 1, size=N)
        lengths[0] = 5
    return x, state, lengths


def _run(m, x, state, lengths, threads, patience):
    gc.set_num_threads(threads)
    _core._set_split_patience(patience)  # also ends a pause left by a run whose team fell back
    out, final = m(x, state, lengths)
    return [out, *(final if isinstance(final, tuple) else (final,))]


@pytest.mark.parametrize("patience", [100.0, -1.0], ids=["split", "alone"])
@pytest.mark.parametrize("options", range(len(OPTIONS)))
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_split_matches_one_thread(case, options, patience):
    kind, I, H, N = case
    batch_first, with_state, with_lengths, layers = OPTIONS[options]
    name, extra = KINDS[kind]
    m = getattr(gc, name)(I, H, num_layers=layers, batch_first=batch_first, seed=I + H + options, **extra).eval()
    rng = np.random.default_rng(H * 17 + options)
    T = 71  # three windows of projections, the last one short
    x, state, lengths = _inputs(m, name, N, T, I, batch_first, with_state, with_lengths, rng)
    if with_lengths:  # one sequence ends inside the first window, one at T
        lengths[-1] = T
    before = gc.get_num_threads()
    try:
        one = _run(m, x, state, lengths, 1, 100.0)
        runs_before = _core._split_runs()
        for threads in (2, 3, 4):
            many = _run(m, x, state, lengths, threads, patience)
            for k, (a, b) in enumerate(zip(one, many)):
                assert a.tobytes() == b.tobytes(), f"array {k} differs between 1 and {threads} threads"
        # Each layer at each thread count ran split: the test covers the split, not the fallback.
        assert _core._split_runs() - runs_before == 3 * layers
    finally:
        gc.set_num_threads(before)
        _core._set_split_patience(100.0)
    # And the split agrees with the float64 model to float32 rounding.
    m64 = getattr(gc, name)(I, H, num_layers=layers, batch_first=batch_first, seed=I + H + options,
                            dtype=np.float64, **extra).eval()
    s64 = None if state is None else (tuple(s.astype(np.float64) for s in state) if isinstance(state, tuple)
                                      else state.astype(np.float64))
    out64, _ = m64(x.astype(np.float64), s64, lengths)
    assert_close("y", many[0], out64.astype(np.float32), np.float32)


@pytest.mark.parametrize("kind,kwargs,N,H", [
    ("LSTM", dict(), 2, 64),                              # 64 KiB of weights: below the floor
    ("LSTM", dict(proj_size=50), 3, 200),                 # the projection needs every unit
    ("GRU", dict(linear_before_reset=False), 3, 200),     # r * h_prev needs every unit
    ("LSTM", dict(), 8, 200),                             # a row team: each thread its own rows
    ("GRU", dict(bidirectional=True), 3, 200),            # the two directions side by side
])
def test_no_split_where_it_does_not_apply(kind, kwargs, N, H):
    """These run unsplit at 2 threads, and still bitwise as at one thread."""
    m = getattr(gc, kind)(16, H, seed=1, **kwargs).eval()
    x = np.random.default_rng(2).standard_normal((9, N, 16)).astype(np.float32)
    before = gc.get_num_threads()
    try:
        gc.set_num_threads(1)
        one = m(x)[0]
        gc.set_num_threads(2)
        runs_before = _core._split_runs()
        two = m(x)[0]
        assert _core._split_runs() == runs_before
    finally:
        gc.set_num_threads(before)
    assert one.tobytes() == two.tobytes()


def _train(make, x, state, lengths, dy, threads, patience):
    """Forward in training mode, then backward: every output, final state and gradient. A new
    model each time (the same weights): the cache must not hold an earlier call's values."""
    gc.set_num_threads(threads)
    _core._set_split_patience(patience)
    m = make()
    out, final = m(x, state, lengths)
    _core._set_split_patience(patience)  # a forward whose team fell back paused the next split
    dx, dstate = m.backward(dy)
    flat = lambda s: list(s) if isinstance(s, tuple) else [s]  # noqa: E731
    return [out, *flat(final), dx, *flat(dstate), *(g.copy() for g in m.grads.values())]


# (kind, I, H, N): batch 1 splits in training (inference has the step kernel for it).
TRAIN_CASES = CASES + [
    ("lstm", 20, 256, 1), ("gru", 7, 200, 1), ("rnn-tanh", 30, 400, 1)]


@pytest.mark.parametrize("patience", [100.0, -1.0], ids=["split", "alone"])
@pytest.mark.parametrize("options", [0, 5, 10, 15])
@pytest.mark.parametrize("case", TRAIN_CASES, ids=_ids)
def test_training_split_matches_one_thread(case, options, patience):
    """Training splits the forward pass too, each thread recording its units' part of the cache
    (activated gates, h and c entering and leaving each step, GRU's W_hn h_prev + b_hn), and the
    backward step loop (each thread its units' dA, dh and dc, and its columns of dA W_hh): every
    output and gradient comes out bit for bit as at one thread."""
    kind, I, H, N = case
    batch_first, with_state, with_lengths, layers = OPTIONS[options]
    name, extra = KINDS[kind]

    def make():
        return getattr(gc, name)(I, H, num_layers=layers, batch_first=batch_first, seed=I + H + options,
                                 **extra).train()
    m = make()
    rng = np.random.default_rng(H * 13 + options)
    T = 40  # two windows of projections, the second one short
    x, state, lengths = _inputs(m, name, N, T, I, batch_first, with_state, with_lengths, rng)
    dy = rng.standard_normal((N, T, H) if batch_first else (T, N, H)).astype(np.float32)
    before = gc.get_num_threads()
    try:
        one = _train(make, x, state, lengths, dy, 1, 100.0)
        runs_before = _core._split_runs()
        for threads in (2, 3):
            many = _train(make, x, state, lengths, dy, threads, patience)
            for k, (a, b) in enumerate(zip(one, many)):
                assert a.tobytes() == b.tobytes(), f"array {k} differs between 1 and {threads} threads"
        # Each layer at each thread count split its forward pass and its backward loop.
        assert _core._split_runs() - runs_before == 2 * layers * 2
    finally:
        gc.set_num_threads(before)
        _core._set_split_patience(100.0)
