# SPDX-License-Identifier: MIT
"""Introspection: saved gates and cell states, recorded dL/dh_t and dL/dc_t, against torch run step by step."""

import numpy as np
import pytest

import gatecell as gc
from gatecell import introspect

torch = pytest.importorskip("torch")

CELLS = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}
LAYERS = {"rnn": gc.RNN, "lstm": gc.LSTM, "gru": gc.GRU}


def _torch_unrolled(kind, layer, x, lengths, dy, reverse_dir=False):
    """Runs the layer's weights as torch cells step by step, keeping every h_t, c_t and gate for retain_grad.

    Only the first layer's given direction; x is [T, N, I] time-major float64.
    """
    T, N, _ = x.shape
    H = layer.hidden_size
    P = getattr(layer, "proj_size", 0) or H
    sfx = "_l0_reverse" if reverse_dir else "_l0"
    params = {k: torch.tensor(v, requires_grad=True) for k, v in layer.parameters().items() if k.endswith(sfx)}
    w = {k[:-len(sfx)]: v for k, v in params.items()}
    cell = CELLS[kind](layer.input_size, H, bias=layer.bias).double()
    if kind != "lstm":
        cell.load_state_dict({k: w[k] for k in cell.state_dict()})
    h = torch.zeros(N, P, dtype=torch.float64)
    c = torch.zeros(N, H, dtype=torch.float64)
    hs, cs, gates = [None] * T, [None] * T, [None] * T
    order = range(T - 1, -1, -1) if reverse_dir else range(T)
    for t in order:
        active = torch.tensor(t < lengths)[:, None]
        xt = torch.tensor(x[t])
        if kind == "lstm":
            a = xt @ w["weight_ih"].T + w["bias_ih"] + h @ w["weight_hh"].T + w["bias_hh"]
            a_i, a_f, a_g, a_o = a.chunk(4, 1)
            i, f, g, o = a_i.sigmoid(), a_f.sigmoid(), a_g.tanh(), a_o.sigmoid()
            c_t = torch.where(active, f * c + i * g, c)
            c_t.retain_grad()
            h_new = o * c_t.tanh()
            if "weight_hr" in w:
                h_new = h_new @ w["weight_hr"].T
            gates[t] = [i, f, g, o]
            cs[t] = c_t
            c = c_t
        else:
            h_new = cell(xt, h)
        h_t = torch.where(active, h_new, h)
        h_t.retain_grad()
        hs[t] = h_t
        h = h_t
    out = torch.stack([torch.where(torch.tensor(t < lengths)[:, None], hs[t], torch.zeros_like(hs[t]))
                       for t in range(T)])
    (out * torch.tensor(dy)).sum().backward()
    return hs, cs, gates


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "lstm_proj"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("direction", [0, 1])
def test_recorded_gradients_and_gates_match_torch(kind, batch_first, direction):
    rng = np.random.default_rng([len(kind), batch_first, direction])
    T, N, I, H = 7, 3, 2, 4
    extra = {"proj_size": 3} if kind == "lstm_proj" else {}
    kind = kind.replace("_proj", "")
    layer = LAYERS[kind](I, H, batch_first=batch_first, bidirectional=bool(direction), dtype=np.float64, seed=3,
                         **extra)
    H = extra.get("proj_size", H)  # the width of h (and of each direction's output)
    x = rng.standard_normal((T, N, I))
    lengths = np.array([7, 3, 5])
    D = 1 + direction
    dy = rng.standard_normal((T, N, D * H)) * (np.arange(T) < lengths[:, None]).T[..., None]
    xin = np.ascontiguousarray(x.transpose(1, 0, 2)) if batch_first else x
    dyin = np.ascontiguousarray(dy.transpose(1, 0, 2)) if batch_first else dy
    res = introspect.run(layer, xin, dout=dyin, lengths=lengths)
    k = direction  # compare the direction under test (index in the per-(layer, direction) lists)
    hs, cs, gates = _torch_unrolled(kind, layer, x, lengths, dy[..., k * H:(k + 1) * H], reverse_dir=bool(k))
    active = (np.arange(T)[:, None] < lengths[None, :])[..., None]
    dh_torch = np.stack([hs[t].grad.numpy() for t in range(T)]) * active
    np.testing.assert_allclose(res["dh"][k], dh_torch, rtol=1e-10, atol=1e-12)
    norms = np.linalg.norm(dh_torch, axis=-1).mean(axis=1)
    np.testing.assert_allclose(res["dh_norm"][k], norms, rtol=1e-10, atol=1e-12)
    if kind == "lstm":
        dc_torch = np.stack([cs[t].grad.numpy() for t in range(T)]) * active
        np.testing.assert_allclose(res["dc"][k], dc_torch, rtol=1e-10, atol=1e-12)
        c_torch = np.stack([cs[t].detach().numpy() for t in range(T)]) * active
        np.testing.assert_allclose(res["c"][k] * active, c_torch, rtol=1e-12, atol=1e-12)
        for name, j in zip("ifgo", range(4)):
            g_torch = np.stack([gates[t][j].detach().numpy() for t in range(T)])
            np.testing.assert_allclose(res["gates"][k][name] * active, g_torch * active, rtol=1e-12, atol=1e-12)
    else:
        assert set(res["gates"][k]) == set(introspect.GATE_NAMES[layer._kind])
        assert res["gates"][k][next(iter(res["gates"][k]))].shape == (T, N, H)


def test_probe_inside_sequential_multilayer_and_errors():
    model = gc.Sequential([("rnn", gc.LSTM(2, 5, num_layers=2, batch_first=True, dtype=np.float64, seed=0)),
                           ("last", gc.LastStep()), ("head", gc.Linear(5, 1, dtype=np.float64, seed=1))])
    probe = introspect.Probe(model["rnn"])
    x = np.random.default_rng(0).standard_normal((4, 9, 2))
    lengths = np.array([9, 2, 5, 9])
    model(x, lengths=lengths)
    with pytest.raises(ValueError, match="record_grads"):
        probe.dh()
    probe.record_grads()
    model.backward(np.ones((4, 1)))
    for layer in (0, 1):
        norms = probe.grad_norms(layer)
        assert norms["dh"].shape == (9,) and norms["dc"].shape == (9,)
        # only the last valid step of each sequence gets an output gradient, so the norm is zero past the end
        dh = probe.dh(layer)
        assert not dh[2:, 1].any() and not dh[5:, 2].any() and dh[1, 1].any()
    f = probe.gates(1)["f"]
    assert f.shape == (9, 4, 5) and ((f > 0) & (f < 1))[:, 0].all()
    assert probe.cell_states().shape == (9, 4, 5)
    assert probe.hidden_states(1).shape == (9, 4, 5)
    gru = gc.GRU(2, 3)
    with pytest.raises(ValueError, match="forward"):
        introspect.Probe(gru).gates()
    gru(np.zeros((3, 1, 2), np.float32))
    with pytest.raises(ValueError, match="cell state"):
        introspect.Probe(gru).cell_states()
    with pytest.raises(TypeError, match="layer"):
        introspect.Probe(gc.Linear(2, 2))
