# SPDX-License-Identifier: MIT
"""The cell variants (ONNX activations, clip, input_forget, peepholes) in the layers.

float64 finite differences of every gradient over configurations that use every activation
function as each of f, g and h; forward against the NumPy reference; float32 against float64;
default-equivalent variants against the torch-form kernels; config round trips and argument errors.
"""

import numpy as np
import pytest

import gatecell as gc
from gatecell import reference
from builders import NAMES
from conftest import CASES, record
from helpers import assert_close, numeric_grad as _numeric_grad, output_state_loss as _loss, rel_err

CLASSES = {"rnn": gc.RNN, "gru": gc.GRU, "lstm": gc.LSTM}
COUNTS = {"rnn": 1, "gru": 2, "lstm": 3}
# Offsets between the roles f, g, h: over eleven cases every function takes every role once.
ROLE_OFFSETS = (0, 4, 7)


def _spec(name, rng):
    """An activation item with random parameters (sometimes omitted, to exercise the defaults)."""
    alpha = float(rng.uniform(0.1, 1.5))
    beta = float(rng.uniform(-0.5, 0.9))
    if name == "HardSigmoid":
        alpha, beta = float(rng.uniform(0.1, 0.5)), float(rng.uniform(0.3, 0.7))
    if name == "ThresholdedRelu":
        alpha = float(rng.uniform(-0.5, 0.5))
    form = int(rng.integers(3))
    return name if form == 0 else (name, alpha) if form == 1 else (name, alpha, beta)


def variant_case(kind, k, dtype=np.float64, fd=False):
    """(layer, x, state, lengths, reference kwargs) for case k: activation k in role f (then shifted in g, h)."""
    rng = np.random.default_rng(1000 * COUNTS[kind] + k)
    count = COUNTS[kind]
    bidir = bool(k % 2)
    layers = 1 + (k // 2) % 2
    D = 2 if bidir else 1
    per_direction = [[_spec(NAMES[(k + ROLE_OFFSETS[r] + 5 * d) % 11], rng) for r in range(count)]
                     for d in range(D)]
    activations = per_direction[0] if (k % 4 == 1 or not bidir) else per_direction[0] + per_direction[1]
    kw = {"activations": activations}
    if k % 3 != 2:
        kw["clip"] = float(rng.uniform(0.6, 1.6))
    if kind == "lstm":
        kw["peepholes"] = k % 3 != 0
        kw["input_forget"] = k % 4 in (1, 2)
        kw["proj_size"] = 2 if k % 5 == 3 else 0
    if kind == "gru":
        kw["linear_before_reset"] = bool(k % 2 == 0)
    T, N, I, H = (4, 3, 3, 3) if fd else (6, 4, 5, 5)
    bf = k % 3 == 1
    m = CLASSES[kind](I, H, num_layers=layers, bidirectional=bidir, batch_first=bf, dtype=dtype, seed=k, **kw)
    for p in m.parameters().values():  # larger weights: pre-activations beyond the clip bound
        p *= 2.0
    hout = kw.get("proj_size", 0) or H
    x = rng.standard_normal((N, T, I) if bf else (T, N, I)).astype(dtype)
    h0 = rng.standard_normal((layers * D, N, hout)).astype(dtype)
    state = (h0, rng.standard_normal((layers * D, N, H)).astype(dtype)) if kind == "lstm" else h0
    lengths = np.array([T, 2, T - 1][:N] + [1] * (N - 3)) if k % 2 == 0 else None
    return m, x, state, lengths, kw


def _analytic(m, x, state, lengths, dy, dstate, is_lstm):
    m.zero_grad()
    m.train()(x, state, lengths=lengths)
    dx, ds0 = m.backward(dy, tuple(dstate) if is_lstm else dstate[0])
    return dx, (list(ds0) if is_lstm else [ds0]), {k: v.copy() for k, v in m.grads.items()}


def _upstream(m, x, state, lengths, rng, is_lstm):
    out, s_n = m(x, state, lengths=lengths)
    dy = rng.standard_normal(out.shape).astype(out.dtype)
    dstate = [rng.standard_normal(s.shape).astype(out.dtype) for s in (s_n if is_lstm else [s_n])]
    return dy, dstate


@pytest.mark.parametrize("kind,k", [(kind, k) for kind in CLASSES for k in range(11)])
def test_finite_differences(kind, k):
    m, x, state, lengths, kw = variant_case(kind, k, fd=True)
    is_lstm = kind == "lstm"
    dy, dstate = _upstream(m, x, state, lengths, np.random.default_rng(k), is_lstm)
    dx, ds0, grads = _analytic(m, x, state, lengths, dy, dstate, is_lstm)
    loss = _loss(m, x, state, lengths, dy, dstate, is_lstm)
    errors = [assert_close("dx", dx, _numeric_grad(loss, x), np.float32)]
    for got, arr in zip(ds0, state if is_lstm else [state]):
        errors.append(assert_close("dstate0", got, _numeric_grad(loss, arr), np.float32))
    for name, p in m.parameters().items():
        errors.append(assert_close(name, grads[name], _numeric_grad(loss, p), np.float32))
    assert max(errors) < 1e-7, kw  # central differences are good to ~1e-9; a wrong gradient is off by O(1)
    if kw.get("peepholes"):
        assert any(np.any(g != 0) for n, g in grads.items() if n.startswith("weight_peep"))
    CASES["variants finite differences (f64)"] += 1
    record("variants finite differences (f64)", np.float64, max(errors))


def test_clip_is_active_in_the_gradient_cases():
    """The clipped cases really clip: some saved pre-activations lie beyond the bound."""
    for kind in CLASSES:
        for k in range(11):
            m, x, state, lengths, kw = variant_case(kind, k, fd=True)
            if "clip" not in kw:
                continue
            from gatecell import _core
            _, _, _, cache = _core.network_forward(m._config, m._weights(m._params), x,
                                                   None if lengths is None else lengths.astype(np.int64),
                                                   *((state[0], state[1]) if kind == "lstm" else (state, None)),
                                                   m.batch_first, True, 0)
            pre = cache.layer_arrays(0, 0)["pre"]
            assert np.any(np.abs(pre) > kw["clip"]), (kind, k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind,k", [(kind, k) for kind in CLASSES for k in range(11)])
def test_forward_against_reference(kind, k, dtype):
    m, x, state, lengths, kw = variant_case(kind, k, dtype=dtype)
    is_lstm = kind == "lstm"
    out, s_n = m.eval()(x, state, lengths=lengths)
    xt = np.swapaxes(x, 0, 1) if m.batch_first else x
    ref_kw = {k_: v for k_, v in kw.items() if k_ != "activations"}
    ref = reference.network_forward(kind, m.parameters(), xt, *(state if is_lstm else (state, None)), lengths,
                                    num_layers=m.num_layers, bidirectional=m.bidirectional,
                                    activations=m.activations, **ref_kw)
    errors = [assert_close("out", np.swapaxes(out, 0, 1) if m.batch_first else out, ref[0], dtype)]
    for a, b in zip(s_n if is_lstm else [s_n], ref[1:]):
        errors.append(assert_close("state", a, b, dtype))
    # training mode (every step projected at once, pre-activations cached) gives the same outputs
    out_train, _ = m.train()(x, state, lengths=lengths)
    assert_close("out (training)", out_train, out, dtype)
    CASES["variants reference forward"] += 1
    record("variants reference forward", dtype, max(errors))


@pytest.mark.parametrize("kind,k", [(kind, k) for kind in CLASSES for k in range(0, 11, 2)])
def test_float32_agrees_with_float64(kind, k):
    m64, x, state, lengths, _ = variant_case(kind, k)
    m32, *_ = variant_case(kind, k, dtype=np.float32)
    m32.load_state_dict(m64.state_dict())
    is_lstm = kind == "lstm"
    to32 = (lambda s: tuple(a.astype(np.float32) for a in s)) if is_lstm else (lambda s: s.astype(np.float32))
    dy, dstate = _upstream(m64, x, state, lengths, np.random.default_rng(k), is_lstm)
    dx64, ds64, g64 = _analytic(m64, x, state, lengths, dy, dstate, is_lstm)
    dx32, ds32, g32 = _analytic(m32, x.astype(np.float32), to32(state), lengths, dy.astype(np.float32),
                                [d.astype(np.float32) for d in dstate], is_lstm)
    out64, _ = m64(x, state, lengths=lengths)
    out32, _ = m32(x.astype(np.float32), to32(state), lengths=lengths)
    errs = [rel_err(out32, out64), rel_err(dx32, dx64)] + [rel_err(a, b) for a, b in zip(ds32, ds64)]
    errs += [rel_err(g32[n], g64[n]) for n in g64]
    assert max(errs) < 1e-4, errs
    CASES["variants f32 vs f64"] += 1
    record("variants f32 vs f64", np.float32, max(errs))


@pytest.mark.parametrize("kind,extra", [("rnn", {}), ("rnn", {"nonlinearity": "relu"}), ("gru", {}),
                                        ("gru", {"linear_before_reset": False}), ("lstm", {}),
                                        ("lstm", {"proj_size": 2})])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_default_equivalent_variants_match_the_torch_form(kind, extra, dtype):
    """Activations given explicitly as torch's and a clip that never acts: the torch-form results."""
    names = {"rnn": ["Relu" if extra.get("nonlinearity") == "relu" else "Tanh"], "gru": ["Sigmoid", "Tanh"],
             "lstm": ["sigmoid", "TANH", ("Tanh", 3.0, 4.0)]}[kind]  # parameters of Tanh are ignored
    variant_extra = {k: v for k, v in extra.items() if k != "nonlinearity"}
    plain = CLASSES[kind](4, 5, num_layers=2, bidirectional=True, dtype=dtype, seed=2, **extra)
    variant = CLASSES[kind](4, 5, num_layers=2, bidirectional=True, dtype=dtype, seed=2, activations=names,
                            clip=1e30, **variant_extra)
    assert list(variant.parameters()) == list(plain.parameters())
    variant.load_state_dict(plain.state_dict())
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 3, 4)).astype(dtype)
    lengths = np.array([6, 3, 5])
    is_lstm = kind == "lstm"
    dy, dstate = _upstream(plain, x, None, lengths, rng, is_lstm)
    for a, b in zip(_analytic(plain, x, None, lengths, dy, dstate, is_lstm)[:2],
                    _analytic(variant, x, None, lengths, dy, dstate, is_lstm)[:2]):
        assert_close("grad", np.concatenate([np.ravel(v) for v in (a if isinstance(a, list) else [a])]),
                     np.concatenate([np.ravel(v) for v in (b if isinstance(b, list) else [b])]), dtype)
    g_plain = _analytic(plain, x, None, lengths, dy, dstate, is_lstm)[2]
    g_variant = _analytic(variant, x, None, lengths, dy, dstate, is_lstm)[2]
    for n in g_plain:
        assert_close(n, g_variant[n], g_plain[n], dtype)
    out_p, _ = plain.eval()(x, lengths=lengths)
    out_v, _ = variant.eval()(x, lengths=lengths)
    assert_close("out", out_v, out_p, dtype)


def test_cells_match_one_step_of_the_layer():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3))
    for cell_cls, layer_cls, kw in [
            (gc.LSTMCell, gc.LSTM, dict(activations=["HardSigmoid", "Softsign", ("Elu", 0.7)], clip=0.9,
                                        peepholes=True, input_forget=True)),
            (gc.GRUCell, gc.GRU, dict(activations=[("LeakyRelu", 0.2), "Softplus"], clip=1.1,
                                      linear_before_reset=False)),
            (gc.RNNCell, gc.RNN, dict(activations=[("ScaledTanh", 1.5, 0.7)], clip=0.8))]:
        cell = cell_cls(3, 5, dtype=np.float64, seed=1, **kw)
        layer = layer_cls(3, 5, dtype=np.float64, seed=1, **kw)
        layer.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
        s_cell = cell(x)
        _, s_layer = layer(x[None])
        for a, b in zip(s_cell if isinstance(s_cell, tuple) else [s_cell],
                        s_layer if isinstance(s_layer, tuple) else [s_layer]):
            np.testing.assert_allclose(a, b[0], rtol=0, atol=1e-14)


def test_peephole_parameters_are_named_shaped_and_trained():
    m = gc.LSTM(3, 4, num_layers=2, bidirectional=True, peepholes=True, dtype=np.float64, seed=0)
    peeps = {k: v for k, v in m.parameters().items() if "peep" in k}
    assert sorted(peeps) == ["weight_peep_l0", "weight_peep_l0_reverse", "weight_peep_l1", "weight_peep_l1_reverse"]
    bound = 1 / np.sqrt(4)
    for v in peeps.values():
        assert v.shape == (12,) and np.all(np.abs(v) <= bound) and np.any(v != 0)
    opt = gc.optim.SGD([m], lr=0.1)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    out, _ = m(x)
    m.backward(np.ones_like(out))
    assert all(np.any(m.grads[k] != 0) for k in peeps)
    before = m.parameters()["weight_peep_l1"].copy()
    opt.step()
    assert np.any(m.parameters()["weight_peep_l1"] != before)


@pytest.mark.parametrize("kind,k", [("rnn", 3), ("gru", 4), ("lstm", 5), ("lstm", 8)])
def test_config_round_trip_and_checkpoint(kind, k, tmp_path):
    import json
    m, x, state, lengths, kw = variant_case(kind, k)
    cfg = json.loads(json.dumps(m.config()))
    assert cfg == m.config()
    assert len(cfg["activations"]) == m.num_directions * COUNTS[kind]
    assert all(isinstance(s[0], str) and len(s) == 3 for s in cfg["activations"])
    twin = gc.module_from_config(cfg)
    assert twin.config() == cfg
    twin.load_state_dict(m.state_dict())
    np.testing.assert_array_equal(twin.eval()(x, state, lengths=lengths)[0], m.eval()(x, state, lengths=lengths)[0])
    path = tmp_path / "m.safetensors"
    gc.save(path, m)
    back = gc.load(path)
    assert back.config() == cfg
    np.testing.assert_array_equal(back.eval()(x, state, lengths=lengths)[0], m(x, state, lengths=lengths)[0])


def test_torch_form_configs_are_unchanged():
    for m in (gc.LSTM(2, 3), gc.GRU(2, 3), gc.RNN(2, 3), gc.LSTMCell(2, 3)):
        assert not {"activations", "clip", "input_forget", "peepholes"} & set(m.config())


def test_activation_names_and_defaults_are_normalised():
    m = gc.GRU(2, 3, bidirectional=True, activations=["hardsigmoid", ("ELU",)])
    assert m.config()["activations"] == [["HardSigmoid", 0.2, 0.5], ["Elu", 1.0, 0.0]] * 2
    m = gc.RNN(2, 3, bidirectional=True, activations=[("LeakyRelu", 0.3), ("Affine", 2, -1)])
    assert m.config()["activations"] == [["LeakyRelu", 0.3, 0.0], ["Affine", 2.0, -1.0]]
    assert gc.RNN(2, 3, activations=["ThresholdedRelu"]).activations == [["ThresholdedRelu", 1.0, 0.0]]
    assert gc.RNN(2, 3, activations=["ScaledTanh"]).activations == [["ScaledTanh", 1.0, 1.0]]


@pytest.mark.parametrize("make,exc,match", [
    (lambda: gc.LSTM(2, 3, activations=["Sigmoid", "Tanh", "Swish"]), ValueError, r"activations\[2\].*Swish"),
    (lambda: gc.LSTM(2, 3, activations=["Sigmoid", "Tanh"]), ValueError, "activations: expected 3 functions, got 2"),
    (lambda: gc.GRU(2, 3, bidirectional=True, activations=["Sigmoid"] * 3), ValueError, "expected 2 or 4"),
    (lambda: gc.RNN(2, 3, activations="Tanh"), TypeError, "activations: expected a sequence"),
    (lambda: gc.RNN(2, 3, activations=[3]), TypeError, r"activations\[0\]: expected an activation name"),
    (lambda: gc.RNN(2, 3, activations=[("Elu", "big")]), TypeError, "alpha of Elu: expected a float"),
    (lambda: gc.RNN(2, 3, activations=[("Affine", 1.0, float("nan"))]), ValueError, "beta of Affine"),
    (lambda: gc.RNN(2, 3, activations=[("Affine", 1.0, 2.0, 3.0)]), ValueError, "activations\\[0\\]"),
    (lambda: gc.RNN(2, 3, clip=0), ValueError, "clip: expected a positive"),
    (lambda: gc.GRU(2, 3, clip=-1.0), ValueError, "clip: expected a positive"),
    (lambda: gc.LSTM(2, 3, clip=float("inf")), ValueError, "clip"),
    (lambda: gc.LSTM(2, 3, clip="1"), TypeError, "clip: expected a positive float"),
    (lambda: gc.LSTM(2, 3, peepholes=1), TypeError, "peepholes: expected a bool"),
    (lambda: gc.LSTM(2, 3, input_forget="yes"), TypeError, "input_forget: expected a bool"),
    (lambda: gc.GRU(2, 3, peepholes=True), TypeError, "peepholes"),
    (lambda: gc.RNN(2, 3, input_forget=True), TypeError, "input_forget"),
    (lambda: gc.RNN(2, 3, nonlinearity="relu", activations=["Tanh"]), ValueError, "nonlinearity: give either"),
])
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_core_refuses_inconsistent_variant_configs():
    from gatecell import _core
    cfg = _core.NetworkConfig()
    cfg.kind, cfg.input_size, cfg.hidden_size = _core.CellKind.gru, 2, 3
    cfg.peepholes = True
    with pytest.raises(ValueError, match="LSTM only"):
        cfg.validate()
    cfg.peepholes = False
    cfg.activations = [_core.ActivationSpec(_core.Activation.tanh)]
    with pytest.raises(ValueError, match="activations: expected 2 functions, got 1"):
        cfg.validate()
    cfg.activations = [_core.ActivationSpec(_core.Activation.elu, float("nan")), _core.ActivationSpec(_core.Activation.tanh)]
    with pytest.raises(ValueError, match="finite"):
        cfg.validate()
    cfg.activations = []
    cfg.kind, cfg.peepholes = _core.CellKind.lstm, True
    x = np.zeros((2, 1, 2), np.float32)
    w = (np.zeros((12, 2), np.float32), np.zeros((12, 3), np.float32), np.zeros(12, np.float32),
         np.zeros(12, np.float32), None)
    with pytest.raises(ValueError, match="w_peep"):
        _core.network_forward(cfg, [w], x)
    with pytest.raises(ValueError, match="weight_peep_l0: expected shape \\(9,\\)"):
        _core.network_forward(cfg, [w + (np.zeros(4, np.float32),)], x)


def test_to_torch_refuses_variants():
    with pytest.raises(ValueError, match="peepholes"):
        gc.LSTM(2, 3, peepholes=True).to_torch()
    with pytest.raises(ValueError, match="activations"):
        gc.GRU(2, 3, activations=["Sigmoid", "Relu"]).to_torch()


@pytest.mark.parametrize("kind,kw", [
    ("rnn", {"activations": [("LeakyRelu", 0.1)], "clip": 2.0}),
    ("gru", {"activations": ["Softsign", ("ScaledTanh", 1.2, 0.8)], "clip": 2.5, "linear_before_reset": True}),
    ("gru", {"activations": ["HardSigmoid", "Tanh"], "linear_before_reset": False}),
    ("lstm", {"peepholes": True, "proj_size": 3}),
    ("lstm", {"activations": [("HardSigmoid", 0.2, 0.5), ("Elu", 1.0), "Softsign"], "clip": 3.0,
              "input_forget": True, "peepholes": True}),
])
@pytest.mark.parametrize("batch_first", [False, True])
def test_row_teams_match_one_thread_bitwise(kind, kw, batch_first):
    """At 2 threads each thread carries its own block of batch rows through the time loop (13 rows:
    blocks of 6 and 7); forward (training and inference), final states and every gradient are
    bitwise those of 1 thread, with sequences ending at different steps."""
    rng = np.random.default_rng(len(kind) + 7 * len(kw) + batch_first)
    T, N, I, H = 9, 13, 6, 7
    m = CLASSES[kind](I, H, batch_first=batch_first, dtype=np.float32, seed=3, **kw)
    x = rng.standard_normal((N, T, I) if batch_first else (T, N, I)).astype(np.float32)
    lengths = rng.integers(1, T + 1, size=N)
    hout = kw.get("proj_size", 0) or H
    dy = rng.standard_normal((N, T, hout) if batch_first else (T, N, hout)).astype(np.float32)
    h0 = rng.standard_normal((1, N, hout)).astype(np.float32)
    state0 = (h0, rng.standard_normal((1, N, H)).astype(np.float32)) if kind == "lstm" else h0
    threads = gc.get_num_threads()
    runs = []
    try:
        for t in (1, 2):
            gc.set_num_threads(t)
            m.zero_grad()
            out, state = m.train()(x, state0, lengths=lengths)
            dx, dstate = m.backward(dy)
            infer, infer_state = m.eval()(x, state0, lengths=lengths)
            arrays = [out, dx, infer] + [v for s in (state, dstate, infer_state)
                                         for v in (s if isinstance(s, tuple) else (s,))]
            runs.append(arrays + [m.grads[name].copy() for name in sorted(m.grads)])
    finally:
        gc.set_num_threads(threads)
    for one, two in zip(*runs):
        np.testing.assert_array_equal(one, two)
