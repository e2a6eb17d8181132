# SPDX-License-Identifier: MIT
"""The layer protocol: parameters, grads, modes, state dicts, dropout, zero-copy, Linear."""

import numpy as np
import pytest

import gatecell as gc

LAYERS = [
    lambda **kw: gc.RNN(4, 5, num_layers=2, **kw),
    lambda **kw: gc.LSTM(4, 5, num_layers=2, proj_size=3, **kw),
    lambda **kw: gc.GRU(4, 5, num_layers=2, bidirectional=True, **kw),
    lambda **kw: gc.GRU(4, 5, linear_before_reset=False, **kw),
]


def _relu_passthrough(p, seed):
    """A 2-layer relu RNN whose second layer copies its (dropped-out) input: out = mask * relu(W x)."""
    m = gc.RNN(6, 6, num_layers=2, nonlinearity="relu", bias=False, dropout=p, dtype=np.float64, seed=seed)
    params = m.parameters()
    params["weight_hh_l0"][...] = 0
    params["weight_hh_l1"][...] = 0
    params["weight_ih_l1"][...] = np.eye(6)
    return m


@pytest.mark.parametrize("make", LAYERS)
def test_parameters_are_live_and_named_like_torch(make):
    m = make(seed=0)
    params, grads = m.parameters(), m.grads
    assert list(params) == list(grads)
    assert all(params[k].shape == grads[k].shape and params[k].dtype == np.float32 for k in params)
    assert all(k.endswith(("_l0", "_l1", "_reverse")) for k in params)
    x = np.random.default_rng(0).standard_normal((3, 2, 4)).astype(np.float32)
    out1, _ = m(x)
    params[next(iter(params))][...] += 0.5   # in-place updates change the layer
    out2, _ = m(x)
    assert not np.allclose(out1, out2)
    m.backward(np.ones_like(out2))
    assert any(np.any(g != 0) for g in m.grads.values())
    m.zero_grad()
    assert all(not np.any(g) for g in m.grads.values())


def test_seeded_init_matches_torch_bounds_and_is_reproducible():
    a, b, c = gc.LSTM(3, 16, seed=1), gc.LSTM(3, 16, seed=1), gc.LSTM(3, 16, seed=2)
    for k in a.parameters():
        np.testing.assert_array_equal(a.parameters()[k], b.parameters()[k])
        assert not np.array_equal(a.parameters()[k], c.parameters()[k])
        assert np.abs(a.parameters()[k]).max() <= 1 / 4  # 1/sqrt(hidden_size)


def test_gradients_accumulate_across_backward_calls():
    m = gc.GRU(3, 4, dtype=np.float64, seed=0)
    x = np.ones((2, 1, 3))
    out, _ = m(x)
    m.backward(np.ones_like(out))
    once = {k: v.copy() for k, v in m.grads.items()}
    m.backward(np.ones_like(out))
    for k, v in m.grads.items():
        np.testing.assert_allclose(v, 2 * once[k])


def test_state_dict_round_trip_and_copy_semantics():
    a, b = gc.LSTM(3, 4, num_layers=2, seed=0), gc.LSTM(3, 4, num_layers=2, seed=1)
    sd = a.state_dict()
    sd["weight_ih_l0"][...] = 7  # a copy: the layer is unchanged
    assert not np.any(a.parameters()["weight_ih_l0"] == 7)
    live = b.parameters()["weight_hh_l1"]
    b.load_state_dict(a.state_dict())
    assert b.parameters()["weight_hh_l1"] is live  # loaded in place
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(a(x)[0], b(x)[0])
    b.load_state_dict({k: v.astype(np.float64) for k, v in a.state_dict().items()})  # cast like torch


def test_load_state_dict_errors():
    m = gc.GRU(3, 4)
    good = m.state_dict()
    with pytest.raises(ValueError, match="missing keys.*weight_ih_l0"):
        m.load_state_dict({k: v for k, v in good.items() if k != "weight_ih_l0"})
    with pytest.raises(ValueError, match="unexpected keys.*weight_ih_l1"):
        m.load_state_dict({**good, "weight_ih_l1": good["weight_ih_l0"]})
    with pytest.raises(ValueError, match=r"weight_hh_l0.*expected shape \(12, 4\), got \(12, 5\)"):
        m.load_state_dict({**good, "weight_hh_l0": np.zeros((12, 5))})
    with pytest.raises(TypeError, match="bias_ih_l0"):
        m.load_state_dict({**good, "bias_ih_l0": np.array(["a"] * 12)})
    with pytest.raises(TypeError):
        m.load_state_dict([1, 2])
    before = m.parameters()["weight_ih_l0"].copy()
    with pytest.raises(ValueError):  # nothing is written when any entry is bad
        m.load_state_dict({**{k: v + 1 for k, v in good.items()}, "bias_hh_l0": np.zeros(3)})
    np.testing.assert_array_equal(m.parameters()["weight_ih_l0"], before)


def test_load_state_dict_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    t = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2)
    m = gc.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2)
    m.load_state_dict(t.state_dict())
    for k, v in t.state_dict().items():
        np.testing.assert_array_equal(m.parameters()[k], v.numpy())


def test_eval_saves_nothing_and_backward_needs_a_training_forward():
    m = gc.LSTM(3, 4).eval()
    m(np.zeros((2, 1, 3), np.float32))
    with pytest.raises(ValueError, match="training mode"):
        m.backward(np.zeros((2, 1, 4), np.float32))
    m.train()
    out, _ = m(np.zeros((2, 1, 3), np.float32))
    m.eval()(np.zeros((5, 1, 3), np.float32))  # an eval call does not replace the saved pass
    dx, _ = m.backward(np.ones_like(out))
    assert dx.shape == (2, 1, 3)


def test_zero_copy_input_and_contiguity():
    m = gc.GRU(3, 4, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    out, _ = m(x)
    assert m._saved["x"] is x  # the C-contiguous input of the layer's dtype crosses uncopied
    out_nc, _ = m(np.asfortranarray(x))  # other layouts are made contiguous, same result
    np.testing.assert_array_equal(out, out_nc)
    assert out.flags.c_contiguous and out.flags.owndata


def test_binding_refuses_stray_dtype_and_layout():
    cfg = gc.GRU(3, 4)._config
    w = gc.GRU(3, 4)._weights(gc.GRU(3, 4)._params)
    with pytest.raises(TypeError, match="float32 or float64"):
        gc._core.network_forward(cfg, w, np.zeros((2, 1, 3), np.int32))
    with pytest.raises(TypeError, match="expected dtype float64"):
        gc._core.network_forward(cfg, w, np.zeros((2, 1, 3), np.float64))
    with pytest.raises(TypeError, match="C-contiguous"):
        gc._core.network_forward(cfg, w, np.zeros((2, 1, 6), np.float32)[:, :, ::2])
    with pytest.raises(ValueError, match=r"x: expected shape \(2, 1, 3\), got \(2, 1, 4\)"):
        gc._core.network_forward(cfg, w, np.zeros((2, 1, 4), np.float32))
    with pytest.raises(ValueError, match="weights: expected 1"):
        gc._core.network_forward(cfg, w + w, np.zeros((2, 1, 3), np.float32))


def test_dropout_off_in_eval_and_scaled_like_torch_in_training():
    p = 0.4
    m = _relu_passthrough(p, seed=3)
    x = np.abs(np.random.default_rng(0).standard_normal((50, 40, 6)))
    clean, _ = m.eval()(x)
    no_drop = gc.RNN(6, 6, num_layers=2, nonlinearity="relu", bias=False, dtype=np.float64)
    no_drop.load_state_dict(m.state_dict())
    np.testing.assert_array_equal(clean, no_drop.eval()(x)[0])
    dropped, _ = m.train()(x)
    kept = clean > 0
    ratio = dropped[kept] / clean[kept]
    zero = ratio == 0
    # Inverted dropout, as torch: kept units are scaled by exactly 1/(1-p), the rest are 0.
    np.testing.assert_allclose(ratio[~zero], 1 / (1 - p), rtol=1e-12)
    assert abs(zero.mean() - p) < 0.02
    again, _ = m(x)
    assert not np.array_equal(again, dropped)  # a fresh mask each call


def test_dropout_is_seeded_and_reproducible():
    x = np.abs(np.random.default_rng(0).standard_normal((6, 3, 6)))
    a, b, c = (_relu_passthrough(0.5, seed=s) for s in (9, 9, 10))
    ya, yb, yc = a(x)[0], b(x)[0], c(x)[0]
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(ya, yc)


def test_dropout_backward_uses_the_forward_mask():
    m = gc.LSTM(3, 4, num_layers=3, dropout=0.3, dtype=np.float64, seed=4)
    x = np.random.default_rng(1).standard_normal((4, 2, 3))
    dy = np.random.default_rng(2).standard_normal((4, 2, 4))
    rng_state = m._rng.bit_generator.state

    def loss():
        m._rng.bit_generator.state = rng_state  # the same mask on every call
        return float(np.sum(m(x)[0] * dy))
    loss()
    dx, _ = m.backward(dy)
    eps, num = 1e-6, np.zeros_like(x)
    for k in range(x.size):
        old = x.flat[k]
        x.flat[k] = old + eps
        up = loss()
        x.flat[k] = old - eps
        num.flat[k] = (up - loss()) / (2 * eps)
        x.flat[k] = old
    np.testing.assert_allclose(dx, num, atol=1e-8)


def test_dropout_with_one_layer_warns():
    with pytest.warns(UserWarning, match="num_layers=1"):
        gc.LSTM(3, 4, dropout=0.5)


def test_linear_forward_backward():
    rng = np.random.default_rng(0)
    lin = gc.Linear(5, 3, dtype=np.float64, seed=0)
    x = rng.standard_normal((4, 2, 5))
    y = lin(x)
    np.testing.assert_allclose(y, x @ lin.parameters()["weight"].T + lin.parameters()["bias"])
    dy = rng.standard_normal(y.shape)
    dx = lin.backward(dy)
    np.testing.assert_allclose(dx, dy @ lin.parameters()["weight"])
    np.testing.assert_allclose(lin.grads["weight"], dy.reshape(-1, 3).T @ x.reshape(-1, 5))
    np.testing.assert_allclose(lin.grads["bias"], dy.reshape(-1, 3).sum(0))


def test_linear_against_torch():
    torch = pytest.importorskip("torch")
    t = torch.nn.Linear(5, 3).double()
    lin = gc.Linear(5, 3, dtype=np.float64)
    lin.load_state_dict(t.state_dict())
    x = np.random.default_rng(0).standard_normal((7, 5))
    xt = torch.tensor(x, requires_grad=True)
    yt = t(xt)
    yt.sum().backward()
    np.testing.assert_allclose(lin(x), yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(lin.backward(np.ones((7, 3))), xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(lin.grads["weight"], t.weight.grad.numpy(), rtol=1e-12)


def test_repr_and_version():
    assert "LSTM(3, 4, num_layers=2" in repr(gc.LSTM(3, 4, num_layers=2))
    assert gc.__version__ == gc._core.__version__


@pytest.mark.parametrize("module", [
    gc.RNN(3, 4, num_layers=2, nonlinearity="relu", bias=False), gc.LSTM(3, 5, proj_size=2, batch_first=True),
    gc.GRU(3, 4, bidirectional=True, linear_before_reset=False, dtype=np.float64), gc.RNNCell(3, 4),
    gc.LSTMCell(3, 4, bias=False), gc.GRUCell(3, 4, linear_before_reset=False), gc.Linear(3, 2, bias=False)])
def test_config_rebuilds_the_module(module):
    import json
    cfg = json.loads(json.dumps(module.config()))
    twin = gc.module_from_config(cfg)
    assert type(twin) is type(module) and twin.config() == module.config()
    assert {k: v.shape for k, v in twin.parameters().items()} == {k: v.shape for k, v in module.parameters().items()}


def test_module_from_config_errors():
    with pytest.raises(ValueError, match="unknown module type 'Conv1d'"):
        gc.module_from_config({"type": "Conv1d"})
    with pytest.raises(ValueError, match="'type'"):
        gc.module_from_config({"input_size": 3})


@pytest.mark.parametrize("make", [
    lambda: gc.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, seed=1),
    lambda: gc.GRU(3, 4, activations=["Softsign", "Tanh"], clip=2.0, linear_before_reset=False, seed=2),
    lambda: gc.RNN(3, 4, batch_first=True, dtype=np.float64, seed=3),
    lambda: gc.LSTMCell(3, 4, seed=4),
    lambda: gc.Linear(3, 2, seed=5),
])
def test_deepcopy_and_pickle_give_independent_equal_modules(make):
    """copy.deepcopy and pickle keep parameters, gradients, mode and settings (not the activations
    saved for backward): the copies compute the same outputs, train on their own, and the
    unpickled arrays (dtype objects of their own) pass the kernels' dtype checks."""
    import copy
    import pickle

    m = make()
    rng = np.random.default_rng(0)
    cell_or_linear = isinstance(m, (gc.Linear, gc.LSTMCell))
    x = rng.standard_normal((2, 3) if cell_or_linear else (5, 2, 3)).astype(m.dtype)
    y = m(x)
    first = y[0] if isinstance(y, tuple) else y
    grad = (np.ones_like(first), None) if isinstance(m, gc.LSTMCell) else np.ones_like(first)
    for other in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert other.training == m.training and repr(other) == repr(m)
        for name, p in m.parameters().items():
            assert other.parameters()[name] is not p
            np.testing.assert_array_equal(other.parameters()[name], p)
        with pytest.raises(ValueError, match="no forward call"):
            other.backward(grad)
        out = other(x)
        np.testing.assert_array_equal(out[0] if isinstance(out, tuple) else out, first)
        other.backward(grad)
        assert any(np.any(g != 0) for g in other.grads.values())
    assert all(not np.any(g) for g in m.grads.values())  # the copies' gradients are their own
