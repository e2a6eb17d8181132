# SPDX-License-Identifier: MIT
"""Bad input raises ValueError or TypeError naming the argument: never a crash, never a wrong answer."""

import numpy as np
import pytest

import gatecell as gc


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"input_size": 0}, ValueError, "input_size"),
    ({"input_size": 3.0}, TypeError, "input_size"),
    ({"hidden_size": -1}, ValueError, "hidden_size"),
    ({"hidden_size": True}, TypeError, "hidden_size"),
    ({"num_layers": 0}, ValueError, "num_layers"),
    ({"dropout": 1.5}, ValueError, "dropout"),
    ({"dropout": "0.1"}, TypeError, "dropout"),
    ({"bidirectional": 1}, TypeError, "bidirectional"),
    ({"proj_size": 4}, ValueError, "proj_size"),
    ({"proj_size": -1}, ValueError, "proj_size"),
    ({"dtype": np.int32}, TypeError, "dtype"),
    ({"dtype": "float16"}, TypeError, "dtype"),
    ({"seed": -3}, ValueError, "seed"),
])
def test_constructor_arguments(kwargs, exc, match):
    args = {"input_size": 3, "hidden_size": 4, **kwargs}
    with pytest.raises(exc, match=match):
        gc.LSTM(**args)


def test_rnn_nonlinearity():
    with pytest.raises(ValueError, match="nonlinearity"):
        gc.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="nonlinearity"):
        gc.RNNCell(3, 4, nonlinearity="gelu")


@pytest.mark.parametrize("make", [lambda: gc.RNN(3, 4), lambda: gc.GRU(3, 4, batch_first=True),
                                  lambda: gc.LSTM(3, 4, num_layers=2, bidirectional=True)])
def test_x_shape_and_dtype(make):
    m = make()
    with pytest.raises(ValueError, match=r"x: expected shape \(.*3\), got \(5, 2, 4\)"):
        m(np.zeros((5, 2, 4), np.float32))
    with pytest.raises(ValueError, match="x: expected 3 dimensions"):
        m(np.zeros((5, 2, 3, 1), np.float32))
    with pytest.raises(ValueError, match="x: expected 3 dimensions"):
        m(np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="x: expected dtype float32, got float64"):
        m(np.zeros((5, 2, 3)))
    with pytest.raises(TypeError, match="x: expected dtype float32, got int64"):
        m(np.zeros((5, 2, 3), np.int64))
    with pytest.raises(TypeError, match="x"):
        m("not an array")
    with pytest.raises(TypeError, match="x"):
        m(None)
    with pytest.raises(ValueError, match="at least 1"):
        m(np.zeros((2, 0, 3), np.float32) if m.batch_first else np.zeros((0, 2, 3), np.float32))
    out, _ = m([[[0.0, 1.0, 2.0]]])  # nested lists are converted
    assert out.dtype == np.float32


def test_state_shapes():
    lstm = gc.LSTM(3, 4, num_layers=2)
    x = np.zeros((5, 2, 3), np.float32)
    h, c = np.zeros((2, 2, 4), np.float32), np.zeros((2, 2, 4), np.float32)
    with pytest.raises(TypeError, match="tuple"):
        lstm(x, h)
    with pytest.raises(ValueError, match=r"h0.*expected shape \(2, 2, 4\), got \(1, 2, 4\)"):
        lstm(x, (h[:1], c))
    with pytest.raises(ValueError, match=r"c0.*expected shape \(2, 2, 4\), got \(2, 3, 4\)"):
        lstm(x, (h, np.zeros((2, 3, 4), np.float32)))
    with pytest.raises(TypeError, match="h0.*float64"):
        lstm(x, (h.astype(np.float64), c))
    gru = gc.GRU(3, 4)
    with pytest.raises(ValueError, match=r"state \(h0\): expected shape \(1, 2, 4\)"):
        gru(x, np.zeros((1, 3, 4), np.float32))
    proj = gc.LSTM(3, 4, proj_size=2)
    proj(x, (np.zeros((1, 2, 2), np.float32), np.zeros((1, 2, 4), np.float32)))  # h is proj-sized
    with pytest.raises(ValueError, match=r"expected shape \(1, 2, 2\)"):
        proj(x, (np.zeros((1, 2, 4), np.float32), np.zeros((1, 2, 4), np.float32)))


@pytest.mark.parametrize("lengths,exc,match", [
    ([3, 0], ValueError, r"\[1, 5\]"),
    ([3, 6], ValueError, r"\[1, 5\]"),
    ([-1, 2], ValueError, r"\[1, 5\]"),
    ([3], ValueError, r"lengths: expected shape \(2,\), got \(1,\)"),
    ([[3, 2]], ValueError, "lengths: expected shape"),
    ([3.0, 2.0], TypeError, "lengths: expected integers"),
    (["a", "b"], TypeError, "lengths"),
])
def test_lengths_out_of_range(lengths, exc, match):
    m = gc.GRU(3, 4)
    with pytest.raises(exc, match=match):
        m(np.zeros((5, 2, 3), np.float32), lengths=lengths)


def test_backward_arguments():
    m = gc.LSTM(3, 4)
    with pytest.raises(ValueError, match="no forward call"):
        m.backward(np.zeros((5, 2, 4), np.float32))
    out, _ = m(np.zeros((5, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"dout: expected shape \(5, 2, 4\)"):
        m.backward(np.zeros((5, 2, 3), np.float32))
    with pytest.raises(TypeError, match="dout: expected dtype float32"):
        m.backward(np.zeros((5, 2, 4)))
    with pytest.raises(TypeError, match="dstate"):
        m.backward(out, np.zeros((1, 2, 4), np.float32))
    with pytest.raises(ValueError, match="dc_n"):
        m.backward(out, (None, np.zeros((1, 3, 4), np.float32)))
    dx, (dh0, dc0) = m.backward(None, (np.ones((1, 2, 4), np.float32), None))  # state-only gradient
    assert dx.shape == (5, 2, 3) and dh0.shape == (1, 2, 4) and dc0.shape == (1, 2, 4)


def test_cell_arguments():
    cell = gc.LSTMCell(3, 4)
    with pytest.raises(ValueError, match=r"x: expected shape"):
        cell(np.zeros((2, 5), np.float32))
    with pytest.raises(TypeError, match="hx"):
        cell(np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="hx"):
        cell(np.zeros((2, 3), np.float32), (np.zeros((3, 4), np.float32), np.zeros((2, 4), np.float32)))
    with pytest.raises(ValueError, match="no forward call"):
        gc.GRUCell(3, 4).backward(np.zeros((2, 4), np.float32))
    gru = gc.GRUCell(3, 4)
    gru(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"dh: expected shape \(2, 4\)"):
        gru.backward(np.zeros((4,), np.float32))


def test_linear_arguments():
    lin = gc.Linear(3, 2)
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 3\)"):
        lin(np.zeros((4, 2), np.float32))
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        lin(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="no forward call"):
        gc.Linear(3, 2).backward(np.zeros((4, 2), np.float32))
    lin(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"dout: expected shape \(4, 2\)"):
        lin.backward(np.zeros((4, 3), np.float32))


def test_edge_sizes_run():
    m = gc.LSTM(2, 3, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    out, _ = m(np.ones((1, 1, 2)))         # T = 1, N = 1
    assert out.shape == (1, 1, 6)
    dx, _ = m.backward(np.ones_like(out))
    assert dx.shape == (1, 1, 2) and np.all(np.isfinite(dx))
    out, (h, c) = m(np.ones((3, 0, 2)))    # an empty batch is valid and empty
    assert out.shape == (3, 0, 6) and h.shape == (4, 0, 3)
    dx, _ = m.backward(out)
    assert dx.shape == (3, 0, 2)
