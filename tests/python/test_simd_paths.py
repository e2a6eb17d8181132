# SPDX-License-Identifier: MIT
"""The AVX-512 kernels give bitwise the AVX2 kernels' results (GATECELL_NO_AVX512=1 in a subprocess:
the path is chosen once per process), for outputs, states and every gradient, over random sizes on
both sides of the GEMM's tile widths (1 to 8 panels of 16 columns, partial last panels), row groups
(1 to 6 rows) and k blocks (256). On a CPU without AVX-512 both runs take the same path and the
test checks only that the variable changes nothing there."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gatecell as gc

HERE = Path(__file__).resolve().parent

KINDS = [("LSTM", {}), ("LSTM", {"proj_size": 7}), ("GRU", {}), ("GRU", {"linear_before_reset": False}),
         ("RNN", {}), ("RNN", {"nonlinearity": "relu"})]


def _grid():
    """Random configurations: kind, T, N, I, H, layers, bidirectional, batch-first, threads."""
    rng = np.random.default_rng(2026)
    cases = []
    for i in range(48):
        kind, extra = KINDS[i % len(KINDS)]
        N = int(rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 17, 33, 64, 100]))
        H = int(rng.choice([3, 8, 16, 17, 31, 48, 64, 100, 128, 200, 260]))
        I = int(rng.choice([1, 5, 16, 40, 64, 130, 300]))
        T = int(rng.integers(1, 12))
        layers = int(rng.choice([1, 1, 2]))
        bidir = bool(rng.random() < 0.3)
        batch_first = bool(rng.random() < 0.3)
        threads = int(rng.choice([1, 2]))
        cases.append((kind, extra, T, N, I, H, layers, bidir, batch_first, threads))
    return cases


GRID = _grid()


def _run(index):
    """One case's outputs: training (forward, backward, every gradient), then inference."""
    kind, extra, T, N, I, H, layers, bidir, batch_first, threads = GRID[index]
    before = gc.get_num_threads()
    gc.set_num_threads(threads)
    try:
        m = getattr(gc, kind)(I, H, num_layers=layers, bidirectional=bidir, batch_first=batch_first,
                              dtype=np.float32, seed=index, **extra)
        rng = np.random.default_rng(index)
        x = rng.standard_normal((N, T, I) if batch_first else (T, N, I)).astype(np.float32)
        lengths = None if N < 3 else rng.integers(1, T + 1, size=N)
        out, state = m(x, lengths=lengths)
        flat = lambda s: list(s) if isinstance(s, tuple) else [s]  # noqa: E731
        dx, dstate = m.backward(rng.standard_normal(out.shape).astype(np.float32))
        arrays = [out, *flat(state), dx, *flat(dstate), *m.grads.values()]
        m.eval()
        out, state = m(x, lengths=lengths)
        return arrays + [out, *flat(state)]
    finally:
        gc.set_num_threads(before)


def _dump(path):
    """Writes every case's arrays and this process's path to an .npz (for the subprocess)."""
    arrays = {"path": np.array(gc.simd_path())}
    for i in range(len(GRID)):
        for k, a in enumerate(_run(i)):
            arrays[f"case{i}_{k}"] = a
    np.savez(path, **arrays)


def _in_subprocess(tmp_path, **env):
    path = tmp_path / "other.npz"
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import test_simd_paths; test_simd_paths._dump({str(path)!r})"
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, **env), cwd=HERE)
    return np.load(path)


def test_avx512_matches_avx2_bitwise(tmp_path):
    other = _in_subprocess(tmp_path, GATECELL_NO_AVX512="1")
    here = gc.simd_path()
    assert str(other["path"]) == ("portable" if here == "portable" else "avx2")
    for i in range(len(GRID)):
        for k, a in enumerate(_run(i)):
            b = other[f"case{i}_{k}"]
            assert a.shape == b.shape and a.tobytes() == b.tobytes(), \
                f"case {GRID[i][:2]} T N I H {GRID[i][2:6]} layers/bi/bf/threads {GRID[i][6:]}: array {k} differs " \
                f"between {here} and {other['path']} (max diff {np.max(np.abs(a - b)):.3g})"


def test_simd_path_reports_the_choice(tmp_path):
    assert gc.simd_path() in ("avx512", "avx2", "portable")
    code = "import gatecell; print(gatecell.simd_path())"
    portable = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                              env=dict(os.environ, GATECELL_PORTABLE="1")).stdout.strip()
    assert portable == "portable"
    if gc.simd_path() == "avx512":
        capped = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                                env=dict(os.environ, GATECELL_NO_AVX512="1")).stdout.strip()
        assert capped == "avx2"


@pytest.mark.parametrize("kind,extra", KINDS[:1] + KINDS[2:])
@pytest.mark.parametrize("H", [8, 9, 19, 33, 58, 100])
def test_a_unit_computes_alike_in_every_lane(kind, extra, H):
    """Every unit of a float32 row of 8 or more units runs the vector gate math, the row's last
    partial register included (masked lanes), so a unit's results do not depend on where it sits.
    With W_hh = 0 each unit is a pointwise function of its own input projection, so reversing the
    units (those of the partial register move into whole ones and back) must reverse the outputs,
    the final states and the weight gradients bit for bit. (A scalar tail, std::exp, differed.)"""
    rng = np.random.default_rng(H)
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[kind]
    perm = np.arange(H)[::-1]
    rows = (np.arange(G)[:, None] * H + perm[None, :]).ravel()  # each gate block's units reversed
    I, T, N = 5, 4, 3
    m = getattr(gc, kind)(I, H, seed=1, **extra).train()
    p = m.parameters()
    p["weight_hh_l0"][...] = 0
    for name in ("bias_ih_l0", "bias_hh_l0"):
        p[name][...] = rng.uniform(-2, 2, p[name].shape)
    twin = getattr(gc, kind)(I, H, seed=1, **extra).train()
    state = {k: v[rows] for k, v in m.state_dict().items()}
    twin.load_state_dict(state)
    x = 3 * rng.standard_normal((T, N, I), dtype=np.float32)  # past the sigmoid's linear range
    dy = rng.standard_normal((T, N, H), dtype=np.float32)
    y, st = m(x)
    y2, st2 = twin(x)
    np.testing.assert_array_equal(y2, y[..., perm])
    for a, b in zip(st if isinstance(st, tuple) else (st,), st2 if isinstance(st2, tuple) else (st2,)):
        np.testing.assert_array_equal(b, a[..., perm])
    m.zero_grad()
    twin.zero_grad()
    m.backward(dy)
    twin.backward(dy[..., perm])
    g, g2 = m.grads, twin.grads
    np.testing.assert_array_equal(g2["weight_ih_l0"], g["weight_ih_l0"][rows])
    np.testing.assert_array_equal(g2["weight_hh_l0"], g["weight_hh_l0"][rows][:, perm])
    for name in ("bias_ih_l0", "bias_hh_l0"):
        np.testing.assert_array_equal(g2[name], g[name][rows])
