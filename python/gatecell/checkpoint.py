# SPDX-License-Identifier: MIT
"""Checkpoints: safetensors files holding torch state-dict names and a description of the model.

A file is an 8-byte little-endian header length, a JSON header (tensor dtypes, shapes, byte
offsets and string metadata) and the tensors' bytes; ``safetensors`` and torch read it, and so does
the C++ reader (``gatecell::load_model``). The metadata entry ``gatecell_model`` holds the model's
``config()`` as JSON, which is enough to rebuild it.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from ._checks import to_numpy
from ._version import __version__

__all__ = ["save", "load", "save_tensors", "load_tensors"]

PathLike = Union[str, "os.PathLike[str]"]

_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
_NAMES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}


def save_tensors(path: PathLike, tensors: Mapping[str, Any], metadata: Optional[Mapping[str, str]] = None) -> None:
    """Writes float32/float64 arrays (one dtype for all) to a safetensors file.

    path: the file to write
    tensors: name -> array (NumPy or torch), written in sorted name order, C order, little-endian
    metadata: str -> str, stored as ``__metadata__``
    """
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors: expected a mapping of names to arrays, got {type(tensors).__name__}")
    arrays: Dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"tensors: expected non-empty string names other than '__metadata__', got {name!r}")
        arr = np.asarray(to_numpy(value))
        if arr.dtype not in _NAMES:
            raise TypeError(f"tensors[{name!r}]: expected dtype float32 or float64, got {arr.dtype}")
        arrays[name] = arr
    dtypes = {a.dtype for a in arrays.values()}
    if len(dtypes) > 1:
        raise TypeError(f"tensors: expected one dtype for every tensor, got {sorted(str(d) for d in dtypes)}")
    meta = dict(metadata or {})
    for k, v in meta.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"metadata: expected str -> str, got {k!r}: {type(v).__name__}")
    header: Dict[str, Any] = {"__metadata__": meta}
    offset = 0
    blobs = []
    for name in sorted(arrays):
        arr = arrays[name]
        blob = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _NAMES[arr.dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data block starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def _fail(path: PathLike, why: str) -> None:
    raise ValueError(f"{os.fspath(path)}: {why}")


def load_tensors(path: PathLike) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """Reads a safetensors file of float32/float64 tensors -> (tensors, metadata).

    path: the file; a truncated or malformed file, overlapping or out-of-range offsets, another
    dtype or mixed dtypes raise ValueError naming the problem.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        _fail(path, f"truncated: {len(raw)} bytes, fewer than the 8-byte header length")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        _fail(path, f"truncated or corrupt: the header claims {n} bytes but only {len(raw) - 8} follow")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{os.fspath(path)}: malformed JSON header: {exc}") from None
    if not isinstance(header, dict):
        _fail(path, "the header is not a JSON object")
    data = memoryview(raw)[8 + n:]
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        _fail(path, "__metadata__ must map strings to strings")
    spans = []
    dtype_seen = None
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            _fail(path, f"tensor {name!r}: expected exactly the fields dtype, shape and data_offsets")
        dtype = entry["dtype"]
        if dtype not in _DTYPES:
            _fail(path, f"tensor {name!r}: unsupported dtype {dtype!r}; expected F32 or F64")
        if dtype_seen is not None and dtype != dtype_seen:
            _fail(path, f"tensor {name!r}: mixed dtypes: {dtype} after {dtype_seen}")
        dtype_seen = dtype
        shape, offs = entry["shape"], entry["data_offsets"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            _fail(path, f"tensor {name!r}: shape must be a list of non-negative integers, got {shape!r}")
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)):
            _fail(path, f"tensor {name!r}: data_offsets must be [begin, end], got {offs!r}")
        begin, end = offs
        if not 0 <= begin <= end <= len(data):
            _fail(path, f"tensor {name!r}: data_offsets [{begin}, {end}] out of range "
                        f"(the data block has {len(data)} bytes)")
        need = int(np.prod(shape, dtype=np.int64)) * _DTYPES[dtype].itemsize
        if end - begin != need:
            _fail(path, f"tensor {name!r}: data_offsets span {end - begin} bytes, shape {tuple(shape)} needs {need}")
        spans.append((begin, end, name, dtype, tuple(shape)))
    spans.sort()
    covered = 0
    for begin, end, name, _, _ in spans:
        if begin < covered:
            _fail(path, f"tensor {name!r} overlaps another tensor")
        if begin > covered:
            _fail(path, f"gap in the data block before tensor {name!r}")
        covered = end
    if covered != len(data):
        _fail(path, f"{len(data) - covered} bytes after the last tensor (corrupt or not a safetensors file)")
    tensors = {name: np.frombuffer(data[begin:end], dtype=_DTYPES[dtype]).astype(_DTYPES[dtype].newbyteorder("="))
               .reshape(shape) for begin, end, name, dtype, shape in spans}
    return tensors, dict(metadata)


def save(path: PathLike, module: Any) -> None:
    """Saves a gatecell module (layer, cell, Linear or Sequential): its weights and its config.

    path: the file to write (safetensors; torch's state-dict names)
    module: anything with ``config()`` and ``state_dict()``
    """
    if not (hasattr(module, "config") and hasattr(module, "state_dict")):
        raise TypeError(f"module: expected a gatecell module with config() and state_dict(), "
                        f"got {type(module).__name__}")
    metadata = {"format": "pt", "gatecell_version": __version__, "gatecell_model": json.dumps(module.config())}
    save_tensors(path, module.state_dict(), metadata)


def load(path: PathLike) -> Any:
    """Rebuilds the module a checkpoint written by ``save`` describes, with its weights."""
    tensors, metadata = load_tensors(path)
    if "gatecell_model" not in metadata:
        _fail(path, "no 'gatecell_model' entry in the metadata (not saved by gatecell.save?)")
    try:
        config = json.loads(metadata["gatecell_model"])
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{os.fspath(path)}: malformed 'gatecell_model' metadata: {exc}") from None
    if not isinstance(config, dict):
        _fail(path, "'gatecell_model' must describe a module (a JSON object)")
    children = config.get("modules") if config.get("type") == "Sequential" else [config]
    children = children if isinstance(children, list) else []
    described = {c.get("dtype") for c in children if isinstance(c, dict)} - {None}
    stored = {{np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}[t.dtype] for t in tensors.values()}
    if stored and described and described != stored:
        _fail(path, f"the model is described as {sorted(described)} but its tensors are {sorted(stored)}")
    try:
        if config.get("type") == "Sequential":
            from .models import Sequential  # lazily: the model zoo is optional for single layers

            module = Sequential.from_config(config)
        else:
            from .layers import module_from_config

            module = module_from_config(config)
    except TypeError as exc:  # an unknown or misspelt config key
        raise ValueError(f"{os.fspath(path)}: the model description does not fit gatecell: {exc}") from None
    try:
        module.load_state_dict(tensors)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{os.fspath(path)}: the tensors do not fit the described model: {exc}") from None
    return module
