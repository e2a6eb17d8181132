# SPDX-License-Identifier: MIT
"""``gatecell verify``: gatecell against PyTorch (and ONNX Runtime when installed) on random configurations,
as a table of the largest errors: outputs, final states, input and parameter gradients.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

from .convert import torch_to_onnx
from .layers import GRU, LSTM, RNN

__all__ = ["random_config", "check_torch", "check_onnx", "run_verify"]

_CLASSES = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}
# ONNX gate order from torch's: LSTM i f g o -> i o f c; GRU r z n -> z r h.


def random_config(rng: np.random.Generator) -> Dict[str, Any]:
    """A random layer configuration and problem size."""
    kind = str(rng.choice(list(_CLASSES)))
    cfg: Dict[str, Any] = {"kind": kind, "input_size": int(rng.integers(1, 9)), "hidden_size": int(rng.integers(1, 17)),
                           "num_layers": int(rng.integers(1, 4)), "bidirectional": bool(rng.integers(0, 2)),
                           "batch_first": bool(rng.integers(0, 2)), "bias": bool(rng.random() < 0.8),
                           "dtype": str(rng.choice(["float32", "float64"])), "steps": int(rng.integers(1, 30)),
                           "batch": int(rng.integers(1, 9)), "lengths": bool(rng.integers(0, 2))}
    if kind == "RNN":
        cfg["nonlinearity"] = str(rng.choice(["tanh", "relu"]))
    if kind == "LSTM" and cfg["hidden_size"] > 1 and rng.random() < 0.3:
        cfg["proj_size"] = int(rng.integers(1, cfg["hidden_size"]))
    return cfg


def _describe(cfg: Dict[str, Any]) -> str:
    s = f"{cfg['kind']} {cfg['input_size']}->{cfg['hidden_size']} L{cfg['num_layers']}"
    s += " bi" if cfg["bidirectional"] else ""
    s += " bf" if cfg["batch_first"] else ""
    s += "" if cfg["bias"] else " nobias"
    s += f" proj{cfg['proj_size']}" if cfg.get("proj_size") else ""
    s += f" {cfg.get('nonlinearity', '')}" if cfg["kind"] == "RNN" else ""
    return s + f" T{cfg['steps']} N{cfg['batch']}" + (" lens" if cfg["lengths"] else "") + f" {cfg['dtype'][5:]}"


def _layer_kwargs(cfg: Dict[str, Any]) -> Dict[str, Any]:
    keys = ["input_size", "hidden_size", "num_layers", "bidirectional", "batch_first", "bias"]
    kw = {k: cfg[k] for k in keys}
    for k in ("nonlinearity", "proj_size"):
        if k in cfg:
            kw[k] = cfg[k]
    return kw


def _inputs(cfg: Dict[str, Any], rng: np.random.Generator):
    T, N = cfg["steps"], cfg["batch"]
    shape = (N, T, cfg["input_size"]) if cfg["batch_first"] else (T, N, cfg["input_size"])
    x = rng.standard_normal(shape).astype(cfg["dtype"])
    lengths = rng.integers(1, T + 1, size=N) if cfg["lengths"] else None
    return x, lengths


def _err(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b))))) if a.size else 0.0


def check_torch(cfg: Dict[str, Any], seed: int) -> Dict[str, float]:
    """Relative max errors of gatecell against torch.nn for one configuration: out, h_n, dx, parameter grads."""
    import torch

    rng = np.random.default_rng(seed)
    layer = _CLASSES[cfg["kind"]](**_layer_kwargs(cfg), dtype=cfg["dtype"], seed=seed)
    tl = getattr(torch.nn, cfg["kind"])(**_layer_kwargs(cfg), dtype=getattr(torch, cfg["dtype"]))
    tl.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in layer.state_dict().items()})
    x, lengths = _inputs(cfg, rng)
    out, state = layer(x, lengths=lengths)
    h_n = state[0] if cfg["kind"] == "LSTM" else state
    dout = rng.standard_normal(out.shape).astype(cfg["dtype"])
    if lengths is not None:
        valid = (np.arange(cfg["steps"])[:, None] < lengths[None, :])
        dout *= (valid.T if cfg["batch_first"] else valid)[..., None]
    dx, _ = layer.backward(dout)

    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    if lengths is not None:
        packed = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.from_numpy(lengths), batch_first=cfg["batch_first"],
                                                         enforce_sorted=False)
        tout, tstate = tl(packed)
        tout, _ = torch.nn.utils.rnn.pad_packed_sequence(tout, batch_first=cfg["batch_first"],
                                                         total_length=cfg["steps"])
    else:
        tout, tstate = tl(tx)
    th_n = tstate[0] if cfg["kind"] == "LSTM" else tstate
    (tout * torch.from_numpy(dout)).sum().backward()
    grads = dict(tl.named_parameters())
    return {"out": _err(out, tout.detach().numpy()), "h_n": _err(h_n, th_n.detach().numpy()),
            "dx": _err(dx, tx.grad.numpy()),
            "dparams": max(_err(layer.grads[k], grads[k].grad.numpy()) for k in layer.grads)}


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def check_onnx(cfg: Dict[str, Any], seed: int) -> Optional[Dict[str, float]]:
    """Relative max errors of gatecell against ONNX Runtime (one layer, time-major, float32; else None)."""
    if cfg["num_layers"] != 1 or cfg.get("proj_size") or cfg["dtype"] != "float32":
        return None
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    kw = dict(_layer_kwargs(cfg), batch_first=False)
    layer = _CLASSES[cfg["kind"]](**kw, dtype=np.float32, seed=seed).eval()
    x, lengths = _inputs(dict(cfg, batch_first=False), rng)
    out, state = layer(x, lengths=lengths)
    h_n = state[0] if cfg["kind"] == "LSTM" else state
    H, D = cfg["hidden_size"], 2 if cfg["bidirectional"] else 1
    onnx_weights = torch_to_onnx(cfg["kind"].lower(), layer.parameters())
    inits = [numpy_helper.from_array(onnx_weights["W"], "W"), numpy_helper.from_array(onnx_weights["R"], "R")]
    inputs = ["X", "W", "R"]
    if onnx_weights["B"] is not None:
        inits.append(numpy_helper.from_array(onnx_weights["B"], "B"))
        inputs.append("B")
    else:
        inputs.append("")
    feeds = {"X": x}
    if lengths is not None:
        inputs.append("sequence_lens")
        feeds["sequence_lens"] = lengths.astype(np.int32)
    attrs: Dict[str, Any] = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
    if cfg["kind"] == "GRU":
        attrs["linear_before_reset"] = 1
    if cfg["kind"] == "RNN":
        attrs["activations"] = ["Tanh" if cfg.get("nonlinearity", "tanh") == "tanh" else "Relu"] * D
    node = helper.make_node(cfg["kind"], inputs, ["Y", "Y_h"], **attrs)
    T, N = x.shape[:2]
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(x.shape))]
    if lengths is not None:
        graph_inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, [N]))
    graph = helper.make_graph([node], "verify", graph_inputs,
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [T, D, N, H]),
                               helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [D, N, H])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = min(model.ir_version, 8)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    Y, Y_h = sess.run(None, feeds)
    return {"out": _err(out, Y.transpose(0, 2, 1, 3).reshape(T, N, D * H)), "h_n": _err(h_n, Y_h)}


def run_verify(cases: int = 20, seed: int = 0, onnx: bool = True, out: Any = print) -> List[Dict[str, Any]]:
    """Checks `cases` random configurations and prints the error table; returns its rows.

    cases: number of configurations; seed: draws them; onnx: also compare with ONNX Runtime when installed
    out: where lines go (print)
    """
    rng = np.random.default_rng(seed)
    use_onnx = onnx and onnx_available()
    rows = []
    header = f"{'configuration':<46} {'out':>9} {'h_n':>9} {'dx':>9} {'dparams':>9}"
    header += f" {'onnx out':>9} {'onnx h_n':>9}" if use_onnx else ""
    out(header)
    for k in range(cases):
        cfg = random_config(rng)
        errs: Dict[str, Any] = dict(check_torch(cfg, seed * 1000 + k))
        line = f"{_describe(cfg):<46}" + "".join(f" {errs[c]:>9.1e}" for c in ("out", "h_n", "dx", "dparams"))
        if use_onnx:
            o = check_onnx(cfg, seed * 1000 + k)
            errs["onnx"] = o
            line += " " + (f"{o['out']:>9.1e} {o['h_n']:>9.1e}" if o else f"{'-':>9} {'-':>9}")
        out(line)
        rows.append({"config": cfg, "errors": errs})
    worst = {c: max(r["errors"][c] for r in rows) for c in ("out", "h_n", "dx", "dparams")}
    out("largest relative error vs torch: " + ", ".join(f"{c} {v:.1e}" for c, v in worst.items()))
    if not use_onnx:
        out("ONNX Runtime not installed (pip install onnx onnxruntime): ONNX columns skipped")
    return rows
