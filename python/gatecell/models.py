# SPDX-License-Identifier: MIT
"""Layers beyond the recurrent ones (Embedding, Dropout, LastStep) and Sequential, which composes them.

A Sequential model runs its children in order with no glue code: a recurrent child passes its
full output sequence ``out`` on (its final state is kept in ``model.states``), ``lengths`` reach
every recurrent child and every LastStep, and ``backward`` runs the children in reverse.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ._checks import as_float_array, check_bool, check_float, check_int, shape_str, to_numpy
from .layers import MODULE_TYPES, Module, _CellBase, _RecurrentBase, module_from_config

__all__ = ["Embedding", "Dropout", "LastStep", "Sequential", "is_recurrent"]

Array = np.ndarray


def is_recurrent(module: Any) -> bool:
    """True for the sequence layers RNN, LSTM, GRU (not their cells): they return (out, state)."""
    return isinstance(module, _RecurrentBase) and not isinstance(module, _CellBase)


class Embedding(Module):
    """A lookup table of vectors, torch.nn.Embedding's interface: weight [num_embeddings, embedding_dim].

    num_embeddings: vocabulary size; embedding_dim: vector size
    padding_idx: an index whose row starts at zero and receives no gradient, or None
    Initialised N(0, 1) like torch.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: Optional[int] = None,
                 dtype: Any = np.float32, seed: Optional[int] = None) -> None:
        super().__init__(dtype, seed)
        self.num_embeddings = check_int("num_embeddings", num_embeddings, minimum=1)
        self.embedding_dim = check_int("embedding_dim", embedding_dim, minimum=1)
        if padding_idx is not None:
            padding_idx = check_int("padding_idx", padding_idx)
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"padding_idx: expected a value in [-{self.num_embeddings}, {self.num_embeddings}), "
                                 f"got {padding_idx}")
            padding_idx %= self.num_embeddings
        self.padding_idx = padding_idx
        shape = (self.num_embeddings, self.embedding_dim)
        self._params["weight"] = self._rng.standard_normal(shape).astype(self.dtype)
        self._grads["weight"] = np.zeros(shape, self.dtype)
        if padding_idx is not None:
            self._params["weight"][padding_idx] = 0
        self._saved_idx: Optional[Array] = None

    def forward(self, idx: Any) -> Array:
        """idx: [...] integer indices -> [..., embedding_dim]"""
        idx = np.asarray(to_numpy(idx))
        if idx.dtype.kind not in "iu":
            raise TypeError(f"idx: expected integer indices, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_embeddings):
            raise ValueError(f"idx: expected indices in [0, {self.num_embeddings}), "
                             f"got values from {idx.min()} to {idx.max()}")
        if self.training:
            self._saved_idx = idx
        return self._params["weight"][idx]

    def backward(self, dout: Any) -> None:
        """Adds dout's rows into the gradient of the rows they came from; indices have no gradient."""
        if self._saved_idx is None:
            raise ValueError("backward: no forward call in training mode to differentiate")
        idx = self._saved_idx
        d = as_float_array("dout", dout, self.dtype)
        if d.shape != idx.shape + (self.embedding_dim,):
            raise ValueError(f"dout: expected shape {shape_str(idx.shape + (self.embedding_dim,))}, "
                             f"got {shape_str(d.shape)}")
        flat = idx.reshape(-1)
        rows = d.reshape(-1, self.embedding_dim)
        if self.padding_idx is not None:
            keep = flat != self.padding_idx
            flat, rows = flat[keep], rows[keep]
        np.add.at(self._grads["weight"], flat, rows)
        return None

    def config(self) -> Dict[str, Any]:
        return {"type": "Embedding", "num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "padding_idx": self.padding_idx, "dtype": self.dtype.name}

    def __repr__(self) -> str:
        return f"Embedding({self.num_embeddings}, {self.embedding_dim}, dtype={self.dtype})"


class _Parameterless(Module):
    """A layer with no parameters: works in any float dtype."""

    def __init__(self, seed: Optional[int] = None) -> None:
        super().__init__(np.float32, seed)


class Dropout(_Parameterless):
    """Inverted dropout like torch.nn.Dropout: in training, zero each value with probability p and scale
    the rest by 1/(1-p); identity in eval mode.

    p: drop probability in [0, 1]; seed: seeds the masks
    """

    def __init__(self, p: float = 0.5, seed: Optional[int] = None) -> None:
        super().__init__(seed)
        self.p = check_float("p", p, 0.0, 1.0)
        self._mask: Optional[Array] = None

    def forward(self, x: Any) -> Array:
        x = np.asarray(to_numpy(x))
        if not self.training or self.p == 0:
            self._mask = None
            return x
        keep = self._rng.random(x.shape) >= self.p
        scale = 0.0 if self.p == 1 else 1.0 / (1.0 - self.p)
        self._mask = keep.astype(x.dtype) * x.dtype.type(scale)
        return x * self._mask

    def backward(self, dout: Any) -> Array:
        d = np.asarray(to_numpy(dout))
        return d if self._mask is None else d * self._mask

    def config(self) -> Dict[str, Any]:
        return {"type": "Dropout", "p": self.p}

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"


class LastStep(_Parameterless):
    """Each sequence's output at its last valid step: [T, N, C] (or [N, T, C]) -> [N, C].

    With ``lengths`` the step is lengths[n] - 1, else T - 1; for a bidirectional layer this takes the
    forward direction's last step and the reverse direction's output there, as torch users do with
    ``out[lengths - 1, arange(N)]``.
    """

    def __init__(self) -> None:
        super().__init__(None)
        self._saved: Optional[Tuple[Tuple[int, ...], Array, bool, np.dtype]] = None

    def forward(self, x: Any, lengths: Any = None, batch_first: bool = False) -> Array:
        """x: [T, N, C] or [N, T, C] (batch_first); lengths: [N] valid steps, or None for all T"""
        x = np.asarray(to_numpy(x))
        if x.ndim != 3:
            raise ValueError(f"x: expected a sequence of shape (T, N, C) or (N, T, C), got {shape_str(x.shape)}")
        batch_first = check_bool("batch_first", batch_first)
        steps, batch = (x.shape[1], x.shape[0]) if batch_first else x.shape[:2]
        if lengths is None:
            last = np.full(batch, steps - 1, dtype=np.int64)
        else:
            lens = np.asarray(to_numpy(lengths))
            if lens.shape != (batch,) or lens.dtype.kind not in "iu":
                raise ValueError(f"lengths: expected {batch} integers, got shape {shape_str(lens.shape)} "
                                 f"and dtype {lens.dtype}")
            if batch and (lens.min() < 1 or lens.max() > steps):
                raise ValueError(f"lengths: every length must be in [1, {steps}], got values from {lens.min()} "
                                 f"to {lens.max()}")
            last = lens.astype(np.int64) - 1
        n = np.arange(batch)
        if self.training:
            self._saved = (x.shape, last, batch_first, x.dtype)
        return x[n, last] if batch_first else x[last, n]

    def backward(self, dout: Any) -> Array:
        """dout: [N, C] -> gradient of x, zero except at each sequence's last valid step"""
        if self._saved is None:
            raise ValueError("backward: no forward call in training mode to differentiate")
        shape, last, batch_first, dtype = self._saved
        d = np.asarray(to_numpy(dout))
        batch = shape[0] if batch_first else shape[1]
        if d.shape != (batch, shape[2]):
            raise ValueError(f"dout: expected shape {shape_str((batch, shape[2]))}, got {shape_str(d.shape)}")
        dx = np.zeros(shape, dtype)
        n = np.arange(batch)
        if batch_first:
            dx[n, last] = d
        else:
            dx[last, n] = d
        return dx

    def config(self) -> Dict[str, Any]:
        return {"type": "LastStep"}

    def __repr__(self) -> str:
        return "LastStep()"


Children = Union[Sequence[Any], Mapping[str, Any]]


class Sequential(Module):
    """Children applied in order, with forward and backward needing no glue (see the module docstring).

    modules: a list of modules (named "0", "1", ...), a list of (name, module) pairs or a mapping name -> module

    >>> import gatecell as gc
    >>> model = gc.Sequential([("rnn", gc.LSTM(1, 8, batch_first=True)), ("last", gc.LastStep()),
    ...                        ("head", gc.Linear(8, 1))])
    >>> sorted(model.state_dict())[:2]
    ['head.bias', 'head.weight']
    """

    def __init__(self, modules: Children) -> None:
        if isinstance(modules, Mapping):
            items = list(modules.items())
        elif isinstance(modules, (list, tuple)):
            items = [m if isinstance(m, tuple) else (str(k), m) for k, m in enumerate(modules)]
        else:
            raise TypeError(f"modules: expected a list or a mapping of modules, got {type(modules).__name__}")
        if not items:
            raise ValueError("modules: expected at least one module, got none")
        self._children: "OrderedDict[str, Module]" = OrderedDict()
        for k, item in enumerate(items):
            if len(item) != 2 or not isinstance(item[0], str):
                raise TypeError(f"modules[{k}]: expected a (name, module) pair, got {item!r}")
            name, module = item
            if not isinstance(module, Module):
                raise TypeError(f"modules[{k}] ({name!r}): expected a gatecell module, got {type(module).__name__}")
            if not name or "." in name or name in self._children:
                raise ValueError(f"modules[{k}]: names must be unique, non-empty and without '.', got {name!r}")
            self._children[name] = module
        dtypes = {m.dtype for m in self._children.values() if not isinstance(m, _Parameterless)}
        if len(dtypes) > 1:
            raise TypeError(f"modules: expected one dtype for every module, got {sorted(d.name for d in dtypes)}")
        self.dtype = dtypes.pop() if dtypes else np.dtype(np.float32)
        self.training = True
        self.states: Dict[str, Any] = {}

    # -- composition -------------------------------------------------------------------------
    def __getitem__(self, name: Union[str, int]) -> Module:
        if isinstance(name, int):
            return list(self._children.values())[name]
        return self._children[name]

    def __len__(self) -> int:
        return len(self._children)

    def named_children(self) -> List[Tuple[str, Module]]:
        return list(self._children.items())

    @property
    def batch_first(self) -> bool:
        """The layout of the first recurrent child (time-major if there is none)."""
        for m in self._children.values():
            if is_recurrent(m):
                return m.batch_first
        return False

    def forward(self, x: Any, lengths: Any = None) -> Array:
        """Runs every child in order.

        x: the first child's input (token indices for an Embedding, else [T, N, I] / [N, T, I])
        lengths: [N] valid steps per sequence, given to recurrent children and LastStep
        returns the last child's output; recurrent children's final states go to ``self.states``
        """
        batch_first = self.batch_first
        self.states = {}
        for name, m in self._children.items():
            if is_recurrent(m):
                x, self.states[name] = m(x, lengths=lengths)
                batch_first = m.batch_first
            elif isinstance(m, LastStep):
                x = m(x, lengths=lengths, batch_first=batch_first)
            else:
                x = m(x)
        return x

    def backward(self, dout: Any) -> Any:
        """Runs every child's backward in reverse; returns the gradient of the input (None after an Embedding).

        dout: gradient of the output of the most recent training-mode forward call
        """
        d = dout
        for m in reversed(self._children.values()):
            if is_recurrent(m):
                d, _ = m.backward(d)
            else:
                d = m.backward(d)
        return d

    # -- parameters --------------------------------------------------------------------------
    def parameters(self) -> Dict[str, Array]:
        return {f"{n}.{k}": v for n, m in self._children.items() for k, v in m.parameters().items()}

    @property
    def grads(self) -> Dict[str, Array]:
        return {f"{n}.{k}": v for n, m in self._children.items() for k, v in m.grads.items()}

    def zero_grad(self) -> None:
        for m in self._children.values():
            m.zero_grad()

    def train(self, mode: bool = True) -> "Sequential":
        self.training = check_bool("mode", mode)
        for m in self._children.values():
            m.train(mode)
        return self

    def state_dict(self) -> Dict[str, Array]:
        """Every child's state dict with its names prefixed by ``<child name>.``, as torch names nested modules."""
        return {f"{n}.{k}": v for n, m in self._children.items() for k, v in m.state_dict().items()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Loads prefixed names (``rnn.weight_ih_l0``, ``head.bias``) into the children; all keys must match."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict: expected a mapping, got {type(state_dict).__name__}")
        ours = self.parameters()
        missing = [k for k in ours if k not in state_dict]
        unexpected = [k for k in state_dict if k not in ours]
        if missing or unexpected:
            raise ValueError(f"state_dict: missing keys {missing}, unexpected keys {unexpected}")
        parts: Dict[str, Dict[str, Any]] = {n: {} for n in self._children}
        for key, value in state_dict.items():
            child, _, rest = key.partition(".")
            parts[child][rest] = value
        # Check every child's part before writing any, so a bad entry leaves the model untouched.
        for name, part in parts.items():
            for k, v in part.items():
                arr = np.asarray(to_numpy(v))
                expected = self._children[name].parameters()[k].shape
                if arr.shape != expected:
                    raise ValueError(f"state_dict[{name + '.' + k!r}]: expected shape {shape_str(expected)}, "
                                     f"got {shape_str(arr.shape)}")
        for name, part in parts.items():
            if part:
                self._children[name].load_state_dict(part)

    # -- description -------------------------------------------------------------------------
    def config(self) -> Dict[str, Any]:
        """``{"type": "Sequential", "modules": [{"name": ..., <child config>}, ...]}`` (the checkpoint form)."""
        return {"type": "Sequential", "modules": [dict(name=n, **m.config()) for n, m in self._children.items()]}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Sequential":
        """Builds the model a ``config()`` dict describes (parameters freshly initialised)."""
        if not isinstance(config, Mapping) or config.get("type") != "Sequential":
            raise ValueError(f"config: expected a mapping with type 'Sequential', got {config!r}")
        modules = config.get("modules")
        if not isinstance(modules, list) or not modules:
            raise ValueError(f"config['modules']: expected a non-empty list of module configs, got {modules!r}")
        items = []
        for k, entry in enumerate(modules):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
                raise ValueError(f"config['modules'][{k}]: expected a mapping with a 'name' string, got {entry!r}")
            child = dict(entry)
            name = child.pop("name")
            items.append((name, module_from_config(child)))
        return cls(items)

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({n}): {m!r}" for n, m in self._children.items())
        return f"Sequential({inner}\n)"


def _sequential_from_modules(modules: List[Mapping[str, Any]]) -> Sequential:
    return Sequential.from_config({"type": "Sequential", "modules": modules})


# module_from_config (and so checkpoints) learns the layers defined here.
MODULE_TYPES.update({"Embedding": Embedding, "Dropout": Dropout, "LastStep": LastStep,
                     "Sequential": _sequential_from_modules})  # type: ignore[dict-item]
