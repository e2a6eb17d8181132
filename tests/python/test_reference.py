# SPDX-License-Identifier: MIT
"""Checks the NumPy oracle python/gatecell/reference.py against torch.nn.

reference.py is loaded by file path so that this test needs neither a built
gatecell._core nor an importable gatecell package.
"""

import importlib.util
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

_PATH = pathlib.Path(__file__).resolve().parents[2] / "python" / "gatecell" / "reference.py"
_SPEC = importlib.util.spec_from_file_location("gatecell_reference_under_test", _PATH)
reference = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(reference)

TOL = {np.float32: 1e-5, np.float64: 1e-10}
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}

T, N, I, H, P = 6, 4, 3, 5, 2
LENGTHS = np.array([3, 6, 1, 4])  # unsorted, contains 1 and T

# (kind, extra torch kwargs)
VARIANTS = {
    "rnn_tanh": ("rnn", {"nonlinearity": "tanh"}),
    "rnn_relu": ("rnn", {"nonlinearity": "relu"}),
    "lstm": ("lstm", {}),
    "lstm_proj": ("lstm", {"proj_size": P}),
    "gru": ("gru", {}),
}
TORCH_NET = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
TORCH_CELL = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}


def _assert_close(actual, expected, dtype):
    assert actual.dtype == dtype
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=TOL[dtype], atol=TOL[dtype])


def _state_dict(module):
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def _torch_network(module, x, h0, c0, lengths):
    """Runs a torch.nn RNN/LSTM/GRU the way gatecell promises to behave; returns NumPy arrays."""
    xt = torch.from_numpy(x)
    state = None
    if h0 is not None:
        state = torch.from_numpy(h0) if c0 is None else (torch.from_numpy(h0), torch.from_numpy(c0))
    with torch.no_grad():
        if lengths is None:
            y, state_n = module(xt, state)
        else:
            packed = torch.nn.utils.rnn.pack_padded_sequence(
                xt, torch.as_tensor(lengths, dtype=torch.int64), enforce_sorted=False)
            y_packed, state_n = module(packed, state)
            y, _ = torch.nn.utils.rnn.pad_packed_sequence(y_packed, total_length=x.shape[0])
    if isinstance(state_n, tuple):
        return (y.numpy(),) + tuple(s.numpy() for s in state_n)
    return y.numpy(), state_n.numpy()


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("use_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("use_h0", [False, True], ids=["zero_h0", "h0"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=["L1", "L2"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_network_matches_torch(variant, num_layers, bidirectional, bias, use_h0, use_lengths, dtype):
    kind, kwargs = VARIANTS[variant]
    torch.manual_seed(1234)
    module = TORCH_NET[kind](I, H, num_layers=num_layers, bias=bias, bidirectional=bidirectional,
                             dtype=TORCH_DTYPE[dtype], **kwargs)
    rng = np.random.default_rng(99)
    directions = 2 if bidirectional else 1
    h_out = kwargs.get("proj_size", 0) or H
    x = rng.standard_normal((T, N, I)).astype(dtype)
    h0 = c0 = None
    if use_h0:
        h0 = rng.standard_normal((num_layers * directions, N, h_out)).astype(dtype)
        if kind == "lstm":
            c0 = rng.standard_normal((num_layers * directions, N, H)).astype(dtype)
    lengths = LENGTHS if use_lengths else None

    expected = _torch_network(module, x, h0, c0, lengths)
    actual = reference.network_forward(
        kind, _state_dict(module), x, h0, c0, lengths, num_layers=num_layers,
        bidirectional=bidirectional, nonlinearity=kwargs.get("nonlinearity", "tanh"),
        proj_size=kwargs.get("proj_size", 0))

    assert len(actual) == len(expected) == (3 if kind == "lstm" else 2)
    for a, e in zip(actual, expected):
        _assert_close(a, e, dtype)
    if use_lengths:
        past_end = np.arange(T)[:, None] >= LENGTHS[None, :]
        assert not np.any(actual[0][past_end])


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("variant", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_cell_matches_torch(variant, bias, dtype):
    kind, kwargs = VARIANTS[variant]
    torch.manual_seed(4321)
    cell = TORCH_CELL[kind](I, H, bias=bias, dtype=TORCH_DTYPE[dtype], **kwargs)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, I)).astype(dtype)
    h = rng.standard_normal((N, H)).astype(dtype)
    c = rng.standard_normal((N, H)).astype(dtype)
    params = _state_dict(cell)
    with torch.no_grad():
        if kind == "lstm":
            expected = tuple(s.numpy() for s in cell(torch.from_numpy(x),
                                                     (torch.from_numpy(h), torch.from_numpy(c))))
            actual = reference.cell_forward(kind, params, x, h, c)
        else:
            expected = (cell(torch.from_numpy(x), torch.from_numpy(h)).numpy(),)
            actual = (reference.cell_forward(kind, params, x, h,
                                             nonlinearity=kwargs.get("nonlinearity", "tanh")),)
    for a, e in zip(actual, expected):
        _assert_close(a, e, dtype)


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _gru_cho_by_hand(w_ih, w_hh, b_ih, b_hh, x, h):
    """One GRU step in the original (Cho 2014) form, one scalar at a time, for N = 1."""
    hidden = w_hh.shape[1]
    h_new = np.zeros(hidden)
    r = np.zeros(hidden)
    z = np.zeros(hidden)
    for j in range(hidden):
        a_r = b_ih[j] + b_hh[j]
        a_z = b_ih[hidden + j] + b_hh[hidden + j]
        for k in range(len(x)):
            a_r += w_ih[j, k] * x[k]
            a_z += w_ih[hidden + j, k] * x[k]
        for k in range(hidden):
            a_r += w_hh[j, k] * h[k]
            a_z += w_hh[hidden + j, k] * h[k]
        r[j] = _sigmoid(a_r)
        z[j] = _sigmoid(a_z)
    for j in range(hidden):
        a_n = b_ih[2 * hidden + j] + b_hh[2 * hidden + j]
        for k in range(len(x)):
            a_n += w_ih[2 * hidden + j, k] * x[k]
        for k in range(hidden):
            a_n += w_hh[2 * hidden + j, k] * (r[k] * h[k])  # reset applied before the product
        n = np.tanh(a_n)
        h_new[j] = (1.0 - z[j]) * n + z[j] * h[j]
    return h_new


def test_gru_linear_before_reset_false_by_hand():
    rng = np.random.default_rng(3)
    w_ih = rng.standard_normal((3 * H, I))
    w_hh = rng.standard_normal((3 * H, H))
    b_ih = rng.standard_normal(3 * H)
    b_hh = rng.standard_normal(3 * H)
    x = rng.standard_normal(I)
    h = rng.standard_normal(H)
    expected = _gru_cho_by_hand(w_ih, w_hh, b_ih, b_hh, x, h)

    cell_params = {"weight_ih": w_ih, "weight_hh": w_hh, "bias_ih": b_ih, "bias_hh": b_hh}
    got_cell = reference.cell_forward("gru", cell_params, x[None], h[None], linear_before_reset=False)
    np.testing.assert_allclose(got_cell[0], expected, rtol=1e-12, atol=1e-12)

    net_params = {k + "_l0": v for k, v in cell_params.items()}
    y, h_n = reference.network_forward("gru", net_params, x[None, None], h[None, None],
                                       linear_before_reset=False)
    np.testing.assert_allclose(y[0, 0], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_n[0, 0], expected, rtol=1e-12, atol=1e-12)

    # The two forms really differ (the test would be vacuous otherwise).
    torch_form = reference.cell_forward("gru", cell_params, x[None], h[None], linear_before_reset=True)
    assert np.max(np.abs(torch_form[0] - expected)) > 1e-3


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_dropout_masks_compose_layers(kind):
    """Layer 1 with a mask equals a 1-layer network run on the masked output of layer 0."""
    torch.manual_seed(5)
    module = TORCH_NET[kind](I, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    params = _state_dict(module)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((T, N, I))
    mask = (rng.random((T, N, 2 * H)) > 0.3) / 0.7
    full = reference.network_forward(kind, params, x, lengths=LENGTHS, num_layers=2,
                                     bidirectional=True, dropout_masks=[mask])

    def layer(l):
        return {k.replace(f"_l{l}", "_l0"): v for k, v in params.items() if f"_l{l}" in k}

    first = reference.network_forward(kind, layer(0), x, lengths=LENGTHS, bidirectional=True)
    second = reference.network_forward(kind, layer(1), first[0] * mask, lengths=LENGTHS,
                                       bidirectional=True)
    np.testing.assert_array_equal(full[0], second[0])
    for s in range(1, len(full)):
        np.testing.assert_array_equal(full[s][:2], first[s])
        np.testing.assert_array_equal(full[s][2:], second[s])

    ones = reference.network_forward(kind, params, x, lengths=LENGTHS, num_layers=2,
                                     bidirectional=True, dropout_masks=[np.ones_like(mask)])
    plain = reference.network_forward(kind, params, x, lengths=LENGTHS, num_layers=2,
                                      bidirectional=True)
    for a, b in zip(ones, plain):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("steps,batch", [(1, 1), (1, 3), (4, 1)])
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_tiny_shapes_match_torch(steps, batch):
    torch.manual_seed(8)
    module = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=P, dtype=torch.float64)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((steps, batch, I))
    lengths = rng.integers(1, steps + 1, size=batch)
    expected = _torch_network(module, x, None, None, lengths)
    actual = reference.network_forward("lstm", _state_dict(module), x, lengths=lengths,
                                       num_layers=2, bidirectional=True, proj_size=P)
    for a, e in zip(actual, expected):
        _assert_close(a, e, np.float64)


def test_full_lengths_equal_no_lengths():
    rng = np.random.default_rng(4)
    torch.manual_seed(4)
    module = torch.nn.GRU(I, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    params = _state_dict(module)
    x = rng.standard_normal((T, N, I))
    with_lengths = reference.network_forward("gru", params, x, lengths=np.full(N, T),
                                             num_layers=2, bidirectional=True)
    without = reference.network_forward("gru", params, x, num_layers=2, bidirectional=True)
    for a, b in zip(with_lengths, without):
        np.testing.assert_array_equal(a, b)


def test_sigmoid_is_stable():
    a = np.array([-1e4, -800.0, -30.0, 0.0, 30.0, 800.0, 1e4])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        s = reference.sigmoid(a)
    assert np.all(np.isfinite(s))
    assert s[0] == 0.0 and s[-1] == 1.0 and s[3] == 0.5
    np.testing.assert_allclose(s[2], 1.0 / (1.0 + np.exp(30.0)), rtol=1e-15)


def test_bad_arguments_raise():
    params = {"weight_ih_l0": np.zeros((H, I)), "weight_hh_l0": np.zeros((H, H))}
    x = np.zeros((T, N, I))
    with pytest.raises(ValueError, match="kind"):
        reference.network_forward("lstmx", params, x)
    with pytest.raises(ValueError, match="nonlinearity"):
        reference.network_forward("rnn", params, x, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="lengths"):
        reference.network_forward("rnn", params, x, lengths=[0, 1, 1, 1])
    with pytest.raises(ValueError, match="h0"):
        reference.network_forward("rnn", params, x, np.zeros((2, N, H)))
    with pytest.raises(ValueError, match="weight_ih_l1"):
        reference.network_forward("rnn", params, x, num_layers=2)


def test_reference_imports_only_numpy():
    source = _PATH.read_text()
    imports = {line.split()[1].split(".")[0] for line in source.splitlines()
               if line.startswith(("import ", "from "))}
    assert imports <= {"__future__", "typing", "numpy"}, imports
