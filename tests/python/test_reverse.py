# SPDX-License-Identifier: MIT
"""Reverse-only layers (reverse=True, ONNX direction="reverse").

A reverse layer is, by definition, the forward layer run on every sequence flipped within its
length, with its output flipped back: the whole network (every layer reversed) is flip o
forward network o flip, since the flips between layers cancel. Forward outputs, final states
and every gradient are checked against that identity, against torch by flipping, and with
float64 finite differences.
"""

import itertools

import numpy as np
import pytest

import gatecell as gc
from conftest import CASES, record
from helpers import assert_close, central_difference

CONFIGS = {  # name -> (class, kwargs)
    "rnn_tanh": (gc.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (gc.RNN, {"nonlinearity": "relu"}),
    "lstm": (gc.LSTM, {}),
    "lstm_proj": (gc.LSTM, {"proj_size": 2}),
    "gru": (gc.GRU, {}),
    "gru_original": (gc.GRU, {"linear_before_reset": False}),
    # The cell variants run backwards the same way (smooth functions: finite differences apply).
    "lstm_variants": (gc.LSTM, {"peepholes": True, "input_forget": True, "clip": 3.0,
                                "activations": ["Sigmoid", "Softsign", ("ScaledTanh", 0.8, 1.2)]}),
    "gru_variants": (gc.GRU, {"linear_before_reset": False, "clip": 3.0, "activations": ["Sigmoid", "Softplus"]}),
}


def flip(a, lengths, batch_first):
    """Each sequence's first lengths[n] steps in reverse order; the steps after stay in place."""
    a = np.asarray(a)
    T, N = (a.shape[1], a.shape[0]) if batch_first else (a.shape[0], a.shape[1])
    lens = np.full(N, T) if lengths is None else np.asarray(lengths)
    out = a.copy()
    for n in range(N):
        k = lens[n]
        if batch_first:
            out[n, :k] = a[n, :k][::-1]
        else:
            out[:k, n] = a[:k, n][::-1]
    return out


def _pair(name, layers, batch_first, dtype, seed=4):
    """(reverse layer, forward layer) with the same weights."""
    cls, kw = CONFIGS[name]
    rev = cls(3, 4, num_layers=layers, batch_first=batch_first, dtype=dtype, seed=seed, reverse=True, **kw)
    fwd = cls(3, 4, num_layers=layers, batch_first=batch_first, dtype=dtype, seed=seed + 1, **kw)
    fwd.load_state_dict(rev.state_dict())
    assert sorted(rev.state_dict()) == sorted(fwd.state_dict())  # the same names: *_l{k}, no _reverse
    return rev, fwd


def _inputs(m, rng, T, N, lengths_on, init):
    is_lstm = isinstance(m, gc.LSTM)
    hout = m.proj_size or m.hidden_size
    shape = (N, T, m.input_size) if m.batch_first else (T, N, m.input_size)
    x = rng.standard_normal(shape).astype(m.dtype)
    state = None
    if init:
        h0 = rng.standard_normal((m.num_layers, N, hout)).astype(m.dtype)
        state = (h0, rng.standard_normal((m.num_layers, N, m.hidden_size)).astype(m.dtype)) if is_lstm else h0
    lengths = rng.integers(1, T + 1, size=N) if lengths_on else None
    if lengths_on:
        lengths[0] = T
    return x, state, lengths


def _states(s, is_lstm):
    return list(s) if is_lstm else [s]


@pytest.mark.parametrize("name,layers,bf,lengths_on,init,dtype", list(itertools.product(
    CONFIGS, [1, 2], [False, True], [False, True], [False, True], [np.float32, np.float64])))
def test_equals_forward_layer_on_flipped_sequences(name, layers, bf, lengths_on, init, dtype):
    rng = np.random.default_rng(layers * 1000 + bf * 100 + lengths_on * 10 + init)
    rev, fwd = _pair(name, layers, bf, dtype)
    is_lstm = isinstance(rev, gc.LSTM)
    T, N = 5, 3
    x, state, lengths = _inputs(rev, rng, T, N, lengths_on, init)

    out_r, s_r = rev(x, state, lengths=lengths)
    out_f, s_f = fwd(flip(x, lengths, bf), state, lengths=lengths)
    errors = [assert_close("out", out_r, flip(out_f, lengths, bf), dtype)]
    for a, b in zip(_states(s_r, is_lstm), _states(s_f, is_lstm)):
        errors.append(assert_close("state", a, b, dtype))

    dy = rng.standard_normal(out_r.shape).astype(dtype)
    ds = [rng.standard_normal(s.shape).astype(dtype) for s in _states(s_r, is_lstm)]
    dstate = tuple(ds) if is_lstm else ds[0]
    rev.zero_grad()
    fwd.zero_grad()
    dx_r, ds0_r = rev.backward(dy, dstate)
    dx_f, ds0_f = fwd.backward(flip(dy, lengths, bf), dstate)
    errors.append(assert_close("dx", dx_r, flip(dx_f, lengths, bf), dtype))
    for a, b in zip(_states(ds0_r, is_lstm), _states(ds0_f, is_lstm)):
        errors.append(assert_close("dstate0", a, b, dtype))
    for k, g in rev.grads.items():
        errors.append(assert_close(k, g, fwd.grads[k], dtype))
    CASES["reverse vs flipped forward"] += 1
    record("reverse vs flipped forward", dtype, max(errors))


@pytest.mark.parametrize("name", CONFIGS)
def test_finite_differences(name):
    rng = np.random.default_rng(7)
    cls, kw = CONFIGS[name]
    m = cls(3, 3, num_layers=2, dtype=np.float64, seed=2, reverse=True, **kw)
    for p in m.parameters().values():  # larger weights: gates away from their linear regime
        p *= 2.0
    is_lstm = isinstance(m, gc.LSTM)
    x, state, _ = _inputs(m, rng, 4, 2, False, True)
    lengths = np.array([4, 2])
    out, s_n = m(x, state, lengths=lengths)
    dy = rng.standard_normal(out.shape)
    ds = [rng.standard_normal(s.shape) for s in _states(s_n, is_lstm)]

    def loss():
        o, s = m(x, state, lengths=lengths)
        return float(np.sum(o * dy)) + sum(float(np.sum(a * b)) for a, b in zip(_states(s, is_lstm), ds))

    def numeric(arr):
        g = np.zeros_like(arr)
        for k in range(arr.size):
            g.reshape(-1)[k] = central_difference(loss, arr.reshape(-1), k)
        return g

    m.zero_grad()
    m(x, state, lengths=lengths)
    dx, ds0 = m.backward(dy, tuple(ds) if is_lstm else ds[0])
    errors = [assert_close("dx", dx, numeric(x), np.float32)]
    for got, arr in zip(_states(ds0, is_lstm), _states(state, is_lstm)):
        errors.append(assert_close("dstate0", got, numeric(arr), np.float32))
    grads = m.grads
    for k, p in m.parameters().items():
        errors.append(assert_close(k, grads[k], numeric(p), np.float32))
    assert max(errors) < 1e-7  # central differences are good to ~1e-9; a wrong gradient is off by O(1)
    CASES["reverse finite differences (f64)"] += 1
    record("reverse finite differences (f64)", np.float64, max(errors))


@pytest.mark.parametrize("name,dtype", list(itertools.product(["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru"],
                                                              [np.float32, np.float64])))
def test_torch_parity_by_flipping(name, dtype):
    torch = pytest.importorskip("torch")
    cls, kw = CONFIGS[name]
    m = cls(3, 4, num_layers=2, dtype=dtype, seed=9, reverse=True, **kw)
    tkw = {"nonlinearity": kw["nonlinearity"]} if "nonlinearity" in kw else dict(kw)
    twin = getattr(torch.nn, cls.__name__)(3, 4, num_layers=2, dtype=getattr(torch, np.dtype(dtype).name), **tkw)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 2, 3)).astype(dtype)
    out, s_n = m(x)
    xt = torch.from_numpy(x[::-1].copy()).requires_grad_(True)
    out_t, s_t = twin(xt)
    errors = [assert_close("out", out, out_t.detach().numpy()[::-1], dtype)]
    is_lstm = cls is gc.LSTM
    for a, b in zip(_states(s_n, is_lstm), _states(s_t, is_lstm)):
        errors.append(assert_close("state", a, b.detach().numpy(), dtype))
    dy = rng.standard_normal(out.shape).astype(dtype)
    (out_t * torch.from_numpy(dy[::-1].copy())).sum().backward()
    m.zero_grad()
    dx, _ = m.backward(dy)
    errors.append(assert_close("dx", dx, xt.grad.numpy()[::-1], dtype))
    for k, p in twin.named_parameters():
        errors.append(assert_close(k, m.grads[k], p.grad.numpy(), dtype))
    CASES["reverse torch parity"] += 1
    record("reverse torch parity", dtype, max(errors))


def test_reverse_differs_from_forward():
    # The identity above would also hold for a layer that ignores `reverse` only if flipping did nothing.
    rev, fwd = _pair("lstm", 1, False, np.float64)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    assert not np.allclose(rev.eval()(x)[0], fwd.eval()(x)[0])


def test_config_round_trip_and_repr():
    for cls in (gc.RNN, gc.LSTM, gc.GRU):
        m = cls(3, 4, num_layers=2, reverse=True, seed=1)
        cfg = m.config()
        assert cfg["reverse"] is True
        twin = gc.module_from_config(cfg)
        assert twin.reverse and twin.config() == cfg
        assert "reverse=True" in repr(m)
        assert "reverse" not in cls(3, 4).config()  # torch-form configs stay as they were


def test_checkpoint_round_trip(tmp_path):
    m = gc.GRU(3, 4, num_layers=2, reverse=True, dtype=np.float64, seed=1)
    gc.save(tmp_path / "m.safetensors", m)
    back = gc.load(tmp_path / "m.safetensors")
    x = np.random.default_rng(1).standard_normal((5, 2, 3))
    assert back.reverse and np.array_equal(back.eval()(x)[0], m.eval()(x)[0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="reverse"):
        gc.LSTM(3, 4, bidirectional=True, reverse=True)
    with pytest.raises(TypeError, match="reverse"):
        gc.GRU(3, 4, reverse=1)
    cfg = gc._core.NetworkConfig()
    cfg.input_size, cfg.hidden_size, cfg.bidirectional, cfg.reverse = 3, 4, True, True
    with pytest.raises(ValueError, match="reverse"):
        cfg.validate()


def test_to_torch_refuses_reverse():
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match="reverse"):
        gc.RNN(3, 4, reverse=True).to_torch()
