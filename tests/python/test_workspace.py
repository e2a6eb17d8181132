# SPDX-License-Identifier: MIT
"""Training buffers kept between calls: a cache refilled by network_forward (and the work buffers
backward keeps in it) gives bitwise the results of a new one, whatever came before it (longer or
shorter sequences, another batch, lengths or none, dropout or none, recorded gradients or none,
another cell, layout or dtype), and a layer refills its previous cache only when nobody else holds it."""

import copy

import numpy as np
import pytest

import gatecell as gc
from gatecell import _core
from gatecell.introspect import Probe

LAYERS = {"rnn": gc.RNN, "lstm": gc.LSTM, "gru": gc.GRU}

# Cells and shapes that fill different cache buffers (m, hn, rh, pre, masks, reverse directions).
NETS = [
    ("lstm", dict(num_layers=2, bidirectional=True, proj_size=3, dropout=0.4)),
    ("gru", dict(num_layers=3, linear_before_reset=False)),
    ("lstm", dict(num_layers=1)),
    ("rnn", dict(num_layers=2, bidirectional=True, dropout=0.5, nonlinearity="relu")),
    ("gru", dict(num_layers=2, bidirectional=True)),
    ("lstm", dict(num_layers=3, proj_size=2, peepholes=True, clip=1.5)),
    ("gru", dict(num_layers=1, activations=["HardSigmoid", "Softsign"], reverse=True)),
    ("rnn", dict(num_layers=1, activations=["Elu"])),
    ("lstm", dict(num_layers=2, input_forget=True, bidirectional=True, dropout=0.2)),
]
INPUT = 3


def _layer(kind, kw, dtype, seed):
    return LAYERS[kind](INPUT, 5, dtype=dtype, seed=seed, **kw)


def _call(rng, m, steps, batch, batch_first, with_lengths, with_state):
    """Random inputs of one forward + backward through _core for layer m."""
    dt = m.dtype
    x = rng.standard_normal((batch, steps, INPUT) if batch_first else (steps, batch, INPUT)).astype(dt)
    lengths = rng.integers(0, steps + 1, size=batch).astype(np.int64) if with_lengths else None
    h_shape, c_shape = m._state_shapes(batch)
    h0 = rng.standard_normal(h_shape).astype(dt) if with_state else None
    c0 = rng.standard_normal(c_shape).astype(dt) if with_state and m._kind == "lstm" else None
    width = m.num_directions * (m.proj_size or m.hidden_size)
    dy = rng.standard_normal((batch, steps, width) if batch_first else (steps, batch, width)).astype(dt)
    dh_n = rng.standard_normal(h_shape).astype(dt)
    dc_n = rng.standard_normal(c_shape).astype(dt) if m._kind == "lstm" else None
    return dict(x=x, lengths=lengths, h0=h0, c0=c0, dy=dy, dh_n=dh_n, dc_n=dc_n,
                seed=int(rng.integers(0, 2**63)))


def _run(m, batch_first, a, cache, record):
    """Forward (refilling `cache` if given) and backward; returns every result and the cache's contents."""
    y, h_n, c_n, out_cache = _core.network_forward(m._config, m._weights(m._params), a["x"], a["lengths"], a["h0"],
                                                   a["c0"], batch_first, True, a["seed"], cache)
    if cache is not None:
        assert out_cache is cache
    before = _contents(m, out_cache)
    out_cache.record_grads = record
    grads = [tuple(None if g is None else np.zeros_like(g) for g in entry) for entry in m._weights(m._grads)]
    dx, dh0, dc0 = _core.network_backward(out_cache, m._weights(m._params), grads, a["x"], a["dy"], a["dh_n"],
                                          a["dc_n"])
    flat = [v for entry in grads for v in entry if v is not None]
    return [y, h_n, c_n, dx, dh0, dc0] + flat, before, _contents(m, out_cache), out_cache


def _contents(m, cache):
    out = {"nbytes": cache.nbytes, "filled": cache.filled}
    for layer in range(m.num_layers):
        for d in range(m.num_directions):
            for k, v in cache.layer_arrays(layer, d).items():
                out[(layer, d, k)] = v
    return out


def _assert_same(a, b, what):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            _assert_same(a[k], b[k], f"{what}[{k}]")
        return
    if isinstance(a, list):
        assert len(a) == len(b)
        for k, (u, v) in enumerate(zip(a, b)):
            _assert_same(u, v, f"{what}[{k}]")
        return
    if a is None or isinstance(a, (bool, int)):
        assert a == b, what
        return
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert np.array_equal(a, b, equal_nan=True), what  # bitwise: the same operations in the same order


def _scripted():
    """Each buffer's worst predecessor: long then short, short then long, another batch, lengths then
    none, dropout then none, records then none, one cell then another."""
    calls = []
    for k, (kind, kw) in enumerate(NETS):
        calls += [
            (k, 9, 4, False, True, True, True),
            (k, 3, 4, False, False, False, False),
            (k, 11, 2, False, True, False, True),
            (k, 2, 6, True, False, True, False),
        ]
    return calls


def _random(seed, count):
    rng = np.random.default_rng(seed)
    return [(int(rng.integers(len(NETS))), int(rng.integers(1, 12)), int(rng.integers(1, 7)), bool(rng.integers(2)),
             bool(rng.integers(2)), bool(rng.integers(2)), bool(rng.integers(2))) for _ in range(count)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", ["scripted", "random0", "random1"])
def test_refilled_cache_equals_new(dtype, order):
    calls = _scripted() if order == "scripted" else _random(int(order[-1]), 40)
    rng = np.random.default_rng(7)
    layers = [_layer(kind, kw, dtype, seed=k) for k, (kind, kw) in enumerate(NETS)]
    shared = None
    for net, steps, batch, batch_first, with_lengths, with_state, record in calls:
        m = layers[net]
        a = _call(rng, m, steps, batch, batch_first, with_lengths, with_state)
        fresh, fresh_before, fresh_after, _ = _run(m, batch_first, a, None, record)
        if shared is None:
            _, _, _, shared = _run(m, batch_first, a, None, record)  # the cache every later call refills
            continue
        got, before, after, _ = _run(m, batch_first, a, shared, record)
        what = f"{NETS[net][0]} {NETS[net][1]} T={steps} N={batch} bf={batch_first} lengths={with_lengths}"
        _assert_same(fresh, got, what + " results")
        _assert_same(fresh_before, before, what + " cache after forward")
        _assert_same(fresh_after, after, what + " cache after backward")


def test_refilled_cache_repeats_backward():
    """Backward twice on one refilled cache (work buffers reused in between) adds the same gradients twice."""
    m = _layer("lstm", dict(num_layers=2, bidirectional=True, proj_size=2), np.float64, 3)
    a = _call(np.random.default_rng(1), m, 6, 3, False, True, True)
    _, _, _, cache = _run(m, False, a, None, False)
    _, _, _, cache = _run(m, False, a, cache, False)
    results = []
    for _ in range(2):
        grads = [tuple(None if g is None else np.zeros_like(g) for g in entry) for entry in m._weights(m._grads)]
        out = _core.network_backward(cache, m._weights(m._params), grads, a["x"], a["dy"], a["dh_n"], a["dc_n"])
        results.append(list(out) + [v for entry in grads for v in entry if v is not None])
    _assert_same(results[0], results[1], "second backward")


def test_refill_arguments_checked():
    m32 = _layer("lstm", {}, np.float32, 0)
    m64 = _layer("lstm", {}, np.float64, 0)
    x32 = np.zeros((4, 2, INPUT), np.float32)
    _, _, _, c32 = _core.network_forward(m32._config, m32._weights(m32._params), x32, training=True)
    with pytest.raises(TypeError, match="cache: expected a float64 cache.*got NetworkCacheF32"):
        _core.network_forward(m64._config, m64._weights(m64._params), x32.astype(np.float64), training=True,
                              cache=c32)
    with pytest.raises(TypeError, match="cache: expected a float32 cache.*got dict"):
        _core.network_forward(m32._config, m32._weights(m32._params), x32, training=True, cache={})
    with pytest.raises(ValueError, match="cache: expected None in inference"):
        _core.network_forward(m32._config, m32._weights(m32._params), x32, training=False, cache=c32)
    assert c32.filled  # refused before anything was refilled


# ---------------------------------------------------------------------------------------------
# Layers: a steady training loop refills its own cache, and only when nobody else can see it.


def _twin(m):
    """A new layer with m's configuration, weights and random state (dropout masks)."""
    t = type(m)(**{k: v for k, v in m.config().items() if k != "type"})
    t.load_state_dict(m.state_dict())
    t._rng = copy.deepcopy(m._rng)
    return t


def _step(m, x, dout, lengths=None, dstate=None):
    m.zero_grad()
    out, state = m(x, lengths=lengths)
    dx, dstate0 = m.backward(dout, dstate)
    return [out, state, dx, dstate0, m.grads]


def _flatten(v):
    if isinstance(v, dict):
        return [v[k] for k in sorted(v)]
    if isinstance(v, (tuple, list)):
        return [w for u in v for w in _flatten(u)]
    return [v]


@pytest.mark.parametrize("kind,kw", [("lstm", dict(num_layers=2, dropout=0.3, bidirectional=True)),
                                      ("gru", dict(num_layers=2, batch_first=True)),
                                      ("rnn", dict(num_layers=3, dropout=0.2)),
                                      ("lstm", dict(num_layers=2, proj_size=2, batch_first=True))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_training_loop_refills_and_matches_new_layer(kind, kw, dtype):
    m = _layer(kind, kw, dtype, 4)
    rng = np.random.default_rng(5)
    bf = m.batch_first
    ids = []
    # (T, N, lengths?) per step: same shapes (the steady loop), shorter, longer, another batch, unbatched
    for steps, batch, with_lengths in [(8, 3, False), (8, 3, False), (3, 3, True), (12, 5, False), (12, 5, True),
                                       (4, None, False), (8, 3, False)]:
        shape = (steps, INPUT) if batch is None else ((batch, steps, INPUT) if bf else (steps, batch, INPUT))
        x = rng.standard_normal(shape).astype(dtype)
        lengths = rng.integers(1, steps + 1, size=batch) if with_lengths else None
        twin = _twin(m)
        width = m.num_directions * (m.proj_size or m.hidden_size)
        dout = rng.standard_normal(x.shape[:-1] + (width,)).astype(dtype)
        expected = _step(twin, x, dout, lengths)
        got = _step(m, x, dout, lengths)
        for u, v in zip(_flatten(expected), _flatten(got)):
            assert u.dtype == v.dtype and np.array_equal(u, v)
        ids.append(id(m._saved["cache"]))
    assert len(set(ids)) == 1  # one cache all along: the previous one stays alive until the new one is made


def test_layer_leaves_a_held_cache_alone():
    m = gc.LSTM(INPUT, 4, num_layers=2, seed=0).train()
    rng = np.random.default_rng(0)
    x1, x2 = (rng.standard_normal((5, 2, INPUT)).astype(np.float32) for _ in range(2))
    m(x1)
    held = m._saved["cache"]
    before = _contents(m, held)
    m(x2)
    assert m._saved["cache"] is not held
    _assert_same(before, _contents(m, held), "held cache")


def test_layer_leaves_a_saved_forward_in_use_alone():
    """A backward in another thread holds the saved forward while it runs; a forward meanwhile must not refill it."""
    m = gc.GRU(INPUT, 4, num_layers=2, bidirectional=True, seed=0, dtype=np.float64).train()
    rng = np.random.default_rng(1)
    x1, x2 = (rng.standard_normal((6, 3, INPUT)) for _ in range(2))
    dout = rng.standard_normal((6, 3, 8))
    twin = _twin(m)
    m(x1)
    in_use = m._saved
    m(x2)
    assert m._saved["cache"] is not in_use["cache"]
    m._saved, latest = in_use, m._saved  # that backward now runs on the forward it took
    twin(x1)
    _assert_same(_flatten(list(twin.backward(dout))), _flatten(list(m.backward(dout))), "backward of x1")
    m._saved = latest
    twin(x2)
    _assert_same(_flatten(list(twin.backward(dout))), _flatten(list(m.backward(dout))), "backward of x2")


def test_layer_failed_forward_keeps_previous():
    m = gc.LSTM(INPUT, 4, seed=0, dtype=np.float64).train()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 2, INPUT))
    dout = rng.standard_normal((5, 2, 4))
    twin = _twin(m)
    m(x)
    cache = id(m._saved["cache"])
    with pytest.raises(ValueError, match="lengths"):
        m(x, lengths=np.array([9, 9]))
    with pytest.raises(ValueError, match="x: expected shape"):
        m(np.zeros((5, 2, INPUT + 1)))
    assert id(m._saved["cache"]) == cache
    twin(x)
    _assert_same(_flatten(list(twin.backward(dout))), _flatten(list(m.backward(dout))), "backward after failures")


def test_layer_eval_between_keeps_training_forward():
    m = gc.LSTM(INPUT, 4, num_layers=2, seed=0, dtype=np.float64)
    rng = np.random.default_rng(3)
    x, x_eval = rng.standard_normal((5, 2, INPUT)), rng.standard_normal((7, 2, INPUT))
    dout = rng.standard_normal((5, 2, 4))
    twin = _twin(m)
    m(x)
    m.eval()
    m(x_eval)
    m.train()
    twin(x)
    _assert_same(_flatten(list(twin.backward(dout))), _flatten(list(m.backward(dout))), "backward after eval")


def test_probe_records_only_when_asked():
    """record_grads holds for one backward only: a refilled cache drops the records and the flag."""
    m = gc.LSTM(INPUT, 4, num_layers=2, seed=0, dtype=np.float64).train()
    probe = Probe(m)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 2, INPUT))
    dout = rng.standard_normal((5, 2, 4))
    m(x)
    probe.record_grads()
    m.backward(dout)
    recorded = probe.dh(1), probe.dc(0)
    m(x)
    with pytest.raises(ValueError, match="no recorded gradients"):
        probe.dh()
    m.backward(dout)
    with pytest.raises(ValueError, match="no recorded gradients"):
        probe.dc()
    m(x)
    probe.record_grads()
    m.backward(dout)
    _assert_same(list(recorded), [probe.dh(1), probe.dc(0)], "records of the same step")


def test_sequential_training_loop_matches_new_model():
    model = gc.Sequential([gc.LSTM(INPUT, 6, num_layers=2, seed=0), gc.LastStep(),
                                  gc.Linear(6, 2, seed=1)])
    rng = np.random.default_rng(6)
    for steps, batch in [(7, 3), (7, 3), (4, 5)]:
        twin = gc.Sequential.from_config(model.config())
        twin.load_state_dict(model.state_dict())
        x = rng.standard_normal((steps, batch, INPUT)).astype(np.float32)
        lengths = rng.integers(1, steps + 1, size=batch)
        dout = rng.standard_normal((batch, 2)).astype(np.float32)
        results = []
        for net in (twin, model):
            net.zero_grad()
            results.append([net(x, lengths=lengths), net.backward(dout)] + _flatten(net.grads))
        _assert_same(results[0], results[1], f"Sequential T={steps} N={batch}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_two_forwards_then_backward(dtype):
    """The second forward refills the first one's cache; backward differentiates the second, as with new caches."""
    m = gc.LSTM(INPUT, 4, num_layers=2, bidirectional=True, dropout=0.25, seed=0, dtype=dtype).train()
    rng = np.random.default_rng(8)
    x1, x2 = rng.standard_normal((9, 3, INPUT)).astype(dtype), rng.standard_normal((4, 2, INPUT)).astype(dtype)
    dout = rng.standard_normal((4, 2, 8)).astype(dtype)
    twin = _twin(m)
    m(x1, lengths=[9, 2, 5])
    first = id(m._saved["cache"])
    out = m(x2)
    assert id(m._saved["cache"]) == first
    twin(x1, lengths=[9, 2, 5])
    expected = twin(x2)
    _assert_same(_flatten([expected, twin.backward(dout), twin.grads]), _flatten([out, m.backward(dout), m.grads]),
                 "second forward's backward")
