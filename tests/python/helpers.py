# SPDX-License-Identifier: MIT
"""Comparison helpers for the test suites."""

import numpy as np

TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}


def rel_err(actual, expected) -> float:
    """max |a - e| relative to the magnitude of e (at least 1)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    if actual.size == 0:
        return 0.0
    assert np.all(np.isfinite(actual)), "non-finite values"
    return float(np.max(np.abs(actual - expected)) / max(1.0, float(np.max(np.abs(expected)))))


def assert_close(name, actual, expected, dtype, errors=None):
    err = rel_err(actual, expected)
    if errors is not None:
        errors.append(err)
    assert err <= TOL[np.dtype(dtype)], f"{name}: relative error {err:.3e} > {TOL[np.dtype(dtype)]:.0e}"
    return err


def central_difference(loss, arr, index, eps=1e-6):
    """(loss(arr[index] + eps) - loss(arr[index] - eps)) / (2 eps), perturbing arr in place and restoring it."""
    old = arr[index]
    arr[index] = old + eps
    up = loss()
    arr[index] = old - eps
    down = loss()
    arr[index] = old
    return (up - down) / (2 * eps)


def read_safetensors(path):
    """(tensors, metadata) of a safetensors file, read by hand from the format's definition."""
    import json
    import struct
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = {"F32": np.float32, "F64": np.float64}[info["dtype"]]
        tensors[name] = np.frombuffer(body[begin:end], dtype=dtype).reshape(info["shape"]).copy()
    return tensors, header.get("__metadata__", {})


def stand_in_checkpoint(monkeypatch):
    """gatecell.checkpoint if this build has it, else a minimal safetensors save/load standing in for it
    (installed with monkeypatch for one test only)."""
    import json
    import struct
    import sys
    import types

    import gatecell as gc
    try:
        from gatecell import checkpoint
        return checkpoint
    except ImportError:
        pass

    def save(path, module):
        tensors = module.state_dict()
        header = {"__metadata__": {"format": "pt", "gatecell_model": json.dumps(module.config())}}
        offset, blobs = 0, []
        for name in sorted(tensors):
            a = np.ascontiguousarray(tensors[name])
            header[name] = {"dtype": {"float32": "F32", "float64": "F64"}[a.dtype.name], "shape": list(a.shape),
                            "data_offsets": [offset, offset + a.nbytes]}
            offset += a.nbytes
            blobs.append(a.tobytes())
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))

    def load(path):
        tensors, meta = read_safetensors(path)
        module = gc.module_from_config(json.loads(meta["gatecell_model"]))
        module.load_state_dict(tensors)
        return module

    fake = types.ModuleType("gatecell.checkpoint")
    fake.save, fake.load = save, load
    monkeypatch.setitem(sys.modules, "gatecell.checkpoint", fake)
    monkeypatch.setattr(gc, "checkpoint", fake, raising=False)
    return fake
