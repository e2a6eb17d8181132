# SPDX-License-Identifier: MIT
"""float64 finite-difference checks of every gradient, and forward checks against reference.py.

No torch here: the original-form GRU (linear_before_reset=False), which torch does not have,
is checked only this way, against the plain NumPy reference.
"""

import itertools

import numpy as np
import pytest

import gatecell as gc
from gatecell import reference
from conftest import CASES, record
from helpers import assert_close, numeric_grad as _numeric_grad, output_state_loss as _loss_fn

CONFIGS = {  # name -> (class, reference kind, kwargs)
    "rnn_tanh": (gc.RNN, "rnn", {"nonlinearity": "tanh"}),
    "rnn_relu": (gc.RNN, "rnn", {"nonlinearity": "relu"}),
    "lstm": (gc.LSTM, "lstm", {}),
    "lstm_proj": (gc.LSTM, "lstm", {"proj_size": 2}),
    "gru": (gc.GRU, "gru", {}),
    "gru_original": (gc.GRU, "gru", {"linear_before_reset": False}),
}


@pytest.mark.parametrize("name,layers,bidir,lengths_on,bf", [
    (name, layers, bidir, lens, bf)
    for name in CONFIGS
    for layers, bidir, lens, bf in [(1, False, False, False), (2, True, True, False), (2, False, True, True),
                                    (1, True, False, True)]])
def test_finite_differences(name, layers, bidir, lengths_on, bf):
    cls, _, kw = CONFIGS[name]
    is_lstm = cls is gc.LSTM
    T, N, I, H = 4, 2, 3, 3
    rng = np.random.default_rng(11)
    m = cls(I, H, num_layers=layers, bidirectional=bidir, batch_first=bf, dtype=np.float64, seed=5, **kw)
    for p in m.parameters().values():  # larger weights: gates away from their linear regime
        p *= 2.0
    D = 2 if bidir else 1
    hout = kw.get("proj_size", 0) or H
    x = rng.standard_normal((N, T, I) if bf else (T, N, I))
    h0 = rng.standard_normal((layers * D, N, hout))
    state = (h0, rng.standard_normal((layers * D, N, H))) if is_lstm else h0
    lengths = np.array([T, 2]) if lengths_on else None
    out, _ = m(x, state, lengths=lengths)
    dy = rng.standard_normal(out.shape)
    dstate = [rng.standard_normal(h0.shape)] + ([rng.standard_normal((layers * D, N, H))] if is_lstm else [])

    m.zero_grad()
    m(x, state, lengths=lengths)
    dx, ds0 = m.backward(dy, tuple(dstate) if is_lstm else dstate[0])
    loss = _loss_fn(m, x, state, lengths, dy, dstate, is_lstm)
    errors = [assert_close("dx", dx, _numeric_grad(loss, x), np.float32)]
    for got, arr in zip(ds0 if is_lstm else [ds0], state if is_lstm else [state]):
        errors.append(assert_close("dstate0", got, _numeric_grad(loss, arr), np.float32))
    grads = m.grads
    for pname, p in m.parameters().items():
        errors.append(assert_close(pname, grads[pname], _numeric_grad(loss, p), np.float32))
    # Central differences with eps=1e-6 are good to ~1e-9; a wrong gradient is off by O(1).
    assert max(errors) < 1e-7
    CASES["finite differences (f64)"] += 1
    record("finite differences (f64)", np.float64, max(errors))


@pytest.mark.parametrize("name,layers,bidir,lengths_on,init,dtype", list(itertools.product(
    CONFIGS, [1, 2, 3], [False, True], [False, True], [False, True], [np.float32, np.float64])))
def test_forward_against_reference(name, layers, bidir, lengths_on, init, dtype):
    cls, kind, kw = CONFIGS[name]
    is_lstm = kind == "lstm"
    T, N, I, H = 5, 3, 4, 5
    rng = np.random.default_rng(layers * 100 + bidir * 10 + lengths_on)
    m = cls(I, H, num_layers=layers, bidirectional=bidir, dtype=dtype, seed=3, **kw)
    D = 2 if bidir else 1
    hout = kw.get("proj_size", 0) or H
    x = rng.standard_normal((T, N, I)).astype(dtype)
    h0 = rng.standard_normal((layers * D, N, hout)).astype(dtype) if init else None
    c0 = rng.standard_normal((layers * D, N, H)).astype(dtype) if init and is_lstm else None
    lengths = np.array([T, 1, 3]) if lengths_on else None
    out, s_n = m.eval()(x, ((h0, c0) if init else None) if is_lstm else h0, lengths=lengths)
    ref = reference.network_forward(kind, m.parameters(), x, h0, c0, lengths, num_layers=layers,
                                    bidirectional=bidir, **kw)
    errors = [assert_close("out", out, ref[0], dtype)]
    for a, b in zip(s_n if is_lstm else [s_n], ref[1:]):
        errors.append(assert_close("state", a, b, dtype))
    CASES["reference forward"] += 1
    record("reference forward", dtype, max(errors))
