# SPDX-License-Identifier: MIT
"""Property tests: random configurations and shapes of every kind against gatecell.reference
(forward), directional finite differences (backward, float64) and the float64 run (float32)."""

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import gatecell as gc  # noqa: E402
from gatecell import reference  # noqa: E402
from conftest import CASES, record  # noqa: E402
from helpers import TOL, rel_err  # noqa: E402

KINDS = ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru", "gru_original"]


@st.composite
def networks(draw, max_layers=3):
    """A random network configuration and input: (kwargs for the layer, kind, x shape facts)."""
    kind = draw(st.sampled_from(KINDS))
    hidden = draw(st.integers(1, 6))
    cfg = {"kind": kind, "input_size": draw(st.integers(1, 5)), "hidden_size": hidden,
           "num_layers": draw(st.integers(1, max_layers)), "bidirectional": draw(st.booleans()),
           "bias": draw(st.booleans()), "batch_first": draw(st.booleans())}
    if kind == "lstm_proj":
        cfg["hidden_size"] = hidden = max(hidden, 2)
        cfg["proj_size"] = draw(st.integers(1, hidden - 1))
    steps, batch = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    unbatched = draw(st.booleans()) and batch == 1
    lengths = None
    if not unbatched and draw(st.booleans()):
        lengths = draw(st.lists(st.integers(1, steps), min_size=batch, max_size=batch))
    return cfg, steps, batch, unbatched, lengths, draw(st.booleans()), draw(st.integers(0, 2**32 - 1))


def _build(cfg, dtype, seed):
    kind = cfg["kind"]
    kw = {k: v for k, v in cfg.items() if k != "kind"}
    if kind.startswith("rnn"):
        return gc.RNN(nonlinearity=kind[4:], dtype=dtype, seed=seed, **kw)
    if kind.startswith("lstm"):
        return gc.LSTM(dtype=dtype, seed=seed, **kw)
    return gc.GRU(linear_before_reset=kind != "gru_original", dtype=dtype, seed=seed, **kw)


def _inputs(m, steps, batch, unbatched, with_state, rng, dtype):
    I, L, D = m.input_size, m.num_layers, m.num_directions
    hout = m.proj_size or m.hidden_size
    if unbatched:
        x = rng.standard_normal((steps, I))
        lead = (L * D,)
    else:
        x = rng.standard_normal((batch, steps, I) if m.batch_first else (steps, batch, I))
        lead = (L * D, batch)
    state = None
    if with_state:
        h0 = rng.standard_normal(lead + (hout,)).astype(dtype)
        state = (h0, rng.standard_normal(lead + (m.hidden_size,)).astype(dtype)) if isinstance(m, gc.LSTM) else h0
    return x.astype(dtype), state


def _reference(m, cfg, x, state, lengths, unbatched):
    """gatecell.reference on time-major batched arrays, reshaped back like the layer's outputs."""
    kind = cfg["kind"].split("_")[0]
    xt = x[:, None, :] if unbatched else (np.swapaxes(x, 0, 1) if m.batch_first else x)
    h0 = c0 = None
    if state is not None:
        h0, c0 = state if isinstance(m, gc.LSTM) else (state, None)
        if unbatched:
            h0 = h0[:, None, :]
            c0 = None if c0 is None else c0[:, None, :]
    ref = reference.network_forward(kind, m.parameters(), np.ascontiguousarray(xt), h0, c0, lengths,
                                    num_layers=m.num_layers, bidirectional=m.bidirectional,
                                    nonlinearity=cfg["kind"][4:] if kind == "rnn" else "tanh",
                                    proj_size=m.proj_size, linear_before_reset=cfg["kind"] != "gru_original")
    y = ref[0][:, 0, :] if unbatched else (np.swapaxes(ref[0], 0, 1) if m.batch_first else ref[0])
    states = [s[:, 0, :] if unbatched else s for s in ref[1:]]
    return y, states


@settings(max_examples=120)
@given(net=networks(), dtype=st.sampled_from([np.float32, np.float64]))
def test_forward_matches_reference(net, dtype):
    cfg, steps, batch, unbatched, lengths, with_state, seed = net
    m = _build(cfg, dtype, seed % 1000)
    rng = np.random.default_rng(seed)
    x, state = _inputs(m, steps, batch, unbatched, with_state, rng, dtype)
    m.eval()
    out, s_n = m(x, state, lengths=lengths)
    y_ref, states_ref = _reference(m, cfg, x, state, lengths, unbatched)
    errs = [rel_err(out, y_ref)] + [rel_err(a, b) for a, b in zip(s_n if isinstance(m, gc.LSTM) else [s_n],
                                                                     states_ref)]
    CASES["hypothesis forward vs reference"] += 1
    record("hypothesis forward vs reference", dtype, max(errs))
    assert max(errs) <= TOL[np.dtype(dtype)], f"{cfg}: relative error {max(errs):.3e}"
    m.train()
    # No dropout, so training mode computes the same values; not always the same bits, because
    # inference projects the input a window of steps at a time and float64 products of other
    # shapes may round differently (bitwise equality holds within a mode: test_determinism.py).
    out_train, _ = m(x, state, lengths=lengths)
    assert rel_err(out_train, out) <= TOL[np.dtype(dtype)]


def _loss_and_grads(m, x, state, lengths, dy, dstate):
    out, s_n = m(x, state, lengths=lengths)
    is_lstm = isinstance(m, gc.LSTM)
    loss = float(np.sum(out * dy)) + sum(float(np.sum(a * b)) for a, b in
                                         zip(s_n if is_lstm else [s_n], dstate))
    return loss, out


@settings(max_examples=60)
@given(net=networks(max_layers=2), dropout=st.sampled_from([0.0, 0.0, 0.5]))
def test_backward_directional_finite_differences(net, dropout):
    """<grad, v> == (L(θ + εv) - L(θ - εv)) / 2ε for a random direction v over x, the initial state
    and every parameter at once (float64; dropout masks are fixed by re-seeding the layer)."""
    cfg, steps, batch, unbatched, lengths, with_state, seed = net
    cfg = dict(cfg, dropout=dropout if cfg["num_layers"] > 1 else 0.0)
    m = _build(cfg, np.float64, seed % 1000)
    rng = np.random.default_rng(seed)
    x, state = _inputs(m, steps, batch, unbatched, True, rng, np.float64)
    is_lstm = isinstance(m, gc.LSTM)
    states = list(state) if is_lstm else [state]
    out, _ = m(x, state, lengths=lengths)
    dy = rng.standard_normal(out.shape)
    dstate = [rng.standard_normal(s.shape) for s in states]

    def run(shift):
        """Loss with every input moved by shift * v; the layer's RNG restarts so masks repeat."""
        m._rng = np.random.default_rng(7)
        return _loss_and_grads(m, x + shift * vx, tuple(s + shift * v for s, v in zip(states, vs)) if is_lstm
                               else states[0] + shift * vs[0], lengths, dy, dstate)[0]

    vx = rng.standard_normal(x.shape)
    vs = [rng.standard_normal(s.shape) for s in states]
    vp = {k: rng.standard_normal(p.shape) for k, p in m.parameters().items()}
    m.zero_grad()
    m._rng = np.random.default_rng(7)
    m(x, state, lengths=lengths)
    dx, ds0 = m.backward(dy, tuple(dstate) if is_lstm else dstate[0])
    ds0 = list(ds0) if is_lstm else [ds0]
    analytic = float(np.sum(dx * vx)) + sum(float(np.sum(a * b)) for a, b in zip(ds0, vs)) + \
        sum(float(np.sum(m.grads[k] * vp[k])) for k in vp)

    eps = 1e-6
    params = m.parameters()
    base = {k: p.copy() for k, p in params.items()}
    for k in params:
        params[k][...] = base[k] + eps * vp[k]
    up = run(eps)
    for k in params:
        params[k][...] = base[k] - eps * vp[k]
    down = run(-eps)
    for k in params:
        params[k][...] = base[k]
    numeric = (up - down) / (2 * eps)
    scale = max(1.0, abs(numeric))
    CASES["hypothesis backward vs finite differences"] += 1
    record("hypothesis backward vs finite differences", np.float64, abs(analytic - numeric) / scale)
    assert abs(analytic - numeric) <= 1e-6 * scale, f"{cfg}: <grad, v> {analytic} vs numeric {numeric}"


@settings(max_examples=40)
@given(net=networks(max_layers=2))
def test_float32_backward_matches_float64(net):
    """The float32 kernels compute the float64 gradients to float32 accuracy."""
    cfg, steps, batch, unbatched, lengths, with_state, seed = net
    m64 = _build(cfg, np.float64, seed % 1000)
    m32 = _build(cfg, np.float32, seed % 1000)
    m32.load_state_dict(m64.state_dict())
    rng = np.random.default_rng(seed)
    x, state = _inputs(m64, steps, batch, unbatched, with_state, rng, np.float64)
    out, _ = m64(x, state, lengths=lengths)
    dy = rng.standard_normal(out.shape)
    state32 = None if state is None else (tuple(s.astype(np.float32) for s in state)
                                          if isinstance(state, tuple) else state.astype(np.float32))
    m32(x.astype(np.float32), state32, lengths=lengths)
    dx64, _ = m64.backward(dy)
    dx32, _ = m32.backward(dy.astype(np.float32))
    errs = [rel_err(dx32, dx64)] + [rel_err(m32.grads[k], m64.grads[k]) for k in m64.grads]
    CASES["hypothesis float32 backward vs float64"] += 1
    record("hypothesis float32 backward vs float64", np.float32, max(errs))
    assert max(errs) <= 1e-4, f"{cfg}: float32 gradients off by {max(errs):.3e}"
