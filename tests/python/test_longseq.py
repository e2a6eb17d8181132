# SPDX-License-Identifier: MIT
"""A long sequence (T = 100,000, float32) runs in inference in memory that does not grow with T
beyond the output itself. Peak RSS is read from /proc in a fresh subprocess per run (C++ buffers are
invisible to tracemalloc); the peak is reset just before the forward call (clear_refs 5)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import gatecell as gc

    def status(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024

    kind, steps = sys.argv[1], int(sys.argv[2])
    make = {"rnn": gc.RNN, "lstm": gc.LSTM, "gru": gc.GRU}[kind]
    m = make(16, 64, seed=0).eval()
    x = np.ones((steps, 1, 16), np.float32)
    m(x[:10])                                    # load everything lazily allocated once
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                             # reset VmHWM to the current RSS
    before = status("VmRSS")
    out, _ = m(x)
    json.dump({"growth": status("VmHWM") - before, "output": out.nbytes}, sys.stdout)
""")


def _measure(kind: str, steps: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, kind, str(steps)], env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(proc.stdout)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_inference_memory_does_not_grow_with_steps(kind):
    short, long_ = _measure(kind, 1_000), _measure(kind, 100_000)
    extra_short = short["growth"] - short["output"]
    extra_long = long_["growth"] - long_["output"]
    # What a forward needs beside its output must not depend on T: allow 2 MiB of allocator noise.
    assert extra_long - extra_short <= 2 * 2**20, (
        f"{kind}: beyond its output ({long_['output'] / 2**20:.1f} MiB), a T=100,000 forward used "
        f"{extra_long / 2**20:.1f} MiB more, against {extra_short / 2**20:.1f} MiB for T=1,000")
