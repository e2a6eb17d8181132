# SPDX-License-Identifier: MIT
"""The C++ package of the pip-installed gatecell: a fresh CMake project (tests/consumer) and the
example (examples/cpp) build with find_package alone, and the example streams checkpoints saved
from Python to the same outputs (float64 to 1e-12, float32 to 1e-6)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gatecell as gc
from helpers import save_sequential

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 1200  # seconds: a cold configure and build on a loaded 2-core machine


def _tool(name):
    local = Path(sys.executable).parent / name  # the venv's (pip's cmake and ninja)
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} not found: install the test extra (pip install '.[test]')"
    return found


def _gatecell(*args):
    return subprocess.run([sys.executable, "-m", "gatecell", *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def _build(source: Path, build: Path) -> None:
    env = dict(os.environ, CMAKE_PREFIX_PATH=_gatecell("--cmake-dir"))
    cmake = _tool("cmake")
    for cmd in ([cmake, "-S", str(source), "-B", str(build), "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={_tool('ninja')}",
                 "-DCMAKE_BUILD_TYPE=Release"],
                [cmake, "--build", str(build)]):
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}"


def test_module_main():
    cmake_dir = Path(_gatecell("--cmake-dir"))
    assert (cmake_dir / "gatecellConfig.cmake").is_file()
    assert (cmake_dir / "gatecellConfigVersion.cmake").is_file()
    assert (Path(_gatecell("--include-dir")) / "gatecell" / "gatecell.hpp").is_file()
    assert _gatecell("--version") == gc.__version__


def test_consumer_builds_with_find_package(tmp_path):
    _build(ROOT / "tests" / "consumer", tmp_path / "build")
    res = subprocess.run([str(tmp_path / "build" / "consumer")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "threw 1" in res.stdout


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    build = tmp_path_factory.mktemp("example")
    _build(ROOT / "examples" / "cpp", build)
    return build / "stream_checkpoint"


def _run(example, path, x):
    text = "\n".join(" ".join(repr(float(v)) for v in row) for row in x) + "\n"
    res = subprocess.run([str(example), str(path)], input=text, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return np.array([[float(v) for v in line.split()] for line in res.stdout.splitlines()])


TOL = {np.float32: 1e-6, np.float64: 1e-12}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_example_streams_a_saved_layer(example, tmp_path, kind, dtype):
    extra = {"LSTM": dict(proj_size=3), "GRU": dict(linear_before_reset=False), "RNN": {}}[kind]
    m = getattr(gc, kind)(4, 6, num_layers=2, dtype=dtype, seed=3, **extra).eval()
    path = tmp_path / "m.safetensors"
    gc.save(path, m)
    x = np.random.default_rng(0).standard_normal((12, 4)).astype(dtype)
    out, _ = m(x)
    got = _run(example, path, x)
    np.testing.assert_allclose(got, out, rtol=0, atol=TOL[dtype] * max(1.0, np.abs(out).max()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_example_streams_a_sequential(example, tmp_path, dtype):
    """Recurrent + Dropout + LastStep + Linear, as gc.Sequential saves it."""
    rnn = gc.LSTM(3, 8, num_layers=2, dtype=dtype, seed=1).eval()
    head = gc.Linear(8, 2, dtype=dtype, seed=2)
    path = tmp_path / "seq.safetensors"
    save_sequential(path, rnn, head)
    x = np.random.default_rng(1).standard_normal((10, 3)).astype(dtype)
    out, _ = rnn(x)
    expected = head(out)  # the output after each step, as if each step were the last
    got = _run(example, path, x)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL[dtype] * max(1.0, np.abs(expected).max()))


def test_example_reports_a_bad_file(example, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\0\0\0\0\0\0\0{not json")
    res = subprocess.run([str(example), str(bad)], input="", capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "error:" in res.stderr and "truncated" in res.stderr


def test_example_refuses_a_reverse_layer(example, tmp_path):
    path = tmp_path / "rev.safetensors"
    gc.save(path, gc.LSTM(4, 6, reverse=True, seed=3))
    res = subprocess.run([str(example), str(path)], input="", capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "error:" in res.stderr and "reverse" in res.stderr
