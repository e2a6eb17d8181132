# SPDX-License-Identifier: MIT
"""Checkpoints: gc.save / gc.load round trips, the file format, and both readers (Python and C++)
rejecting truncated, corrupt or mismatched files with ValueError."""

import json
import struct

import numpy as np
import pytest

import gatecell as gc
from gatecell import _core
from gatecell.checkpoint import load_tensors, save_tensors

from helpers import assert_close, save_sequential, saved_raw

DTYPES = [np.float32, np.float64]

MODULES = [
    lambda dt: gc.RNN(3, 5, num_layers=2, nonlinearity="relu", dtype=dt, seed=1),
    lambda dt: gc.RNN(3, 5, bias=False, dtype=dt, seed=2),
    lambda dt: gc.LSTM(3, 6, num_layers=2, proj_size=4, dtype=dt, seed=3),
    lambda dt: gc.LSTM(3, 5, bidirectional=True, batch_first=True, dtype=dt, seed=4),
    lambda dt: gc.GRU(3, 5, num_layers=2, linear_before_reset=False, dtype=dt, seed=5),
    lambda dt: gc.GRU(3, 5, bias=False, dtype=dt, seed=6),
    lambda dt: gc.RNNCell(3, 4, nonlinearity="tanh", dtype=dt, seed=7),
    lambda dt: gc.LSTMCell(3, 4, dtype=dt, seed=8),
    lambda dt: gc.GRUCell(3, 4, linear_before_reset=False, dtype=dt, seed=9),
    lambda dt: gc.Linear(3, 2, dtype=dt, seed=10),
    lambda dt: gc.GRU(3, 5, num_layers=2, reverse=True, dtype=dt, seed=11),
    lambda dt: gc.LSTM(3, 6, proj_size=2, batch_first=True, reverse=True, dtype=dt, seed=12),
    # The cell variants: every key of config() the C++ reader must map (activations, clip, ...).
    lambda dt: gc.LSTM(3, 5, num_layers=2, bidirectional=True, peepholes=True, input_forget=True, clip=0.7,
                       activations=[("HardSigmoid", 0.3, 0.4), ("LeakyRelu", 0.2), "Softsign",
                                    ("ScaledTanh", 0.9, 1.2), "Elu", ("ThresholdedRelu", 0.1)], dtype=dt, seed=13),
    lambda dt: gc.GRU(3, 5, linear_before_reset=False, reverse=True, clip=1.5,
                      activations=["Sigmoid", ("Affine", 0.5, 0.1)], dtype=dt, seed=14),
    lambda dt: gc.RNN(3, 4, num_layers=2, activations=["Softplus"], dtype=dt, seed=15),
]


def _input(m, rng, dtype):
    if isinstance(m, gc.Linear):
        return rng.standard_normal((4, 3)).astype(dtype)
    if type(m).__name__.endswith("Cell"):
        return rng.standard_normal((2, 3)).astype(dtype)
    shape = (2, 5, 3) if m.batch_first else (5, 2, 3)
    return rng.standard_normal(shape).astype(dtype)


def _first(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make", MODULES)
def test_round_trip_python_and_cpp(tmp_path, make, dtype):
    m = make(dtype).eval()
    path = tmp_path / "m.safetensors"
    gc.save(path, m)
    back = gc.load(path).eval()
    assert type(back) is type(m) and back.config() == m.config()
    for k, v in m.state_dict().items():
        assert back.state_dict()[k].dtype == v.dtype
        np.testing.assert_array_equal(back.state_dict()[k], v)
    x = _input(m, np.random.default_rng(0), dtype)
    expected = _first(m(x))
    np.testing.assert_array_equal(_first(back(x)), expected)
    # The C++ reader rebuilds the same model (layout as the first recurrent module's).
    cpp = _core.load_model(str(path))
    assert isinstance(cpp, _core.ModelF64 if dtype == np.float64 else _core.ModelF32)
    if isinstance(m, gc.Linear):
        got = cpp.forward(x[None])[0]
    elif type(m).__name__.endswith("Cell"):
        got = cpp.forward(x[None])
    else:
        got = cpp.forward(x)
    assert_close("cpp forward", got, expected, dtype)


def test_file_layout(tmp_path):
    m = gc.LSTM(3, 4, num_layers=2, dtype=np.float64, seed=0)
    raw, header, _ = saved_raw(tmp_path / "m.safetensors", m)
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0
    meta = header.pop("__metadata__")
    assert meta["format"] == "pt" and meta["gatecell_version"] == gc.__version__
    assert json.loads(meta["gatecell_model"]) == m.config()
    names = list(header)
    assert names == sorted(names) == sorted(m.state_dict())
    end = 0
    for name in names:
        e = header[name]
        assert e["dtype"] == "F64" and e["data_offsets"][0] == end
        end = e["data_offsets"][1]
        arr = np.frombuffer(raw[8 + n + e["data_offsets"][0]:8 + n + end], "<f8").reshape(e["shape"])
        np.testing.assert_array_equal(arr, m.state_dict()[name])
    assert 8 + n + end == len(raw)


def test_save_load_tensors(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"b": rng.standard_normal((2, 3)).astype(np.float32), "a": np.zeros((0, 4), np.float32),
               "c": np.float32(rng.standard_normal((5,)))}
    save_tensors(tmp_path / "t.safetensors", tensors, {"k": "v"})
    back, meta = load_tensors(tmp_path / "t.safetensors")
    assert meta == {"k": "v"} and sorted(back) == sorted(tensors)
    for k in tensors:
        np.testing.assert_array_equal(back[k], tensors[k])
    with pytest.raises(TypeError, match="one dtype"):
        save_tensors(tmp_path / "x", {"a": np.zeros(2, np.float32), "b": np.zeros(2)})
    with pytest.raises(TypeError, match="float32 or float64"):
        save_tensors(tmp_path / "x", {"a": np.zeros(2, np.int32)})
    with pytest.raises(TypeError, match="module"):
        gc.save(tmp_path / "x", object())


def _readers_reject(path, match=None):
    """Both readers raise ValueError (never crash) on the file; returns the two messages."""
    msgs = []
    for read in (gc.load, lambda p: _core.load_model(str(p))):
        with pytest.raises(ValueError, match=match) as info:
            read(path)
        msgs.append(str(info.value))
    return msgs


def _write(path, header, data=b"", raw_header=None):
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


@pytest.fixture
def good(tmp_path):
    m = gc.GRU(2, 3, num_layers=2, dtype=np.float32, seed=0)
    return (m,) + saved_raw(tmp_path / "good.safetensors", m)


def test_truncated_everywhere(tmp_path, good):
    _, raw, _, _ = good
    cuts = sorted(set(list(range(0, 40)) + list(range(40, len(raw), 7)) + [len(raw) - 1]))
    for cut in cuts:
        p = tmp_path / f"cut{cut}"
        p.write_bytes(raw[:cut])
        _readers_reject(p)


def test_corrupt_headers(tmp_path, good):
    _, raw, header, data = good
    meta = header["__metadata__"]
    first = sorted(k for k in header if k != "__metadata__")[0]
    second = sorted(k for k in header if k != "__metadata__")[1]

    def variant(fn, tag):
        h = json.loads(json.dumps(header))
        fn(h)
        return _write(tmp_path / tag, h, data)

    _readers_reject(_write(tmp_path / "open", None, data, raw_header=b"{" * 10))
    (tmp_path / "len").write_bytes(struct.pack("<Q", 2**63) + raw[8:])
    assert "header" in _readers_reject(tmp_path / "len")[1]
    _readers_reject(_write(tmp_path / "json", None, data, raw_header=b'{"a": [1, 2,}'), "JSON|json")
    _readers_reject(_write(tmp_path / "notobj", None, data, raw_header=b"[1, 2]"))
    _readers_reject(_write(tmp_path / "nested", None, data, raw_header=b"[" * 5000 + b"]" * 5000))
    _readers_reject(variant(lambda h: h[first].update(dtype="I8"), "dtype"), "dtype")
    _readers_reject(variant(lambda h: h[first].update(dtype="F64"), "mixed"))
    _readers_reject(variant(lambda h: h[first].update(data_offsets=[0, 10**9]), "range"))
    _readers_reject(variant(lambda h: h[second].update(data_offsets=h[first]["data_offsets"]), "overlap"))
    _readers_reject(variant(lambda h: h[first].update(shape=[1, 2]), "shape_bytes"))
    _readers_reject(variant(lambda h: h[first].update(shape=[-1]), "negshape"))
    _readers_reject(variant(lambda h: h[first].update(extra=1), "field"))
    _readers_reject(variant(lambda h: h.pop("__metadata__"), "nometa"), "gatecell_model")
    _readers_reject(variant(lambda h: h["__metadata__"].update(gatecell_model="{oops"), "badmodel"))
    _readers_reject(_write(tmp_path / "trailing", header, data + b"\0" * 8), "after the last tensor")

    def model_variant(fn, tag, match=None):
        cfg = json.loads(meta["gatecell_model"])
        fn(cfg)
        _readers_reject(variant(lambda h: h["__metadata__"].update(gatecell_model=json.dumps(cfg)), tag), match)

    model_variant(lambda c: c.update(type="Transformer"), "type", "Transformer")
    model_variant(lambda c: c.update(hidden_size=4), "hsize", "shape")
    model_variant(lambda c: c.update(num_layers=1), "layers", "unknown tensor|unexpected")
    model_variant(lambda c: c.update(num_layers=3), "layers3", "missing")
    model_variant(lambda c: c.update(dtype="float64"), "dtype_cfg")
    model_variant(lambda c: c.update(peepholes=True), "key", "peepholes")


def test_missing_and_unknown_tensors(tmp_path):
    m = gc.LSTM(2, 3, dtype=np.float64, seed=0)
    meta = {"format": "pt", "gatecell_version": gc.__version__, "gatecell_model": json.dumps(m.config())}
    sd = m.state_dict()
    missing = dict(sd)
    missing.pop("bias_hh_l0")
    save_tensors(tmp_path / "missing", missing, meta)
    assert "bias_hh_l0" in _readers_reject(tmp_path / "missing")[1]
    save_tensors(tmp_path / "extra", dict(sd, weight_peephole_l0=np.zeros(3)), meta)
    assert "weight_peephole_l0" in _readers_reject(tmp_path / "extra")[1]
    wrong = dict(sd, weight_hh_l0=np.zeros((12, 4)))
    save_tensors(tmp_path / "wrong", wrong, meta)
    assert "weight_hh_l0" in _readers_reject(tmp_path / "wrong", "shape")[1]


def test_random_corruption_never_crashes(tmp_path, good):
    _, raw, _, _ = good
    rng = np.random.default_rng(123)
    for k in range(200):
        b = bytearray(raw)
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        p = tmp_path / f"fuzz{k}"
        p.write_bytes(bytes(b))
        for read in (gc.load, lambda q: _core.load_model(str(q))):
            try:
                read(p)
            except (ValueError, TypeError):
                pass


def test_cpp_reads_a_sequential(tmp_path):
    """LSTM -> Dropout -> LastStep -> Linear, described as gc.Sequential describes it."""
    rng = np.random.default_rng(0)
    for dtype in DTYPES:
        rnn = gc.LSTM(3, 5, num_layers=2, dtype=dtype, seed=1).eval()
        head = gc.Linear(5, 2, dtype=dtype, seed=2)
        cfg, tensors = save_sequential(tmp_path / "seq", rnn, head, p=0.25)
        model = _core.load_model(str(tmp_path / "seq"))
        x = rng.standard_normal((6, 3, 3)).astype(dtype)
        lengths = np.array([6, 2, 4], np.int64)
        out, _ = rnn(x, lengths=lengths)
        expected = head(out[lengths - 1, np.arange(3)])
        assert_close("sequential", model.forward(x, lengths), expected, dtype)
        bad = dict(cfg, modules=cfg["modules"][:3] + [dict(head.config(), name="head", in_features=4)])
        save_tensors(tmp_path / "bad", tensors, {"gatecell_model": json.dumps(bad)})
        with pytest.raises(ValueError):
            _core.load_model(str(tmp_path / "bad"))


def test_cpp_stream_refuses_a_variant_layer(tmp_path):
    path = tmp_path / "var.safetensors"
    gc.save(path, gc.LSTM(3, 4, peepholes=True, seed=1))
    with pytest.raises(ValueError, match="streaming does not run cell variants"):
        _core.load_model(str(path)).stream()


def test_cpp_stream_refuses_a_reverse_layer(tmp_path):
    path = tmp_path / "rev.safetensors"
    gc.save(path, gc.RNN(3, 4, reverse=True, seed=1))
    model = _core.load_model(str(path))
    with pytest.raises(ValueError, match="reverse layer needs the whole sequence"):
        model.stream()
    with pytest.raises(ValueError, match="reverse"):
        gc.Stream(gc.RNN(3, 4, reverse=True, seed=1))
