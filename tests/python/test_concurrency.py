# SPDX-License-Identifier: MIT
"""Threads: the GIL is released during compute, concurrent inference equals serial inference bit
for bit, and a training-mode layer shared by threads behaves as documented (docs/reliability.md)."""

import sys
import threading

import numpy as np
import pytest

import gatecell as gc

KINDS = [lambda **kw: gc.RNN(6, 8, **kw), lambda **kw: gc.LSTM(6, 8, proj_size=5, **kw),
         lambda **kw: gc.GRU(6, 8, **kw), lambda **kw: gc.GRU(6, 8, linear_before_reset=False, **kw)]
IDS = ["rnn", "lstm_proj", "gru", "gru_original"]


def test_gil_released_during_forward():
    """While one thread is inside a forward call, another thread runs Python.

    The switch interval is raised so that a thread holding the GIL keeps it until it blocks or
    releases it. The worker signals `entered`, then runs forwards until the main thread, woken by
    `entered`, has set `seen`. If the kernels held the GIL, the main thread could not run before
    the worker finished all its calls, and every check of `seen` after a call would be False.
    """
    m = gc.LSTM(32, 64, seed=0).eval()
    x = np.ones((200, 8, 32), np.float32)
    entered, seen = threading.Event(), threading.Event()
    seen_after_call = []

    def worker():
        entered.set()
        for _ in range(50):
            m(x)
            seen_after_call.append(seen.is_set())
            if seen_after_call[-1]:
                return

    old = sys.getswitchinterval()
    sys.setswitchinterval(60.0)
    try:
        t = threading.Thread(target=worker)
        t.start()
        entered.wait()
        seen.set()
        t.join()
    finally:
        sys.setswitchinterval(old)
    assert any(seen_after_call), f"the main thread never ran during {len(seen_after_call)} forward calls"


@pytest.mark.parametrize("make", KINDS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_concurrent_inference_equals_serial(make, dtype):
    m = make(num_layers=2, bidirectional=True, dtype=dtype, seed=3).eval()
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((12, 3, 6)).astype(dtype) for _ in range(16)]
    lengths = [None if k % 2 else rng.integers(1, 13, size=3) for k in range(16)]
    serial = [m(x, lengths=n) for x, n in zip(inputs, lengths)]
    results = [None] * len(inputs)
    barrier = threading.Barrier(4)

    def run(k0):
        barrier.wait()
        for _ in range(3):
            for k in range(k0, len(inputs), 4):
                results[k] = m(inputs[k], lengths=lengths[k])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (y, s), (y_ref, s_ref) in zip(results, serial):
        np.testing.assert_array_equal(y, y_ref)
        for a, b in zip(s if isinstance(s, tuple) else [s], s_ref if isinstance(s_ref, tuple) else [s_ref]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make", KINDS, ids=IDS)
def test_training_layer_shared_by_threads(make):
    """Forward and backward of one training-mode layer from two threads at once.

    Documented behaviour: each forward saves its own activations and `backward` differentiates the
    most recent one; backward calls on one layer take turns, so the gradients of every call are
    added. With the same input in both threads, the result is bit for bit that of the same calls made
    one after another.
    """
    m = make(num_layers=2, bidirectional=True, dtype=np.float64, seed=1)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((30, 4, 6))
    out, _ = m(x)
    dy = rng.standard_normal(out.shape)
    rounds = 20
    m.zero_grad()
    for _ in range(2 * rounds):  # the serial run: the same calls, one after another
        m(x)
        dx_ref, _ = m.backward(dy)
    serial = {k: g.copy() for k, g in m.grads.items()}
    m.zero_grad()

    dxs = [[], []]
    barrier = threading.Barrier(2)

    def run(slot):
        barrier.wait()
        for _ in range(rounds):
            m(x)
            dxs[slot].append(m.backward(dy)[0])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for d in dxs[0] + dxs[1]:
        np.testing.assert_array_equal(d, dx_ref)
    for k, g in m.grads.items():
        np.testing.assert_array_equal(g, serial[k], err_msg=k)


def test_training_forward_while_backward_runs():
    """A forward in another thread replaces the saved activations mid-backward: the running backward
    keeps its own (the cache is held alive), and never reads freed memory."""
    m = gc.GRU(6, 16, num_layers=2, dtype=np.float64, seed=4)
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((50, 4, 6)) for _ in range(2)]
    out, _ = m(xs[0])
    dy = rng.standard_normal(out.shape)
    expected = {}
    for k, x in enumerate(xs):
        m(x)
        expected[k] = m.backward(dy)[0]
    errors = []

    def forwards():
        try:
            for k in range(40):
                m(xs[k % 2])
        except Exception as e:  # an exception in a thread would otherwise only warn
            errors.append(e)

    def backwards():
        try:
            for _ in range(40):
                dx = m.backward(dy)[0]
                if not any(np.array_equal(dx, e) for e in expected.values()):
                    errors.append(dx)
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=forwards), threading.Thread(target=backwards)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, "a backward returned a gradient of neither forward call"
