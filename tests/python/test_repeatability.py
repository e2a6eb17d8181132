# SPDX-License-Identifier: MIT
"""Run-to-run determinism in one process: the same call twice gives the same bits, outputs and
gradients, for every kind (thread-count independence is checked in its own processes)."""

import numpy as np
import pytest

from builders import NETWORK_KINDS, make_network


def _run(kind, dtype, batch_first):
    m = make_network(kind, 8, 12, num_layers=3, bidirectional=True, dropout=0.25, batch_first=batch_first, dtype=dtype, seed=9)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 15, 8) if batch_first else (15, 6, 8)).astype(dtype)
    out, state = m(x, lengths=[15, 3, 9, 1, 15, 7])
    dx, dstate = m.backward(rng.standard_normal(out.shape).astype(dtype))
    arrays = [out, dx] + [a for s in (state, dstate) for a in (s if isinstance(s, tuple) else (s,))]
    return arrays + [m.grads[k] for k in sorted(m.grads)]


@pytest.mark.parametrize("kind", NETWORK_KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_first", [False, True])
def test_same_bits_every_run(kind, dtype, batch_first):
    first, second = _run(kind, dtype, batch_first), _run(kind, dtype, batch_first)
    for a, b in zip(first, second):
        assert a.tobytes() == b.tobytes()
