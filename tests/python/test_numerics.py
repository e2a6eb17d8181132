# SPDX-License-Identifier: MIT
"""Numerics: saturated gates stay finite and accurate (pre-activations of ±1e4), and a NaN in one
batch element never reaches another, forward or backward, in every kind of network."""

import numpy as np
import pytest

import gatecell as gc
from gatecell import reference
from helpers import TOL, rel_err
from test_gradcheck import CONFIGS as KINDS  # name -> (class, reference kind, kwargs)

DTYPES = [np.float32, np.float64]


def _states(s):
    return list(s) if isinstance(s, tuple) else [s]


@pytest.mark.parametrize("name", sorted(KINDS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["bias", "input"])
def test_saturated_preactivations(name, dtype, where):
    """Pre-activations near ±1e4 (from the biases, or from inputs scaled by 1e4): sigmoid and tanh
    saturate exactly, the forward equals the float64 reference, and backward is finite."""
    cls, kind, kw = KINDS[name]
    m = cls(4, 5, num_layers=2, bidirectional=True, dtype=dtype, seed=0, **kw)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 4))
    if where == "bias":
        for k, p in m.parameters().items():
            if k.startswith("bias_ih"):
                p[...] = rng.choice([-1e4, 1e4], size=p.shape)
    else:
        x *= 1e4
    x = x.astype(dtype)
    out, s_n = m(x)
    for a in [out] + _states(s_n):
        assert np.all(np.isfinite(a)), f"{name}: non-finite forward output"
    if name not in ("rnn_relu", "lstm_proj"):  # h is a tanh, o * tanh(c) or a convex combination of tanhs
        assert np.max(np.abs(out)) <= 1.0
    ref = reference.network_forward(kind, m.parameters(), x, num_layers=2, bidirectional=True,
                                    nonlinearity=kw.get("nonlinearity", "tanh"), proj_size=kw.get("proj_size", 0),
                                    linear_before_reset=kw.get("linear_before_reset", True))
    err = max(rel_err(a, b) for a, b in zip([out] + _states(s_n), ref))
    # relu outputs reach 1e4 * |W| in magnitude: allow float32 rounding of those sums
    tol = TOL[np.dtype(dtype)] * (1e3 if where == "input" and dtype == np.float32 else 1)
    assert err <= tol, f"{name}: relative error {err:.3e} vs reference"
    dx, ds0 = m.backward(rng.standard_normal(out.shape).astype(dtype))
    for a in [dx] + _states(ds0) + list(m.grads.values()):
        assert np.all(np.isfinite(a)), f"{name}: non-finite gradient"


def test_sigmoid_extremes_in_a_cell():
    """An LSTM cell whose gates see exactly ±1e4: i = o = 1, f = 0 (no 0 * inf, no NaN), so c' = g."""
    for dtype in DTYPES:
        cell = gc.LSTMCell(1, 1, dtype=dtype, seed=0)
        p = cell.parameters()
        p["weight_ih"][...] = 0
        p["weight_hh"][...] = 0
        p["bias_hh"][...] = 0
        p["bias_ih"][...] = np.array([[1e4], [-1e4], [-1e4], [1e4]], dtype).reshape(4)
        h, c = cell(np.zeros((1, 1), dtype), (np.zeros((1, 1), dtype), np.full((1, 1), 3.0, dtype)))
        assert c[0, 0] == -1.0 and h[0, 0] == np.tanh(dtype(-1.0)), (dtype, h, c)


# Cell variants whose gate math runs the ONNX activation kernels, with their clip.
VARIANTS = {
    "lstm_clip": (gc.LSTM, {"clip": 3.0}),
    "lstm_hard_sigmoid_relu": (gc.LSTM, {"activations": ("HardSigmoid", "Relu", "Tanh")}),
    "gru_relu_clip": (gc.GRU, {"activations": ("Sigmoid", "Relu"), "clip": 2.0}),
    "rnn_relu_activation": (gc.RNN, {"activations": ("Relu",)}),
}


@pytest.mark.parametrize("name", sorted(KINDS) + sorted(VARIANTS))
@pytest.mark.parametrize("mode", ["train", "eval", "eval-batch-1"])
@pytest.mark.parametrize("threads", [1, 2])
def test_nan_reaches_every_unit_on_the_vector_path(name, mode, threads):
    """With H = 40 the float32 gate math runs in 16- or 8-float vector lanes, not the scalar tail. A
    NaN in one element's input at step 1 must make every unit of that element's outputs NaN from
    step 1 on, as torch's are: the clamps inside the vector tanh, sigmoid, relu and the gate clip
    take the NaN as max/min's second operand, which those return for a NaN, and must not turn it
    into a finite number. The other elements stay finite."""
    cls, kw = (KINDS[name][0], KINDS[name][2]) if name in KINDS else VARIANTS[name]
    N = 1 if mode == "eval-batch-1" else 3
    bad = N - 1
    m = cls(16, 40, seed=4, **kw)
    m.train() if mode == "train" else m.eval()
    x = np.random.default_rng(5).standard_normal((6, N, 16)).astype(np.float32)
    x[1, bad, 0] = np.nan
    before = gc.get_num_threads()
    try:
        gc.set_num_threads(threads)
        out, _ = m(x)
    finally:
        gc.set_num_threads(before)
    assert np.all(np.isnan(out[1:, bad])), f"{name}: a NaN input became finite in {np.sum(np.isfinite(out[1:, bad]))} outputs"
    assert np.all(np.isfinite(out[0, bad]))
    assert np.all(np.isfinite(np.delete(out, bad, axis=1)))


def _nan_poison(m, is_lstm, x, state, dy, n_bad, where):
    x, dy = x.copy(), dy.copy()
    state = [s.copy() for s in state]
    if where == "x":
        x[(n_bad, 1, 0) if m.batch_first else (1, n_bad, 0)] = np.nan   # step 1 of element n_bad
    elif where == "h0":
        state[0][0, n_bad, 0] = np.nan
    else:
        dy[(slice(None), n_bad) if not m.batch_first else (n_bad,)] = np.nan
    return x, (tuple(state) if is_lstm else state[0]), dy


@pytest.mark.parametrize("name", sorted(KINDS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["x", "h0", "dout"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_nan_stays_in_its_batch_element(name, dtype, where, batch_first):
    """A NaN in element 2's input, initial state or output gradient leaves every other element's
    outputs, final states, dx and initial-state gradients bitwise identical to a clean run."""
    cls, _, kw = KINDS[name]
    m = cls(3, 4, num_layers=2, bidirectional=True, batch_first=batch_first, dtype=dtype, seed=2, **kw)
    is_lstm = cls is gc.LSTM
    rng = np.random.default_rng(3)
    T, N, bad = 5, 4, 2
    x = rng.standard_normal((N, T, 3) if batch_first else (T, N, 3)).astype(dtype)
    hout = kw.get("proj_size", 0) or 4
    state = [rng.standard_normal((4, N, hout)).astype(dtype)] + \
        ([rng.standard_normal((4, N, 4)).astype(dtype)] if is_lstm else [])
    lengths = np.array([5, 3, 4, 1])
    out_shape = (N, T, 2 * hout) if batch_first else (T, N, 2 * hout)
    dy = rng.standard_normal(out_shape).astype(dtype)

    def run(x, st, dy):
        m.zero_grad()
        out, s_n = m(x, st, lengths=lengths)
        dx, ds0 = m.backward(dy)
        return out, _states(s_n), dx, _states(ds0)

    clean = run(x, tuple(state) if is_lstm else state[0], dy)
    poisoned = run(*_nan_poison(m, is_lstm, x, state, dy, bad, where))
    keep = [n for n in range(N) if n != bad]
    batch_axis = 0 if batch_first else 1
    out_c, s_c, dx_c, ds_c = clean
    out_p, s_p, dx_p, ds_p = poisoned
    np.testing.assert_array_equal(np.take(out_p, keep, batch_axis), np.take(out_c, keep, batch_axis))
    np.testing.assert_array_equal(np.take(dx_p, keep, batch_axis), np.take(dx_c, keep, batch_axis))
    for a, b in zip(s_p + ds_p, s_c + ds_c):
        np.testing.assert_array_equal(a[:, keep], b[:, keep])
    # ...and the poison did arrive where it was put (the test would be vacuous otherwise)
    poisoned_part = np.take(out_p if where != "dout" else dx_p, [bad], batch_axis)
    assert not np.all(np.isfinite(poisoned_part)), "the NaN vanished instead of propagating"
