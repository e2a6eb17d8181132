# SPDX-License-Identifier: MIT
"""The streaming API (C++ Stream through gc.Stream): step by step it reproduces the sequence
forward of every unidirectional configuration, keeps, exposes and accepts its state."""

import itertools

import numpy as np
import pytest

import gatecell as gc

from helpers import assert_close, save_sequential

DTYPES = [np.float32, np.float64]

NETWORKS = [
    ("RNN", dict(nonlinearity="tanh")),
    ("RNN", dict(nonlinearity="relu")),
    ("LSTM", {}),
    ("LSTM", dict(proj_size=2)),
    ("GRU", dict(linear_before_reset=True)),
    ("GRU", dict(linear_before_reset=False)),
]


def _state_of(m, state):
    """torch-shaped final state -> the stream's flat state."""
    if isinstance(m, gc.LSTM):
        return np.concatenate([state[0].ravel(), state[1].ravel()])
    return state.ravel()


# (I, H): a few units, and enough that the gate rows fill several 64-row panels of the step
# kernel with a rest that joins the last one (LSTM 400 = 5 x 64 + 80, GRU 200 = 2 x 64 + 72).
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("I,H", [(4, 5), (30, 100)])
@pytest.mark.parametrize("layers,bias,batch", [(1, True, 1), (2, True, 3), (3, False, 2)])
@pytest.mark.parametrize("kind,extra", NETWORKS, ids=[f"{k}-{e}" for k, e in NETWORKS])
def test_stream_matches_sequence_forward(kind, extra, layers, bias, batch, I, H, dtype):
    m = getattr(gc, kind)(I, H, num_layers=layers, bias=bias, dtype=dtype, seed=layers, **extra).eval()
    rng = np.random.default_rng(batch)
    T = 7
    x = rng.standard_normal((T, batch, I)).astype(dtype)
    out, state = m(x)
    s = gc.Stream(m, batch=batch)
    assert s.dtype == dtype and s.state_size == _state_of(m, state).size
    for t in range(T):
        assert_close(f"step {t}", s.step(x[t]), out[t], dtype)
    assert_close("state", s.get_state(), _state_of(m, state), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_state_set_reset(dtype):
    m = gc.LSTM(3, 4, num_layers=2, dtype=dtype, seed=0).eval()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 2, 3)).astype(dtype)
    h0 = rng.standard_normal((2, 2, 4)).astype(dtype)
    c0 = rng.standard_normal((2, 2, 4)).astype(dtype)
    out, (h_n, c_n) = m(x, (h0, c0))
    s = gc.Stream(m, batch=2)
    s.set_state(np.concatenate([h0.ravel(), c0.ravel()]))
    for t in range(5):
        assert_close("step", s.step(x[t]), out[t], dtype)
    saved = s.get_state()
    s.reset()
    assert not s.get_state().any()
    fresh, _ = m(x)
    for t in range(5):
        assert_close("after reset", s.step(x[t]), fresh[t], dtype)
    s.set_state(saved)
    np.testing.assert_array_equal(s.get_state(), saved)
    y = np.empty((2, 4), dtype)
    assert s.step(x[0], out=y) is y


@pytest.mark.parametrize("dtype", DTYPES)
def test_cells_and_linear(dtype):
    rng = np.random.default_rng(2)
    for cell in (gc.RNNCell(3, 4, dtype=dtype, seed=1), gc.LSTMCell(3, 4, dtype=dtype, seed=2),
                 gc.GRUCell(3, 4, linear_before_reset=False, dtype=dtype, seed=3)):
        cell.eval()
        s = gc.Stream(cell, batch=2)
        h = None
        for _ in range(4):
            x = rng.standard_normal((2, 3)).astype(dtype)
            h = cell(x, h)
            assert_close(type(cell).__name__, s.step(x), h[0] if isinstance(h, tuple) else h, dtype)
    lin = gc.Linear(3, 2, dtype=dtype, seed=4)
    x = rng.standard_normal((1, 3)).astype(dtype)
    assert_close("linear", gc.Stream(lin).step(x), lin(x), dtype)
    assert gc.Stream(lin).step(x[0]).shape == (2,)
    wide = gc.Linear(3, 70, dtype=dtype, seed=5)  # 72 padded rows: one panel of 64 + 8
    assert_close("wide linear", gc.Stream(wide).step(x), wide(x), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sequential_checkpoint(tmp_path, dtype):
    """GRU -> Dropout -> LastStep -> Linear from a checkpoint: each step's output is the head
    applied to the output at that step (the last step so far)."""
    gru = gc.GRU(3, 6, num_layers=2, dtype=dtype, seed=5).eval()
    head = gc.Linear(6, 2, dtype=dtype, seed=6)
    path = tmp_path / "seq.safetensors"
    save_sequential(path, gru, head, p=0.5)
    x = np.random.default_rng(7).standard_normal((6, 1, 3)).astype(dtype)
    out, _ = gru(x)
    s = gc.Stream(path)
    assert (s.input_size, s.output_size, s.batch) == (3, 2, 1)
    for t in range(6):
        assert_close("step", s.step(x[t, 0]), head(out[t, 0]), dtype)


def test_errors():
    m = gc.LSTM(3, 4, dtype=np.float32, seed=0)
    s = gc.Stream(m, batch=2)
    with pytest.raises(TypeError, match="float32"):
        s.step(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="ndarray"):
        s.step([[0.0] * 3] * 2)
    with pytest.raises(ValueError, match=r"x: expected shape \(2, 3\), got \(3,\)"):
        s.step(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        s.step(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="state"):
        s.set_state(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="out"):
        s.step(np.zeros((2, 3), np.float32), out=np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="bidirectional"):
        gc.Stream(gc.GRU(3, 4, bidirectional=True))
    with pytest.raises(ValueError, match="batch"):
        gc.Stream(m, batch=0)
    with pytest.raises(TypeError, match="model"):
        gc.Stream(42)
    with pytest.raises(ValueError, match="cannot open"):
        gc.Stream("/nonexistent/file.safetensors")


def test_weights_are_copied():
    m = gc.RNN(2, 3, seed=0).eval()
    s = gc.Stream(m)
    x = np.ones((1, 2), np.float32)
    before = s.step(x)
    m.parameters()["weight_ih_l0"][...] = 0
    s.reset()
    np.testing.assert_array_equal(s.step(x), before)


@pytest.mark.parametrize("kind,batch", list(itertools.product(["LSTM", "GRU"], [1, 4])))
def test_batch_rows_are_independent(kind, batch):
    m = getattr(gc, kind)(2, 3, num_layers=2, dtype=np.float64, seed=1).eval()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, batch, 2))
    s = gc.Stream(m, batch=batch)
    singles = [gc.Stream(m) for _ in range(batch)]
    for t in range(5):
        y = s.step(x[t])
        for n in range(batch):
            np.testing.assert_allclose(y[n], singles[n].step(x[t, n]), rtol=0, atol=1e-14)
