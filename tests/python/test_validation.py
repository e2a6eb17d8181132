# SPDX-License-Identifier: MIT
"""The extension's own boundary (gatecell._core called directly) and absurd sizes: every malformed
argument gives ValueError, TypeError or MemoryError naming it, never a crash or a silent overflow."""

import numpy as np
import pytest

import gatecell as gc
from gatecell import _core


def _net(dtype=np.float32, **kw):
    m = gc.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, dtype=dtype, seed=0, **kw)
    return m, m._weights(m._params), m._weights(m._grads)


def _config(**fields):
    c = _core.NetworkConfig()
    c.kind, c.input_size, c.hidden_size = _core.CellKind.lstm, 3, 4
    for k, v in fields.items():
        setattr(c, k, v)
    return c


X = np.zeros((5, 2, 3), np.float32)


@pytest.mark.parametrize("weights,exc,match", [
    (5, TypeError, "weights"),
    (None, TypeError, "weights"),
    ([1, 2, 3, 4], TypeError, r"weights\[0\]: expected a tuple"),
    (["abcde"] * 4, TypeError, r"weights\[0\]: expected a tuple.*str"),
    ([{}] * 4, TypeError, r"weights\[0\]: expected a tuple.*dict"),
    ("abcd", TypeError, r"weights\[0\]"),
    ([[None] * 5] * 4, TypeError, "weights.weight_ih_l0: missing"),
    ([[np.zeros(3, np.float32)] * 5] * 4, ValueError, "weights.weight_ih_l0: expected shape"),
])
def test_forward_weights_malformed(weights, exc, match):
    m, _, _ = _net()
    with pytest.raises(exc, match=match):
        _core.network_forward(m._config, weights, X)


def test_forward_weights_nesting():
    m, w, _ = _net()
    with pytest.raises(ValueError, match="expected 4 .* entries, got 20"):
        _core.network_forward(m._config, [a for e in w for a in e], X)      # flattened
    with pytest.raises(ValueError, match="each entry must be"):
        _core.network_forward(m._config, [[e] for e in w], X)               # one level too deep
    with pytest.raises(ValueError, match="expected 4 .* entries, got 3"):
        _core.network_forward(m._config, w[:3], X)
    wrong = [tuple(np.zeros((1, 1), np.float32) if a is None else a for a in e) for e in w]
    gru = gc.GRU(3, 4)
    with pytest.raises(ValueError, match="weights.*bias_ih_l0: expected None|expected shape"):
        _core.network_forward(gru._config, [wrong[0]], X)
    bad_dtype = [tuple(None if a is None else a.astype(np.float64) for a in e) for e in w]
    with pytest.raises(TypeError, match="weights.weight_ih_l0: expected dtype float32, got float64"):
        _core.network_forward(m._config, bad_dtype, X)
    strided = [tuple(None if a is None else np.repeat(a, 2, axis=-1)[..., ::2] for a in e) for e in w]
    with pytest.raises(TypeError, match="C-contiguous"):
        _core.network_forward(m._config, strided, X)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"x": None}, TypeError, None),
    ({"x": [[[0.0, 0.0, 0.0]]]}, TypeError, None),
    ({"x": np.zeros((5, 2, 3), np.int32)}, TypeError, "x: expected dtype float32 or float64, got int32"),
    ({"x": np.zeros((5, 2), np.float32)}, ValueError, "x: expected 3 dimensions"),
    ({"x": np.zeros((5, 2, 6), np.float32)[:, :, ::2]}, TypeError, "x: expected a C-contiguous"),
    ({"lengths": np.array([1.0, 2.0])}, TypeError, "lengths: expected dtype int64"),
    ({"lengths": np.array([1, 2], np.int32)}, TypeError, "lengths: expected dtype int64"),
    ({"lengths": np.array([1, 99])}, ValueError, r"lengths\[1\] must be in \[0, 5\], got 99"),
    ({"lengths": np.array([-1, 2])}, ValueError, r"lengths\[0\] must be in \[0, 5\], got -1"),
    ({"lengths": np.array([1, 2, 3])}, ValueError, r"lengths: expected shape \(2,\)"),
    ({"h0": np.zeros((4, 2, 4), np.float32)}, ValueError, r"h0: expected shape \(4, 2, 2\)"),
    ({"h0": np.zeros((4, 2, 2))}, TypeError, "h0: expected dtype float32"),
    ({"c0": "zeros"}, TypeError, "c0: expected a numpy.ndarray, got str"),
    ({"seed": -1}, TypeError, None),
    ({"seed": 2**70}, TypeError, None),
    ({"batch_first": "yes"}, TypeError, None),
])
def test_forward_arguments_malformed(kwargs, exc, match):
    m, w, _ = _net()
    args = {"x": X, **kwargs}
    with pytest.raises(exc, match=match):
        _core.network_forward(m._config, w, **args)


def test_forward_config_malformed():
    _, w, _ = _net()
    with pytest.raises(TypeError):
        _core.network_forward(None, w, X)
    with pytest.raises(TypeError):
        _config(kind=7)
    with pytest.raises(TypeError):
        _config(input_size=2**64)  # not an int64: refused by the binding
    for fields, match in [({"input_size": -1}, "input_size"), ({"hidden_size": 0}, "hidden_size"),
                          ({"num_layers": 0}, "num_layers"), ({"dropout": float("nan")}, "dropout"),
                          ({"proj_size": 4}, "proj_size"), ({"proj_size": -2}, "proj_size")]:
        with pytest.raises(ValueError, match=match):
            _core.network_forward(_config(**fields), w, X)


@pytest.mark.parametrize("fields", [{"hidden_size": 2**62}, {"hidden_size": 2**40}, {"input_size": 2**62},
                                    {"hidden_size": 2**31, "input_size": 2**33}, {"num_layers": 2**62}])
def test_config_overflow_is_value_error(fields):
    """Sizes whose weight element counts leave int64 are refused, not wrapped round to small buffers."""
    c = _config(**fields)
    with pytest.raises(ValueError, match="overflows 64-bit|entries"):
        c.validate() if "num_layers" not in fields else _core.network_forward(c, [], X)


def test_backward_cache_malformed():
    m, w, g = _net()
    y, _, _, cache = _core.network_forward(m._config, w, X, training=True)
    for bad in (None, 3, "cache", m._config):
        with pytest.raises(TypeError, match="cache: expected the cache returned by network_forward"):
            _core.network_backward(bad, w, g, X, y)
    with pytest.raises(TypeError):
        _core.NetworkCacheF32()  # only network_forward makes caches
    m64, w64, g64 = _net(np.float64)
    with pytest.raises(TypeError, match="weights.weight_ih_l0: expected dtype float32, got float64"):
        _core.network_backward(cache, w64, g64, X.astype(np.float64), y.astype(np.float64))
    y64, _, _, cache64 = _core.network_forward(m64._config, w64, X.astype(np.float64), training=True)
    with pytest.raises(TypeError, match="expected dtype float64, got float32"):
        _core.network_backward(cache64, w, g, X, y)
    other = gc.GRU(3, 4)  # a cache from another network: its weights do not fit the cache's config
    with pytest.raises(ValueError, match="weights: expected 4"):
        _core.network_backward(cache, other._weights(other._params), other._weights(other._grads), X, y)
    same_shape = gc.GRU(3, 4, num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match="weights.weight_ih_l0: expected shape"):
        _core.network_backward(cache, same_shape._weights(same_shape._params),
                               same_shape._weights(same_shape._grads), X, y)
    with pytest.raises(ValueError, match=r"x: expected shape \(5, 2, 3\), got \(4, 2, 3\)"):
        _core.network_backward(cache, w, g, X[:4], y)
    with pytest.raises(ValueError, match=r"dout: expected shape \(5, 2, 4\)"):
        _core.network_backward(cache, w, g, X, y[:1])
    with pytest.raises(ValueError, match="dc_n"):
        _core.network_backward(cache, w, g, X, y, None, np.zeros((4, 2, 2), np.float32))
    _, _, _, none_cache = _core.network_forward(m._config, w, X, training=False)
    assert none_cache is None  # inference keeps nothing to differentiate


def test_backward_grads_must_be_writeable():
    m, w, g = _net()
    y, _, _, cache = _core.network_forward(m._config, w, X, training=True)
    frozen = [tuple(None if a is None else a.copy() for a in e) for e in g]
    for e in frozen:
        for a in e:
            if a is not None:
                a.flags.writeable = False
    with pytest.raises(TypeError, match="grads.weight_ih_l0: expected a writeable array"):
        _core.network_backward(cache, w, frozen, X, y)
    before = [None if a is None else a.copy() for e in g for a in e]
    _core.network_backward(cache, w, g, X, y)  # the module's own grads are writeable and change
    assert any(not np.array_equal(b, a) for b, a in zip(before, [a for e in g for a in e]) if a is not None)


@pytest.mark.parametrize("make,exc,match", [
    (lambda: gc.LSTM(3, 2**62), ValueError, "overflows 64-bit"),
    (lambda: gc.LSTM(3, 2**64), ValueError, r"hidden_size: expected an int <= 9223372036854775807"),
    (lambda: gc.GRU(2**64, 3), ValueError, "input_size"),
    (lambda: gc.LSTM(3, 2**40), ValueError, "overflows 64-bit"),
    (lambda: gc.LSTM(2**40, 3), MemoryError, None),
    (lambda: gc.RNN(3, 3, num_layers=10**9), MemoryError, None),
    (lambda: gc.RNN(2**33, 2**33), (MemoryError, ValueError), None),
    (lambda: gc.Linear(2**40, 2**40), (MemoryError, ValueError), None),
    (lambda: gc.Linear(2**64, 2), ValueError, "in_features"),
    (lambda: gc.GRUCell(2**38, 4), MemoryError, None),
])
def test_absurd_sizes(make, exc, match):
    """Sizes nobody can allocate fail at once with MemoryError or ValueError (not after minutes, not a crash)."""
    with pytest.raises(exc, match=match):
        make()



@pytest.mark.parametrize("make", [lambda: gc.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2),
                                  lambda: gc.GRU(3, 4, num_layers=2, linear_before_reset=False),
                                  lambda: gc.RNN(3, 4, bidirectional=True)])
@pytest.mark.parametrize("shape", [(0, 2, 3), (5, 0, 3), (0, 0, 3)])
@pytest.mark.parametrize("batch_first", [False, True])
def test_core_empty_sequences(make, shape, batch_first):
    """T = 0 or N = 0 (which the layers refuse or pass through) is valid for the core, training included."""
    m = make()
    w, g = m._weights(m._params), m._weights(m._grads)
    x = np.zeros(shape, np.float32)
    lengths = np.zeros(shape[0 if batch_first else 1], np.int64)
    y, h_n, _, cache = _core.network_forward(m._config, w, x, lengths, batch_first=batch_first, training=True)
    assert y.shape == shape[:2] + (m.num_directions * (m.proj_size or m.hidden_size),)
    assert np.all(h_n == 0)  # no step ran: the state is h0 (zeros)
    dx, dh0, _ = _core.network_backward(cache, w, g, x, y)
    assert dx.shape == shape and np.all(dh0 == 0)
