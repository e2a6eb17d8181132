# SPDX-License-Identifier: MIT
"""gatecell against torch.nn: outputs, final states, dx, dh0/dc0 and every parameter gradient.

The grid: every kind x 1-3 layers x uni/bidirectional x batch_first x bias x initial state x
(full batch | variable lengths | unbatched input) x float32/float64.
"""

import itertools
import zlib

import numpy as np
import pytest

import gatecell as gc
from conftest import CASES, record
from helpers import assert_close

torch = pytest.importorskip("torch")
pack_padded_sequence = torch.nn.utils.rnn.pack_padded_sequence
pad_packed_sequence = torch.nn.utils.rnn.pad_packed_sequence

T, N, I, H, P = 5, 3, 4, 6, 3
KINDS = {  # name -> (torch class, gatecell class, extra kwargs)
    "rnn_tanh": (torch.nn.RNN, gc.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (torch.nn.RNN, gc.RNN, {"nonlinearity": "relu"}),
    "lstm": (torch.nn.LSTM, gc.LSTM, {}),
    "lstm_proj": (torch.nn.LSTM, gc.LSTM, {"proj_size": P}),
    "gru": (torch.nn.GRU, gc.GRU, {}),
}
GRID = list(itertools.product(KINDS, [1, 2, 3], [False, True], [False, True], [True, False], [False, True],
                              ["full", "lengths", "unbatched"], [np.float32, np.float64]))


def _ids(case):
    kind, layers, bidir, bf, bias, init, mode, dtype = case
    return (f"{kind}-L{layers}-{'bi' if bidir else 'uni'}-{'bf' if bf else 'tm'}-{'bias' if bias else 'nobias'}"
            f"-{'h0' if init else 'zero'}-{mode}-{np.dtype(dtype).name}")


def run_torch(tmod, x, state, lengths, dy, dstate, batch_first, is_lstm):
    """torch forward and backward with the upstream gradients dy, dstate; returns values and grads."""
    xt = torch.tensor(x, requires_grad=True)
    st = None
    if state is not None:
        st = tuple(torch.tensor(s, requires_grad=True) for s in state) if is_lstm else torch.tensor(state, requires_grad=True)
    if lengths is not None:
        packed = pack_padded_sequence(xt, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
        out_p, s_n = tmod(packed, st)
        out, _ = pad_packed_sequence(out_p, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0])
    else:
        out, s_n = tmod(xt, st)
    s_list = list(s_n) if is_lstm else [s_n]
    loss = (out * torch.tensor(dy)).sum()
    for s, d in zip(s_list, dstate):
        loss = loss + (s * torch.tensor(d)).sum()
    loss.backward()
    grads = {k: p.grad.numpy() for k, p in tmod.named_parameters()}
    dst = None
    if state is not None:
        dst = [s.grad.numpy() for s in st] if is_lstm else [st.grad.numpy()]
    return (out.detach().numpy(), [s.detach().numpy() for s in s_list], xt.grad.numpy(), dst, grads)


@pytest.mark.parametrize("case", GRID, ids=[_ids(c) for c in GRID])
def test_against_torch(case):
    kind, layers, bidir, bf, bias, init, mode, dtype = case
    tcls, gcls, kw = KINDS[kind]
    is_lstm = kind.startswith("lstm")
    seed = zlib.crc32(_ids(case).encode())  # reproducible per case
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    tmod = tcls(I, H, num_layers=layers, bias=bias, batch_first=bf, bidirectional=bidir, **kw).to(tdtype)
    gmod = gcls(I, H, num_layers=layers, bias=bias, batch_first=bf, bidirectional=bidir, dtype=dtype, **kw)
    gmod.load_state_dict(tmod.state_dict())

    D = 2 if bidir else 1
    hout = kw.get("proj_size", 0) or H
    unbatched = mode == "unbatched"
    x = rng.standard_normal((T, I) if unbatched else ((N, T, I) if bf else (T, N, I))).astype(dtype)
    lead = (layers * D,) if unbatched else (layers * D, N)
    state = None
    if init:
        h0 = rng.standard_normal(lead + (hout,)).astype(dtype)
        state = (h0, rng.standard_normal(lead + (H,)).astype(dtype)) if is_lstm else h0
    lengths = None
    if mode == "lengths":
        lengths = rng.integers(1, T + 1, size=N)
        lengths[rng.integers(N)] = T  # torch's padded output has max(lengths) steps
    out_shape = (T, D * hout) if unbatched else ((N, T, D * hout) if bf else (T, N, D * hout))
    dy = rng.standard_normal(out_shape).astype(dtype)
    dstate = [rng.standard_normal(lead + (hout,)).astype(dtype)]
    if is_lstm:
        dstate.append(rng.standard_normal(lead + (H,)).astype(dtype))

    t_out, t_states, t_dx, t_dstate, t_grads = run_torch(tmod, x, state, lengths, dy, dstate, bf, is_lstm)

    out, s_n = gmod(x, state, lengths=lengths)
    dx, ds0 = gmod.backward(dy, tuple(dstate) if is_lstm else dstate[0])
    errors = []
    assert_close("out", out, t_out, dtype, errors)
    for name, a, b in zip(("h_n", "c_n"), (s_n if is_lstm else [s_n]), t_states):
        assert_close(name, a, b, dtype, errors)
    assert_close("dx", dx, t_dx, dtype, errors)
    if init:
        for name, a, b in zip(("dh0", "dc0"), (ds0 if is_lstm else [ds0]), t_dstate):
            assert_close(name, a, b, dtype, errors)
    assert set(gmod.grads) == set(t_grads)
    for name, g in gmod.grads.items():
        assert_close(name, g, t_grads[name], dtype, errors)
    if lengths is not None:  # outputs past each sequence's end are exactly zero
        for n, length in enumerate(lengths):
            assert not np.any(out[n, length:] if bf else out[length:, n])
    CASES["torch parity (networks)"] += 1
    record("torch parity (networks)", dtype, max(errors))


CELLS = {"rnn_tanh": (torch.nn.RNNCell, gc.RNNCell, {"nonlinearity": "tanh"}),
         "rnn_relu": (torch.nn.RNNCell, gc.RNNCell, {"nonlinearity": "relu"}),
         "lstm": (torch.nn.LSTMCell, gc.LSTMCell, {}),
         "gru": (torch.nn.GRUCell, gc.GRUCell, {})}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("init", [True, False])
@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_against_torch(kind, init, bias, batched, dtype):
    tcls, gcls, kw = CELLS[kind]
    is_lstm = kind == "lstm"
    rng = np.random.default_rng(7)
    torch.manual_seed(7)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    tcell = tcls(I, H, bias=bias, **kw).to(tdtype)
    gcell = gcls(I, H, bias=bias, dtype=dtype, **kw)
    gcell.load_state_dict(tcell.state_dict())
    lead = (N,) if batched else ()
    x = rng.standard_normal(lead + (I,)).astype(dtype)
    hx = None
    if init:
        hx = tuple(rng.standard_normal(lead + (H,)).astype(dtype) for _ in range(2 if is_lstm else 1))
        hx = hx if is_lstm else hx[0]
    dh = [rng.standard_normal(lead + (H,)).astype(dtype) for _ in range(2 if is_lstm else 1)]

    xt = torch.tensor(x, requires_grad=True)
    hxt = None
    if init:
        hxt = tuple(torch.tensor(h, requires_grad=True) for h in hx) if is_lstm else torch.tensor(hx, requires_grad=True)
    t_new = tcell(xt, hxt)
    t_list = list(t_new) if is_lstm else [t_new]
    sum((s * torch.tensor(d)).sum() for s, d in zip(t_list, dh)).backward()

    new = gcell(x, hx)
    dx, dhx = gcell.backward(tuple(dh) if is_lstm else dh[0])
    errors = []
    for a, b in zip(new if is_lstm else [new], t_list):
        assert_close("h'", a, b.detach().numpy(), dtype, errors)
    assert_close("dx", dx, xt.grad.numpy(), dtype, errors)
    if init:
        for a, b in zip(dhx if is_lstm else [dhx], hxt if is_lstm else [hxt]):
            assert_close("dhx", a, b.grad.numpy(), dtype, errors)
    for name, p in tcell.named_parameters():
        assert_close(name, gcell.grads[name], p.grad.numpy(), dtype, errors)
    CASES["torch parity (cells)"] += 1
    record("torch parity (cells)", dtype, max(errors))
