# SPDX-License-Identifier: MIT
"""A layer keeps the kernels' packed weights between calls (WeightPacks) while nothing but the
layer can reach its parameter arrays. Every way of changing a parameter must still show in the
next call: writes through a handle that is gone by then (parameters() drops what was kept), through
a handle or a view still held (the reference count disables keeping), load_state_dict, optimizer
steps. Each call is compared bit for bit with a twin that never keeps packed weights (it holds a
handle), on every kernel path: batch 1 (one thread and split), a few sequences (split by units),
row blocks, both GRU forms, the LSTM projection, stacked bidirectional layers, float64."""

import copy
import pickle
import weakref

import numpy as np
import pytest

import gatecell as gc

# (kind, kwargs, input, hidden, batch): the paths the kernels take at 1 and 2 threads.
CASES = [
    ("LSTM", {}, 16, 64, 1),                                      # batch 1, packed cell panels
    ("LSTM", {}, 64, 256, 1),                                     # batch 1, split by units at 2 threads
    ("GRU", dict(linear_before_reset=True), 50, 160, 1),
    ("GRU", dict(linear_before_reset=False), 8, 40, 1),
    ("RNN", dict(nonlinearity="relu"), 60, 200, 1),
    ("LSTM", {}, 20, 130, 3),                                     # few sequences, split at 2 threads
    ("GRU", dict(linear_before_reset=True), 33, 256, 5),
    ("RNN", {}, 100, 300, 2),
    ("LSTM", {}, 12, 40, 9),                                      # row blocks
    ("GRU", dict(linear_before_reset=False), 12, 48, 6),
    ("LSTM", dict(proj_size=24), 10, 48, 4),
    ("LSTM", dict(num_layers=2, bidirectional=True), 14, 72, 3),
    ("GRU", dict(num_layers=2, bidirectional=True, dtype=np.float64), 9, 30, 4),
]


def _ids(case):
    kind, kw, I, H, N = case
    extra = "-".join(f"{k}={v.__name__ if isinstance(v, type) else v}" for k, v in kw.items())
    return f"{kind}-I{I}-H{H}-N{N}" + (f"-{extra}" if extra else "")


@pytest.fixture(params=[1, 2], ids=lambda t: f"threads{t}")
def threads(request):
    before = gc.get_num_threads()
    gc.set_num_threads(request.param)
    yield request.param
    gc.set_num_threads(before)


def _pair(kind, kw, I, H, seed=3):
    m = getattr(gc, kind)(I, H, seed=seed, **kw)
    twin = getattr(gc, kind)(I, H, seed=seed, **kw)
    twin_handle = twin.parameters()  # held: the twin packs its weights at every call
    m.eval()
    twin.eval()
    return m, twin, twin_handle


def _check(m, twin, x):
    y, state = m(x)
    y_ref, state_ref = twin(x)
    np.testing.assert_array_equal(y, y_ref)
    for a, b in zip(state if isinstance(state, tuple) else (state,),
                    state_ref if isinstance(state_ref, tuple) else (state_ref,)):
        np.testing.assert_array_equal(a, b)
    return y


def _input(m, T, N, seed=0):
    return np.random.default_rng(seed).standard_normal((T, N, m.input_size)).astype(m.dtype)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_kept_weights_follow_every_change(case, threads):
    kind, kw, I, H, N = case
    m, twin, twin_handle = _pair(kind, kw, I, H)
    x = _input(m, 40, N)
    first = _check(m, twin, x)
    packs = m._packs
    assert packs is not None and packs.size > 0
    made = packs.made
    _check(m, twin, x)
    assert m._packs is packs and packs.made == made, "a second call packed its weights again"

    rng = np.random.default_rng(1)
    names = list(twin_handle)

    def change(name, arr):  # the same new values in both
        new = (rng.standard_normal(arr.shape) * 0.2).astype(arr.dtype)
        arr[...] = new
        twin_handle[name][...] = new

    # A write through a handle that is gone before the next call.
    change(names[1], m.parameters()[names[1]])
    assert m._packs is None
    assert not np.array_equal(_check(m, twin, x), first)
    assert m._packs is not None

    # A handle held across calls, written between them.
    held = m.parameters()[names[0]]
    _check(m, twin, x)
    assert m._packs is None
    change(names[0], held)
    _check(m, twin, x)
    del held

    # A view of a parameter, written after everything else let go of it.
    view = m.parameters()[names[-1]][:2]
    _check(m, twin, x)
    twin_view = twin_handle[names[-1]][:2]
    twin_view *= 1.5
    view *= 1.5
    del view
    _check(m, twin, x)

    # load_state_dict copies in place.
    state = {k: (v * 0.9).astype(v.dtype) for k, v in twin.state_dict().items()}
    _check(m, twin, x)
    m.load_state_dict(state)
    twin.load_state_dict(state)
    _check(m, twin, x)
    _check(m, twin, _input(m, 7, N, seed=5))  # other steps, same weights


def test_optimizer_steps_are_seen():
    m, twin, twin_handle = _pair("LSTM", {}, 10, 48, seed=4)
    x = _input(m, 12, 3)
    _check(m, twin, x)  # m now keeps packed weights
    opt = gc.optim.SGD([m], lr=0.5)
    m.train()
    y, _ = m(x)
    m.backward(np.ones_like(y))
    opt.step()
    for k, g in m.grads.items():  # the same update in the twin
        twin_handle[k] -= 0.5 * g
    m.eval()
    _check(m, twin, x)
    del opt  # the optimizer held handles; without them the weights are kept again
    _check(m, twin, x)
    assert m._packs is not None


def test_training_calls_keep_and_match():
    m, twin, _ = _pair("GRU", {}, 7, 40, seed=5)
    m.train()
    twin.train()
    x = _input(m, 9, 2)
    for _ in range(2):
        y, h = m(x)
        y_ref, h_ref = twin(x)
        np.testing.assert_array_equal(y, y_ref)
        dx, dh0 = m.backward(np.ones_like(y))
        dx_ref, dh0_ref = twin.backward(np.ones_like(y))
        np.testing.assert_array_equal(dx, dx_ref)
    assert m._packs is not None
    for k in m.grads:
        np.testing.assert_array_equal(m.grads[k], twin.grads[k])


def test_unused_entries_are_dropped(threads):
    m = gc.LSTM(24, 96, seed=1)
    m.eval()
    for N in (1, 3, 16, 1, 2):
        m(_input(m, 5, N))
    sizes = []
    for t in (1, 2, 1, 2):
        gc.set_num_threads(t)
        m(_input(m, 5, 3))
        sizes.append(m._packs.size)
    assert max(sizes) <= 4  # never more than one call's packed weights


def test_copies_and_pickles_pack_their_own():
    m = gc.GRU(6, 32, seed=2)
    m.eval()
    x = _input(m, 8, 2)
    y = m(x)[0]
    for other in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert other._packs is None
        other.parameters()["weight_hh_l0"][...] *= 2  # a copy's weights are its own
        assert not np.array_equal(other(x)[0], y)
        np.testing.assert_array_equal(m(x)[0], y)


def test_concurrent_calls_share_the_packs(threads):
    # Calls from several Python threads at once (the kernels release the GIL) share one WeightPacks:
    # batch sizes that take different paths add and drop entries under each other's feet.
    import threading

    m, twin, _ = _pair("LSTM", {}, 20, 136, seed=6)
    inputs = [_input(m, 30, N, seed=N) for N in (1, 2, 3, 9)]
    expected = [twin(x)[0] for x in inputs]
    failures = []

    def worker(i):
        try:
            for _ in range(15):
                if not np.array_equal(m(inputs[i])[0], expected[i]):
                    failures.append(f"batch {len(inputs[i][0])}: a different result")
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost in the thread
            failures.append(f"batch {len(inputs[i][0])}: {exc!r}")

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(len(inputs))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert failures == []


def test_shallow_copies_and_weak_references_are_seen():
    m = gc.LSTM(4, 8, seed=0)
    m.eval()
    x = _input(m, 5, 2)

    def fresh(module):
        f = gc.LSTM(4, 8, seed=1)
        f.eval()
        f.load_state_dict(module.state_dict())
        return f(x)[0]

    m(x)
    assert m._packs is not None and m._packs.size > 0
    twin = copy.copy(m)  # shares the parameter dict: neither may keep packed weights
    twin.load_state_dict({k: v * 0 + 0.25 for k, v in m.state_dict().items()})
    np.testing.assert_array_equal(m(x)[0], fresh(m))
    np.testing.assert_array_equal(twin(x)[0], fresh(twin))
    assert m._packs is None and twin._packs is None
    del twin
    m(x)
    assert m._packs is not None  # the dict is its own again

    ref = weakref.ref(m.parameters()["weight_hh_l0"])
    m(x)
    assert m._packs is None
    ref()[...] = 0.5
    np.testing.assert_array_equal(m(x)[0], fresh(m))
