# SPDX-License-Identifier: MIT
"""Batch-1 inference and the Stream run on the fused step kernel (cpp/src/step.cpp): they must
agree with the general batched kernels for every cell kind and option, both on the AVX2 path and
on the portable one (GATECELL_PORTABLE=1, in a subprocess: the choice is made once per process)."""

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gatecell as gc
from gatecell import _core

from helpers import assert_close

HERE = Path(__file__).resolve().parent
KINDS = [
    ("RNN", dict(nonlinearity="tanh")),
    ("RNN", dict(nonlinearity="relu")),
    ("LSTM", {}),
    ("LSTM", dict(proj_size=3)),
    ("GRU", dict(linear_before_reset=True)),
    ("GRU", dict(linear_before_reset=False)),
]
# (I, H): hidden sizes below, at and between the kernel's 8-unit blocks; I >= 48 takes the path
# that projects the inputs of a window of steps with one GEMM before the step loop.
SIZES = [(3, 5), (16, 8), (50, 13), (7, 20), (64, 16)]
STACKS = [(1, False), (2, False), (2, True)]  # (layers, bidirectional)
OPTIONS = list(itertools.product([False, True], repeat=4))  # batch_first, bias, initial state, lengths
GRID = list(itertools.product(range(len(KINDS)), SIZES, STACKS, [np.float32, np.float64]))


def _ids(case):
    k, (I, H), (layers, bidir), dtype = case
    kind, extra = KINDS[k]
    form = "-".join(f"{key}={val}" for key, val in extra.items())
    return f"{kind}{'-' + form if form else ''}-I{I}-H{H}-L{layers}{'-bi' if bidir else ''}-{np.dtype(dtype).name}"


def _model(case, options):
    k, (I, H), (layers, bidir), dtype = case
    kind, extra = KINDS[k]
    batch_first, bias, _, _ = options
    return getattr(gc, kind)(I, H, num_layers=layers, bidirectional=bidir, batch_first=batch_first, bias=bias,
                             dtype=dtype, seed=I * 31 + H, **extra).eval()


def _run_case(index):
    """(batched outputs, per-sequence outputs at batch 1) of grid case `index`, as lists of arrays."""
    case = GRID[index]
    options = OPTIONS[index % len(OPTIONS)]  # every combination recurs across the grid
    batch_first, _, init, with_lengths = options
    m = _model(case, options)
    rng = np.random.default_rng(index)
    T, N = 9, 3
    dtype = case[3]
    x = rng.standard_normal((N, T, m.input_size) if batch_first else (T, N, m.input_size)).astype(dtype)
    h_shape, c_shape = m._state_shapes(N)
    state = None
    if init:
        h0 = rng.standard_normal(h_shape).astype(dtype)
        state = (h0, rng.standard_normal(c_shape).astype(dtype)) if isinstance(m, gc.LSTM) else h0
    lengths = rng.integers(1, T + 1, size=N) if with_lengths else None
    out, st = m(x, state, lengths)
    batched, single = [], []
    for n in range(N):
        xn = x[n:n + 1] if batch_first else x[:, n:n + 1]
        sn = None
        if state is not None:
            sn = tuple(s[:, n:n + 1] for s in state) if isinstance(state, tuple) else state[:, n:n + 1]
        out_n, st_n = m(xn, sn, None if lengths is None else lengths[n:n + 1])
        batched.append(out[n:n + 1] if batch_first else out[:, n:n + 1])
        single.append(out_n)
        for whole, alone in zip(st if isinstance(st, tuple) else (st,), st_n if isinstance(st_n, tuple) else (st_n,)):
            batched.append(whole[:, n:n + 1])
            single.append(alone)
    return batched, single


@pytest.mark.parametrize("index", range(len(GRID)), ids=[_ids(c) for c in GRID])
def test_batch1_matches_batched(index):
    batched, single = _run_case(index)
    for k, (expected, actual) in enumerate(zip(batched, single)):
        assert_close(f"array {k}", actual, expected, GRID[index][3])


def _stream_outputs(index):
    """Step-by-step outputs of a unidirectional grid case through a Stream at batch 2, and the
    sequence forward of the same inputs."""
    case = GRID[index]
    m = _model(case, (False, True, False, False))
    rng = np.random.default_rng(index)
    x = rng.standard_normal((6, 2, m.input_size)).astype(case[3])
    s = gc.Stream(m, batch=2)
    return np.stack([s.step(x[t]) for t in range(6)]), m(x)[0]


UNI = [i for i, c in enumerate(GRID) if not c[2][1]]


@pytest.mark.parametrize("index", UNI, ids=[_ids(GRID[i]) for i in UNI])
def test_stream_matches_sequence(index):
    stepped, whole = _stream_outputs(index)
    assert_close("stream", stepped, whole, GRID[index][3])


def _dump(path):
    """Writes every grid case's batch-1 outputs and stream outputs to an .npz (for the subprocess)."""
    arrays = {}
    for i in range(len(GRID)):
        for k, a in enumerate(_run_case(i)[1]):
            arrays[f"seq{i}_{k}"] = a
    for i in UNI:
        arrays[f"stream{i}"] = _stream_outputs(i)[0]
    np.savez(path, **arrays)


def test_portable_path_agrees(tmp_path):
    """GATECELL_PORTABLE=1 (scalar code) gives the AVX2 results to rounding, and its own batch-1
    results match its batched kernels."""
    path = tmp_path / "portable.npz"
    env = dict(os.environ, GATECELL_PORTABLE="1")
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import test_step; test_step._dump({str(path)!r})"
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=HERE)
    portable = np.load(path)
    for i in range(len(GRID)):
        for k, a in enumerate(_run_case(i)[1]):
            assert_close(f"{_ids(GRID[i])} array {k}", portable[f"seq{i}_{k}"], a, GRID[i][3])
    for i in UNI:
        assert_close(f"{_ids(GRID[i])} stream", portable[f"stream{i}"], _stream_outputs(i)[0], GRID[i][3])
    check = ("import sys; sys.path.insert(0, {!r}); import test_step\n"
             "for i in range(len(test_step.GRID)): test_step.test_batch1_matches_batched(i)\n"
             "for i in test_step.UNI: test_step.test_stream_matches_sequence(i)").format(str(HERE))
    subprocess.run([sys.executable, "-c", check], check=True, env=env, cwd=HERE)


# Batch-1 sequences with inputs of at least 48 project their inputs a window of 32 steps at a time;
# from 64 steps at 2 threads, with inputs no wider than the output (H 64 here), a second thread
# projects the next window while the first runs the current one; with wider inputs (H 24) the
# threads share each window's GEMM (at 1 thread the first projects every window itself).
PIPE = list(itertools.product(range(len(KINDS)), [64, 100, 250], [(1, False), (2, True)], [24, 64],
                              [np.float32, np.float64]))


@pytest.mark.parametrize("case", PIPE, ids=lambda c: f"{KINDS[c[0]][0]}{c[0]}-T{c[1]}-L{c[2][0]}{'-bi' if c[2][1] else ''}-"
                                                    f"H{c[3]}-{np.dtype(c[4]).name}")
def test_pipelined_batch1(case):
    """Bitwise equal at 1 and 2 threads, and equal to the batched kernels, across window ends and
    sequence lengths that stop inside a window."""
    k, T, (layers, bidir), H, dtype = case
    kind, extra = KINDS[k]
    batch_first = T == 100
    m = getattr(gc, kind)(64, H, num_layers=layers, bidirectional=bidir, batch_first=batch_first, dtype=dtype,
                          seed=T + k, **extra).eval()
    rng = np.random.default_rng(T * 7 + k)
    shape = (2, T, 64) if batch_first else (T, 2, 64)
    x = rng.standard_normal(shape).astype(dtype)
    _check_batch1_rows(m, x, None, np.array([T, T - 37]), (1, 2))


def _check_batch1_rows(m, x, state, lengths, threads, before_each=lambda: None):
    """Each sequence of x run alone (batch 1) gives bitwise the same at every thread count of
    `threads` (the first is the reference), and the rows of the batched run to rounding.
    before_each: called before each batch-1 run."""
    batched = _flatten(m(x, state, lengths))
    before = gc.get_num_threads()
    try:
        for n in range(len(lengths)):
            xn = x[n:n + 1] if m.batch_first else x[:, n:n + 1]
            sn = state
            if state is not None:
                sn = tuple(s[:, n:n + 1] for s in state) if isinstance(state, tuple) else state[:, n:n + 1]
            runs = {}
            for t in threads:
                gc.set_num_threads(t)
                before_each()
                runs[t] = _flatten(m(xn, sn, lengths[n:n + 1]))
            for t in threads[1:]:
                for j, (one, many) in enumerate(zip(runs[threads[0]], runs[t])):
                    assert one.tobytes() == many.tobytes(), f"row {n} array {j}: {threads[0]} and {t} threads differ"
            whole = [batched[0][n:n + 1] if m.batch_first else batched[0][:, n:n + 1]]
            whole += [s[:, n:n + 1] for s in batched[1:]]
            for j, (expected, actual) in enumerate(zip(whole, runs[threads[-1]])):
                assert_close(f"row {n} array {j}", actual, expected, x.dtype)
    finally:
        gc.set_num_threads(before)


def _flatten(arrays):
    out = []
    for a in arrays:
        out.extend(_flatten(a) if isinstance(a, (tuple, list)) else [a])
    return out


# Batch-1 inference whose step reads 128 KiB of weights or more splits every step by units over
# the threads (slices of multiples of 8 units, each thread with its own rows of the weights and a
# barrier per step). Sizes: slices of 8-unit blocks and not, a last slice wider than the others,
# LSTM's smallest slices (H = 72: 32 + 40 units, 24 each at 3 threads), GRU and RNN slices just
# above the 40-row panel floor (GRU 96 = 48 + 48, which 3 threads would cut below it), inputs below
# 48 that ride along in the step's product and wider ones projected per window; the LSTM with a
# projection, the original GRU and a small LSTM do not split.
SPLIT_KINDS = [0, 1, 2, 4]  # RNN tanh, RNN relu, LSTM, GRU (torch form): the cells a step splits
SPLIT = [(k, I, H) for k in SPLIT_KINDS for I, H in [(20, 200), (64, 184), (130, 300)]]
SPLIT += [(2, 47, 72), (4, 40, 96), (0, 40, 170), (3, 64, 200), (5, 64, 200), (2, 64, 64)]


@pytest.mark.parametrize("patience", [100.0, -1.0], ids=["split", "alone"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", SPLIT, ids=lambda c: f"{KINDS[c[0]][0]}{c[0]}-I{c[1]}-H{c[2]}")
def test_split_steps_match_one_thread(case, dtype, patience):
    """Bitwise equal at 1, 2, 3 and 4 threads (with an initial state and a length that stops
    inside a window), and equal to the batched kernels; "alone": every wait at a step's barrier
    counts as long, so from the third step on the first thread runs every slice (as when another
    thread loses its core on a busy machine)."""
    k, I, H = case
    kind, extra = KINDS[k]
    m = getattr(gc, kind)(I, H, dtype=dtype, seed=I + H, **extra).eval()
    rng = np.random.default_rng(I * H + k)
    T = 71
    x = rng.standard_normal((T, 2, I)).astype(dtype)
    h_shape, c_shape = m._state_shapes(2)
    h0 = rng.standard_normal(h_shape).astype(dtype)
    state = (h0, rng.standard_normal(c_shape).astype(dtype)) if kind == "LSTM" else h0
    try:
        # Set before each run: it also ends the pause that follows a run whose team fell back.
        _check_batch1_rows(m, x, state, np.array([T, T - 30]), (1, 2, 3, 4),
                           before_each=lambda: _core._set_split_patience(patience))
    finally:
        _core._set_split_patience(100.0)


def test_split_patience_checks_its_argument():
    for bad in (-2.0, float("nan")):
        with pytest.raises(ValueError, match="microseconds must be >= -1, got"):
            _core._set_split_patience(bad)
