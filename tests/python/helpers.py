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


def numeric_grad(loss, arr, eps=1e-6):
    """Central differences of loss() with respect to every entry of arr (perturbed in place)."""
    g = np.zeros_like(arr)
    flat, gflat = arr.reshape(-1), g.reshape(-1)
    for k in range(flat.size):
        gflat[k] = central_difference(loss, flat, k, eps)
    return g


def output_state_loss(m, x, state, lengths, dy, dstate, is_lstm):
    """loss() = <out, dy> + <state_n, dstate> of a recurrent layer, whose gradients backward(dy, dstate) returns."""
    def loss():
        out, s_n = m(x, state, lengths=lengths)
        total = float(np.sum(out * dy))
        for s, d in zip(s_n if is_lstm else [s_n], dstate):
            total += float(np.sum(s * d))
        return total
    return loss


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


def saved_raw(path, module):
    """Saves `module` with gc.save -> (raw bytes, parsed JSON header, data block)."""
    import json
    import struct

    import gatecell as gc

    gc.save(path, module)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return raw, json.loads(raw[8:8 + n]), raw[8 + n:]


def save_sequential(path, rnn, head, p=0.1):
    """Writes rnn -> Dropout(p) -> LastStep -> head as gc.Sequential describes and saves it."""
    import json

    import gatecell as gc
    from gatecell.checkpoint import save_tensors

    cfg = {"type": "Sequential", "modules": [dict(rnn.config(), name="rnn"), {"name": "drop", "type": "Dropout", "p": p},
                                             {"name": "last", "type": "LastStep"}, dict(head.config(), name="head")]}
    tensors = {f"rnn.{k}": v for k, v in rnn.state_dict().items()}
    tensors.update({f"head.{k}": v for k, v in head.state_dict().items()})
    save_tensors(path, tensors, {"format": "pt", "gatecell_version": gc.__version__, "gatecell_model": json.dumps(cfg)})
    return cfg, tensors
