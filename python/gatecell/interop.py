# SPDX-License-Identifier: MIT
"""PyTorch interop: ``from_torch(module)`` builds the gatecell twin of a torch layer, ``to_torch(m)`` goes back.

Weights are copied, names and shapes are the same on both sides (torch state-dict names), so the
twins compute the same function. torch is imported only when these functions run.
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

from .layers import Module, module_from_config

__all__ = ["from_torch", "to_torch"]

_RECURRENT = ("RNN", "LSTM", "GRU")
_CELLS = ("RNNCell", "LSTMCell", "GRUCell")


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("gatecell interop needs PyTorch: pip install 'gatecell[torch]'") from exc
    return torch


def _config_of(module: Any) -> Dict[str, Any]:
    """The gatecell config() describing a torch module."""
    name = type(module).__name__
    params = list(module.parameters())
    dtype = str(params[0].dtype).replace("torch.", "") if params else "float32"
    if dtype not in ("float32", "float64"):
        raise TypeError(f"module: expected float32 or float64 parameters, got {dtype}")
    if name in _RECURRENT:
        cfg = {"type": name, "input_size": module.input_size, "hidden_size": module.hidden_size,
               "num_layers": module.num_layers, "batch_first": module.batch_first, "dropout": float(module.dropout),
               "bidirectional": module.bidirectional, "bias": module.bias}
        if name == "RNN":
            cfg["nonlinearity"] = module.nonlinearity
        if name == "LSTM":
            cfg["proj_size"] = module.proj_size
        if name == "GRU":
            cfg["linear_before_reset"] = True  # torch's only form
    elif name in _CELLS:
        cfg = {"type": name, "input_size": module.input_size, "hidden_size": module.hidden_size, "bias": module.bias}
        if name == "RNNCell":
            cfg["nonlinearity"] = module.nonlinearity
        if name == "GRUCell":
            cfg["linear_before_reset"] = True
    elif name == "Linear":
        cfg = {"type": "Linear", "in_features": module.in_features, "out_features": module.out_features,
               "bias": module.bias is not None}
    elif name == "Embedding":
        cfg = {"type": "Embedding", "num_embeddings": module.num_embeddings, "embedding_dim": module.embedding_dim,
               "padding_idx": module.padding_idx}
    else:
        raise TypeError(f"module: expected a torch.nn RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell, Linear or "
                        f"Embedding, got {name}")
    cfg["dtype"] = dtype
    return cfg


def from_torch(module: Any) -> Module:
    """The gatecell twin of a torch.nn RNN/LSTM/GRU, cell, Linear or Embedding, with copied weights.

    module: the torch module (float32 or float64 parameters)
    """
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    if type(module).__name__ == "Embedding":
        from . import models  # noqa: F401  (registers Embedding with module_from_config)
    twin = module_from_config(_config_of(module))
    twin.load_state_dict({k: v.detach().cpu().numpy() for k, v in module.state_dict().items()})
    return twin


def to_torch(module: Module) -> Any:
    """The torch.nn twin of a gatecell layer, with copied weights.

    module: a gatecell RNN/LSTM/GRU, cell, Linear or Embedding (torch has no original-form GRU, no
            cell variants, and gatecell's Sequential has no torch counterpart)
    """
    cfg = dict(module.config())
    variants = [k for k in ("activations", "clip", "input_forget", "peepholes") if k in cfg]
    if variants:
        raise ValueError(f"module: torch.nn has no cell with {', '.join(variants)} (gatecell's ONNX cell variants)")
    torch = _torch()
    kind = cfg.pop("type")
    if kind not in _RECURRENT + _CELLS + ("Linear", "Embedding"):
        raise TypeError(f"module: expected a gatecell RNN, LSTM, GRU, cell, Linear or Embedding, got {kind}")
    dtype = getattr(torch, cfg.pop("dtype"))
    if cfg.pop("reverse", False):
        raise ValueError("module: torch has no reverse-only recurrent layer (reverse=True); flip the sequences "
                         "of a forward layer instead")
    if kind in ("GRU", "GRUCell") and not cfg.pop("linear_before_reset"):
        raise ValueError("module: torch has no GRU with linear_before_reset=False (the original Cho et al. form)")
    twin = getattr(torch.nn, kind)(**cfg, dtype=dtype)
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in module.state_dict().items()})
    return twin
