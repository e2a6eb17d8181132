# SPDX-License-Identifier: MIT
"""Determinism: outputs and gradients are bitwise identical from run to run and for 1, 2 and 4
threads, for every kind of network. Each thread count runs in its own process (OMP_NUM_THREADS is
read once, when the OpenMP runtime starts); the processes print SHA-256 digests of every array."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from builders import NETWORK_KINDS

THREADS = (1, 2, 4)

# Sizes large enough that every GEMM is split between threads when threads are available.
SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    from builders import NETWORK_KINDS, make_network

    result = {}
    for kind in NETWORK_KINDS:
        # Unidirectional float32 too: there each direction's time loop splits its batch rows
        # between threads (bidirectional layers give each direction a thread of its own).
        cases = [(dtype, batch_first, True) for dtype in (np.float32, np.float64) for batch_first in (False, True)]
        cases += [(np.float32, batch_first, False) for batch_first in (False, True)]
        for dtype, batch_first, bidirectional in cases:
            m = make_network(kind, 64, 96, num_layers=2, bidirectional=bidirectional, dropout=0.3,
                             batch_first=batch_first, dtype=dtype, seed=11)
            rng = np.random.default_rng(5)
            T, N = 24, 64
            x = rng.standard_normal((N, T, 64) if batch_first else (T, N, 64)).astype(dtype)
            lengths = rng.integers(1, T + 1, size=N)
            out, state = m(x, lengths=lengths)
            dx, dstate = m.backward(rng.standard_normal(out.shape).astype(dtype))
            arrays = {"out": out, "dx": dx}
            m.eval()  # inference: each thread projects its own rows' inputs window by window
            infer, infer_state = m(x, lengths=lengths)
            m.train()
            arrays["inference out"] = infer
            for k, a in enumerate(infer_state if isinstance(infer_state, tuple) else (infer_state,)):
                arrays[f"inference state[{k}]"] = a
            for name, s in (("state", state), ("dstate0", dstate)):
                for k, a in enumerate(s if isinstance(s, tuple) else (s,)):
                    arrays[f"{name}[{k}]"] = a
            arrays.update({"grad " + k: g for k, g in m.grads.items()})
            key = (f"{kind} {np.dtype(dtype).name}" + (" batch_first" if batch_first else "")
                   + ("" if bidirectional else " unidirectional"))
            result[key] = {k: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
                           for k, a in arrays.items()}
    json.dump(result, sys.stdout)
""")


def _digests(threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_DYNAMIC="false")
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, here], env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def digests():
    """{threads: digests of the first run}, plus a second run with 2 threads (run-to-run check)."""
    runs = {n: _digests(n) for n in THREADS}
    runs["2 again"] = _digests(2)
    return runs


def _differences(a: dict, b: dict, kind: str) -> list:
    return [f"{case}: {name}" for case in a if case.split()[0] == kind
            for name in a[case] if a[case][name] != b[case][name]]


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_bitwise_identical_across_runs(digests, kind):
    assert not _differences(digests[2], digests["2 again"], kind)


@pytest.mark.parametrize("threads", [2, 4])
@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_bitwise_identical_across_thread_counts(digests, kind, threads):
    diff = _differences(digests[1], digests[threads], kind)
    assert not diff, f"{threads} threads differ from 1 thread in {len(diff)} arrays: " + "; ".join(diff[:6])
