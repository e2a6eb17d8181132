# SPDX-License-Identifier: MIT
"""Fuzz of the public Python API with malformed arguments: every call either works or raises one of
the documented exceptions (ValueError, TypeError, MemoryError). A crash would end the run; the
terminal summary counts the cases tried."""

import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import gatecell as gc  # noqa: E402
from conftest import FUZZ  # noqa: E402

# Nested lists of huge floats become inf in float32, as NumPy converts them (with this warning).
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")

DOCUMENTED = (ValueError, TypeError, MemoryError)
FUZZ_SETTINGS = settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])

DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8, np.bool_, np.complex64, object]


@st.composite
def arrays(draw, max_dims=4, max_side=4):
    """Arrays of any dtype, rank, size, contiguity and writeability, including NaN/inf and empty ones."""
    shape = tuple(draw(st.lists(st.integers(0, max_side), max_size=max_dims)))
    dtype = draw(st.sampled_from(DTYPES))
    fill = draw(st.sampled_from([0.0, 1.0, -1e30, np.nan, np.inf, 3.5]))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # -1e30 or NaN cast to an integer dtype: junk on purpose
        a = np.full(shape, fill if dtype is not object else "x", dtype=dtype)
    layout = draw(st.sampled_from(["c", "f", "strided", "readonly", "plain"]))
    if layout == "f":
        a = np.asfortranarray(a)
    elif layout == "strided" and a.ndim:
        a = np.repeat(a, 2, axis=-1)[..., ::2]
    elif layout == "readonly":
        a.flags.writeable = False
    return a


def junk():
    """Anything a user might pass by mistake."""
    # Integers stay small or far past int64: a medium size such as 20000 is valid and would only be slow.
    ints = st.one_of(st.integers(-5, 40), st.sampled_from([-2**70, 2**63, 2**64, 2**70]))
    scalars = st.one_of(st.none(), st.booleans(), ints, st.floats(allow_nan=True),
                        st.text(max_size=5), st.binary(max_size=3), st.just(object()), st.just(np.float32),
                        st.just("float64"), st.just(np.int8), st.just(()), st.just({}), st.just(slice(None)))
    return st.one_of(scalars, arrays(), st.lists(st.floats(-3, 3), max_size=4),
                     st.lists(st.lists(st.floats(-3, 3), max_size=3), max_size=3),
                     st.tuples(arrays(), arrays()), st.tuples(scalars, scalars))


def maybe(valid, strategy):
    """A valid argument most of the time, sometimes junk, so calls get deep enough to meet the checks."""
    return st.one_of(st.just(valid), st.just(valid), strategy)


def _call(entry, fn, *args, **kwargs):
    FUZZ[entry] += 1
    try:
        return fn(*args, **kwargs)
    except DOCUMENTED:
        return None


CTOR = {"RNN": gc.RNN, "LSTM": gc.LSTM, "GRU": gc.GRU}
CELLS = {"RNNCell": gc.RNNCell, "LSTMCell": gc.LSTMCell, "GRUCell": gc.GRUCell}


@FUZZ_SETTINGS
@given(name=st.sampled_from(sorted(CTOR) + sorted(CELLS) + ["Linear"]), data=st.data())
def test_constructors(name, data):
    cls = {**CTOR, **CELLS, "Linear": gc.Linear}[name]
    size = st.one_of(st.integers(-3, 8), st.sampled_from([2**40, 2**62, 2**63, 2**64]), junk())
    if name == "Linear":
        kw = {"in_features": data.draw(maybe(3, size)), "out_features": data.draw(maybe(4, size))}
    else:
        kw = {"input_size": data.draw(maybe(3, size)), "hidden_size": data.draw(maybe(4, size))}
    for key, valid in [("bias", True), ("dtype", np.float32), ("seed", 0)]:
        if data.draw(st.booleans()):
            kw[key] = data.draw(maybe(valid, junk()))
    if name in CTOR:
        for key, valid in [("num_layers", 2), ("batch_first", False), ("dropout", 0.0), ("bidirectional", True)]:
            if data.draw(st.booleans()):
                kw[key] = data.draw(maybe(valid, st.one_of(junk(), st.floats(-1, 2),
                                                            st.integers(-2, 6), st.just(2**62))))
    if name == "LSTM" and data.draw(st.booleans()):
        kw["proj_size"] = data.draw(maybe(2, size))
    if name in ("RNN", "RNNCell") and data.draw(st.booleans()):
        kw["nonlinearity"] = data.draw(maybe("relu", junk()))
    if name in ("GRU", "GRUCell") and data.draw(st.booleans()):
        kw["linear_before_reset"] = data.draw(maybe(False, junk()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # dropout with one layer warns, by design
        _call(f"{name}(...)", cls, **kw)


def _layer(kind, bidir, batch_first):
    with_proj = {"proj_size": 2} if kind is gc.LSTM else {}
    return kind(3, 4, num_layers=2, bidirectional=bidir, batch_first=batch_first, seed=0, **with_proj)


@FUZZ_SETTINGS
@given(kind=st.sampled_from([gc.RNN, gc.LSTM, gc.GRU]), bidir=st.booleans(), bf=st.booleans(),
       training=st.booleans(), data=st.data())
def test_forward_backward(kind, bidir, bf, training, data):
    m = _layer(kind, bidir, bf).train(training)
    name = kind.__name__
    good_x = np.zeros((5, 2, 3), np.float32)
    x = data.draw(maybe(good_x, st.one_of(junk(), arrays(max_dims=4, max_side=5))))
    state = data.draw(st.one_of(st.none(), junk(), st.tuples(arrays(), arrays())))
    lengths = data.draw(st.one_of(st.none(), junk(), st.lists(st.integers(-3, 8), max_size=3)))
    res = _call(f"{name}.forward", m, x, state, lengths=lengths)
    if res is not None:
        out, _ = res
        assert isinstance(out, np.ndarray) and out.dtype == np.float32
    dout = data.draw(st.one_of(st.none(), junk(), st.just(None if res is None else np.ones_like(res[0]))))
    dstate = data.draw(st.one_of(st.none(), junk(), st.tuples(st.none() | arrays(), st.none() | arrays())))
    back = _call(f"{name}.backward", m.backward, dout, dstate)
    if back is not None:
        assert isinstance(back[0], np.ndarray) and back[0].dtype == np.float32


@FUZZ_SETTINGS
@given(name=st.sampled_from(sorted(CELLS)), data=st.data())
def test_cells(name, data):
    cell = CELLS[name](3, 4, seed=0)
    x = data.draw(maybe(np.zeros((2, 3), np.float32), st.one_of(junk(), arrays(max_dims=3))))
    hx = data.draw(st.one_of(st.none(), junk(), st.tuples(arrays(max_dims=2), arrays(max_dims=2))))
    _call(f"{name}.forward", cell, x, hx)
    dh = data.draw(st.one_of(junk(), st.tuples(st.none() | arrays(max_dims=2), st.none() | arrays(max_dims=2)),
                             st.just(np.ones((2, 4), np.float32))))
    _call(f"{name}.backward", cell.backward, dh, data.draw(st.one_of(st.none(), junk())))


@FUZZ_SETTINGS
@given(data=st.data())
def test_linear(data):
    lin = gc.Linear(3, 2, seed=0)
    x = data.draw(maybe(np.zeros((4, 3), np.float32), st.one_of(junk(), arrays())))
    _call("Linear.forward", lin, x)
    _call("Linear.backward", lin.backward, data.draw(st.one_of(junk(), arrays(), st.just(np.ones((4, 2), np.float32)))))


@FUZZ_SETTINGS
@given(kind=st.sampled_from([gc.RNN, gc.LSTM, gc.GRU, gc.Linear]), data=st.data())
def test_state_dicts_and_modes(kind, data):
    m = kind(3, 4, seed=0)
    good = m.state_dict()
    key = data.draw(st.sampled_from(sorted(good)))
    value = data.draw(st.one_of(junk(), arrays(max_dims=3, max_side=13)))
    broken = data.draw(st.sampled_from(["value", "drop", "extra", "not a mapping"]))
    sd = dict(good)
    if broken == "value":
        sd[key] = value
    elif broken == "drop":
        del sd[key]
    elif broken == "extra":
        sd[data.draw(st.text(max_size=8))] = value
    else:
        sd = value
    before = {k: v.copy() for k, v in m.parameters().items()}
    _call(f"{kind.__name__}.load_state_dict", m.load_state_dict, sd)
    after = m.parameters()
    if not all(np.array_equal(before[k], after[k], equal_nan=True) for k in before):
        # it was accepted: then it must have been exactly the right keys and shapes
        assert broken == "value" and np.shape(value) == good[key].shape
    _call(f"{kind.__name__}.train", m.train, data.draw(maybe(True, junk())))
    _call("module_from_config", gc.module_from_config, data.draw(st.one_of(
        junk(), st.dictionaries(st.sampled_from(["type", "input_size", "hidden_size", "dtype", "bogus"]),
                                st.one_of(junk(), st.sampled_from(["LSTM", "GRU", "Linear", "x"])), max_size=5))))
