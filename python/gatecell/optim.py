# SPDX-License-Identifier: MIT
"""Optimizers, gradient clipping and learning-rate schedules, with torch.optim's update rules.

For a parameter p with gradient g at step k (counting from 1):

    SGD     g <- g + wd p;  b <- mu b + (1 - damp) g  (b = g at k = 1)                  (O1)
            p <- p - lr (g + mu b) if nesterov else p - lr b                            (O2)
    Adam    g <- g + wd p;  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2            (O3)
            p <- p - lr/(1 - b1^k) * m / (sqrt(v_max)/sqrt(1 - b2^k) + eps)             (O4)
            (v_max = max over steps of v with amsgrad, else v)
    AdamW   p <- p (1 - lr wd), then (O3)-(O4) without the wd term                     (O5)
    clip    total = ||(g_1, g_2, ...)||_2;  g <- g * max_norm / (total + 1e-6) if larger  (O6)

Optimizers take the modules to train (one or a list); each module's ``parameters()`` and
``grads`` are its live arrays, which are updated in place.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Sequence, Tuple, Union

import numpy as np

from ._checks import check_bool, check_int

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm", "LRSchedule", "StepLR", "CosineLR", "WarmupLR"]

Modules = Union[Any, Sequence[Any]]


def _pairs(modules: Modules) -> List[Tuple[np.ndarray, np.ndarray]]:
    """(parameter, gradient) pairs of every module, in a stable order."""
    if hasattr(modules, "parameters") and hasattr(modules, "grads"):
        modules = [modules]
    if not isinstance(modules, Iterable):
        raise TypeError(f"modules: expected a gatecell module or a list of them, got {type(modules).__name__}")
    pairs = []
    for k, m in enumerate(modules):
        if not (hasattr(m, "parameters") and hasattr(m, "grads")):
            raise TypeError(f"modules[{k}]: expected a gatecell module (parameters() and grads), "
                            f"got {type(m).__name__}")
        params, grads = m.parameters(), m.grads
        for name, p in params.items():
            pairs.append((p, grads[name]))
    return pairs


def _nonneg(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name}: expected a float, got {type(value).__name__}")
    if not value >= 0:
        raise ValueError(f"{name}: expected a value >= 0, got {value}")
    return float(value)


class Optimizer:
    """Shared by every optimizer: the (parameter, gradient) pairs, the learning rate and zero_grad."""

    def __init__(self, modules: Modules, lr: float) -> None:
        self._pairs = _pairs(modules)
        self.lr = _nonneg("lr", lr)
        self.steps = 0

    def zero_grad(self) -> None:
        """Sets every gradient to zero (backward adds into them)."""
        for _, g in self._pairs:
            g.fill(0)

    def step(self) -> None:
        """One update of every parameter from its gradient."""
        self.steps += 1
        for k, (p, g) in enumerate(self._pairs):
            self._update(k, p, g)

    def _update(self, k: int, p: np.ndarray, g: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay (O1)-(O2).

    modules: a module or list of modules to train
    lr: learning rate; momentum: mu; dampening: damp; weight_decay: wd (L2 added to the gradient)
    nesterov: Nesterov momentum (needs momentum > 0 and dampening = 0, as in torch)
    """

    def __init__(self, modules: Modules, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(modules, lr)
        self.momentum = _nonneg("momentum", momentum)
        self.dampening = _nonneg("dampening", dampening)
        self.weight_decay = _nonneg("weight_decay", weight_decay)
        self.nesterov = check_bool("nesterov", nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(f"nesterov: needs momentum > 0 and dampening = 0, got momentum={self.momentum}, "
                             f"dampening={self.dampening}")
        self._buf: Dict[int, np.ndarray] = {}

    def _update(self, k: int, p: np.ndarray, g: np.ndarray) -> None:
        d = g + self.weight_decay * p if self.weight_decay else g.copy()
        if self.momentum:
            b = self._buf.get(k)
            if b is None:
                b = self._buf[k] = d.copy()
            else:
                b *= self.momentum
                b += (1 - self.dampening) * d                       # (O1)
            d = d + self.momentum * b if self.nesterov else b       # (O2)
        p -= (self.lr * d).astype(p.dtype)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with torch's bias correction, L2 weight decay and AMSGrad (O3)-(O4).

    modules: a module or list of modules to train
    lr: learning rate; betas: (b1, b2) decay of the first and second moments; eps: added to the denominator
    weight_decay: L2 penalty added to the gradient (see AdamW for the decoupled form); amsgrad: use max v
    """

    _decoupled = False

    def __init__(self, modules: Modules, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        super().__init__(modules, lr)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(0 <= b < 1 for b in betas)):
            raise ValueError(f"betas: expected two values in [0, 1), got {betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = _nonneg("eps", eps)
        self.weight_decay = _nonneg("weight_decay", weight_decay)
        self.amsgrad = check_bool("amsgrad", amsgrad)
        self._m: Dict[int, np.ndarray] = {}
        self._v: Dict[int, np.ndarray] = {}
        self._v_max: Dict[int, np.ndarray] = {}

    def _update(self, k: int, p: np.ndarray, g: np.ndarray) -> None:
        b1, b2 = self.betas
        if self.weight_decay:
            if self._decoupled:
                p *= p.dtype.type(1 - self.lr * self.weight_decay)  # (O5)
            else:
                g = g + self.weight_decay * p
        if k not in self._m:
            self._m[k], self._v[k] = np.zeros_like(p), np.zeros_like(p)
        m, v = self._m[k], self._v[k]
        m *= b1
        m += (1 - b1) * g                                           # (O3)
        v *= b2
        v += (1 - b2) * g * g
        if self.amsgrad:
            v_max = self._v_max.setdefault(k, np.zeros_like(p))
            np.maximum(v_max, v, out=v_max)
            v = v_max
        step_size = self.lr / (1 - b1 ** self.steps)
        denom = np.sqrt(v) / math.sqrt(1 - b2 ** self.steps) + self.eps
        p -= (step_size * m / denom).astype(p.dtype)                # (O4)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), torch.optim.AdamW's defaults (O5).

    modules, lr, betas, eps, amsgrad: as Adam; weight_decay: decoupled decay rate (default 0.01)
    """

    _decoupled = True

    def __init__(self, modules: Modules, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01, amsgrad: bool = False) -> None:
        super().__init__(modules, lr, betas, eps, weight_decay, amsgrad)


def clip_grad_norm(modules: Modules, max_norm: float) -> float:
    """Scales all gradients together so that their joint L2 norm is at most `max_norm` (O6).

    modules: a module or list of modules
    max_norm: the largest allowed norm
    returns the norm before clipping (as torch.nn.utils.clip_grad_norm_ does)
    """
    max_norm = _nonneg("max_norm", max_norm)
    pairs = _pairs(modules)
    total = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for _, g in pairs))
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for _, g in pairs:
            g *= g.dtype.type(coef)
    return total


class LRSchedule:
    """Sets ``optimizer.lr`` from the number of ``step()`` calls made; subclasses give ``lr_at(step)``.

    Call ``step()`` once after each ``optimizer.step()``, as with torch's schedulers.
    """

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected a gatecell optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.count = 0
        optimizer.lr = self.lr_at(0)

    def lr_at(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self) -> float:
        """Advances one step and returns the new learning rate."""
        self.count += 1
        self.optimizer.lr = self.lr_at(self.count)
        return self.optimizer.lr


class StepLR(LRSchedule):
    """lr = base * gamma^(step // step_size) (torch.optim.lr_scheduler.StepLR).

    optimizer: the optimizer whose lr to set; step_size: steps between decays; gamma: decay factor
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = check_int("step_size", step_size, minimum=1)
        self.gamma = _nonneg("gamma", gamma)
        super().__init__(optimizer)

    def lr_at(self, step: int) -> float:
        return self.base_lr * self.gamma ** (step // self.step_size)


class CosineLR(LRSchedule):
    """Cosine annealing from base to min_lr over total_steps, then min_lr (CosineAnnealingLR's curve).

    optimizer: the optimizer whose lr to set; total_steps: length of the decay; min_lr: final value
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, min_lr: float = 0.0) -> None:
        self.total_steps = check_int("total_steps", total_steps, minimum=1)
        self.min_lr = _nonneg("min_lr", min_lr)
        super().__init__(optimizer)

    def lr_at(self, step: int) -> float:
        s = min(step, self.total_steps)
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * s / self.total_steps)) / 2


class WarmupLR(LRSchedule):
    """Linear warm-up from base*start_factor to base over warmup_steps, then an optional schedule.

    optimizer: the optimizer whose lr to set; warmup_steps: length of the ramp
    start_factor: fraction of the base lr at step 0 (torch.optim.lr_scheduler.LinearLR's)
    after: a schedule class (e.g. CosineLR) and its keyword arguments, run from the end of the ramp:
           ``WarmupLR(opt, 100, after=(CosineLR, {"total_steps": 900}))``
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, start_factor: float = 1.0 / 3,
                 after: Any = None) -> None:
        self.warmup_steps = check_int("warmup_steps", warmup_steps, minimum=1)
        self.start_factor = _nonneg("start_factor", start_factor)
        super().__init__(optimizer)
        self.after = None
        if after is not None:
            cls, kwargs = after
            self.after = cls(optimizer, **kwargs)
            self.after.base_lr = self.base_lr
            optimizer.lr = self.lr_at(0)

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.base_lr * (self.start_factor + (1 - self.start_factor) * step / self.warmup_steps)
        if self.after is None:
            return self.base_lr
        return self.after.lr_at(step - self.warmup_steps)
