# SPDX-License-Identifier: MIT
"""A training loop: mini-batches, loss, backward, clipping, optimizer and schedule steps, a tqdm progress
bar (loss, steps/s), validation, early stopping, history and checkpoints.

Data are tuples of sample-major arrays, ``(x, y)`` or ``(x, y, lengths)``: x [N, T, ...] (token indices
[N, T] for an Embedding), y [N, ...] for one target per sequence or [N, T, ...] for one per step. A
time-major model (batch_first=False) gets x and per-step targets transposed to [T, N, ...]. The model's
output is a sequence when it has 3 axes ([T, N, C] or [N, T, C]); then ``lengths`` masks the padded
steps out of the loss.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from . import losses
from ._checks import check_int
from .data import check_dataset, minibatches
from .optim import Adam, LRSchedule, Optimizer, clip_grad_norm

__all__ = ["Trainer", "fit", "progress_bar"]

LossFn = Callable[[np.ndarray, np.ndarray, Optional[np.ndarray]], Tuple[float, np.ndarray]]
_LOSSES: Dict[str, LossFn] = {"mse": losses.mse, "cross_entropy": losses.cross_entropy}


class _NoBar:
    """Stands in for tqdm when it is not installed or the bar is off."""

    def __init__(self, total: int = 0, **_: Any) -> None:
        self.total = total

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, enabled: bool = True) -> Any:
    """A tqdm bar counting steps (tqdm shows steps/s), or a silent stand-in if tqdm is absent or disabled."""
    if not enabled:
        return _NoBar(total)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar(total)
    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, leave=True)


def _checkpoint_module() -> Any:
    try:
        from . import checkpoint
    except ImportError as exc:
        raise ImportError("checkpoint: gatecell.checkpoint (safetensors save/load) is not available in this "
                          "build") from exc
    return checkpoint


class Trainer:
    """Trains a model (e.g. a gc.Sequential) whose forward returns an array and whose backward takes its gradient.

    model: the model; optimizer: a gatecell optimizer (default Adam(model, lr))
    loss: "mse", "cross_entropy" or a function (pred, target, mask) -> (loss, dpred)
    lr: learning rate of the default optimizer; schedule: an LRSchedule stepped after every update
    clip_norm: clip the joint gradient norm to this value (None: no clipping)
    batch_size: samples per step; seed: seeds the shuffling
    progress: show a tqdm bar; desc: its label
    eval_every: steps between validations (default: once per epoch)
    patience: stop after this many validations without improvement (None: never); min_delta: what counts
    restore_best: at the end, put back the weights of the best validation
    checkpoint: a path; the best model (by validation loss, else by smoothed training loss) is saved there
                with ``gatecell.checkpoint.save`` whenever it improves
    per_step: whether targets have a time axis (transposed with x for time-major models); None guesses
              from the shapes (y [N, T, ...] with x [N, T, ...])
    """

    def __init__(self, model: Any, optimizer: Optional[Optimizer] = None, loss: Any = "mse", *, lr: float = 1e-3,
                 schedule: Optional[LRSchedule] = None, clip_norm: Optional[float] = None, batch_size: int = 32,
                 seed: Optional[int] = 0, progress: bool = True, desc: str = "train",
                 eval_every: Optional[int] = None, patience: Optional[int] = None, min_delta: float = 0.0,
                 restore_best: bool = True, checkpoint: Optional[str] = None,
                 per_step: Optional[bool] = None) -> None:
        for attr in ("parameters", "grads", "backward", "zero_grad", "train"):
            if not hasattr(model, attr):
                raise TypeError(f"model: expected a gatecell model with {attr}, got {type(model).__name__}")
        self.model = model
        self.optimizer = optimizer if optimizer is not None else Adam(model, lr=lr)
        if isinstance(loss, str):
            if loss not in _LOSSES:
                raise ValueError(f"loss: expected one of {sorted(_LOSSES)} or a function, got {loss!r}")
            loss = _LOSSES[loss]
        if not callable(loss):
            raise TypeError(f"loss: expected a name or a function, got {type(loss).__name__}")
        self.loss_fn: LossFn = loss
        self.schedule = schedule
        self.clip_norm = clip_norm
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.rng = np.random.default_rng(seed)
        self.progress = progress
        self.desc = desc
        self.eval_every = None if eval_every is None else check_int("eval_every", eval_every, minimum=1)
        self.patience = None if patience is None else check_int("patience", patience, minimum=1)
        self.min_delta = float(min_delta)
        self.restore_best = restore_best
        self.checkpoint = checkpoint
        self.per_step = per_step
        self.history: Dict[str, List[float]] = {"step": [], "loss": [], "lr": [], "grad_norm": [],
                                                "val_step": [], "val_loss": [], "time": []}

    # -- one batch ---------------------------------------------------------------------------
    def _prepare(self, batch: Tuple[np.ndarray, ...]) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        x, y = batch[0], batch[1]
        lengths = batch[2].astype(np.int64) if len(batch) > 2 else None
        if not getattr(self.model, "batch_first", True):
            steps = x.shape[1]
            x = np.ascontiguousarray(np.swapaxes(x, 0, 1))
            per_step = self.per_step if self.per_step is not None else (y.ndim >= 2 and y.shape[1] == steps)
            if per_step:
                y = np.ascontiguousarray(np.swapaxes(y, 0, 1))
        return x, y, lengths

    def _forward_loss(self, x: np.ndarray, y: np.ndarray, lengths: Optional[np.ndarray]) -> Tuple[float, np.ndarray,
                                                                                                 float]:
        pred = self.model(x, lengths=lengths) if lengths is not None else self.model(x)
        mask = None
        if lengths is not None and pred.ndim == 3:
            batch_first = getattr(self.model, "batch_first", True)
            mask = losses.length_mask(lengths, pred.shape[1] if batch_first else pred.shape[0], batch_first,
                                      dtype=pred.dtype)
        value, grad = self.loss_fn(pred, y, mask)
        weight = float(mask.sum()) if mask is not None else float(pred.shape[0] if pred.ndim < 3 else
                                                                  pred.shape[0] * pred.shape[1])
        return value, grad, weight

    def train_step(self, batch: Tuple[np.ndarray, ...]) -> float:
        """One update on one batch; returns its loss."""
        x, y, lengths = self._prepare(batch)
        self.model.train()
        self.optimizer.zero_grad()
        value, grad, _ = self._forward_loss(x, y, lengths)
        self.model.backward(grad)
        norm = clip_grad_norm(self.model, self.clip_norm if self.clip_norm is not None else math.inf)
        self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()
        self.history["grad_norm"].append(norm)
        return value

    def evaluate(self, data: Any) -> float:
        """The mean loss over a dataset in eval mode (weighted by the positions each batch counts)."""
        arrays = check_dataset("data", data)
        self.model.eval()
        total = weight = 0.0
        try:
            for batch in minibatches(arrays, max(self.batch_size, 256), shuffle=False):
                value, _, w = self._forward_loss(*self._prepare(batch))
                total += value * w
                weight += w
        finally:
            self.model.train()
        return total / weight

    def predict(self, x: Any, lengths: Any = None) -> np.ndarray:
        """The model's output in eval mode for sample-major x (time-major models get x transposed)."""
        self.model.eval()
        try:
            dummy = np.zeros(len(x))
            xs, _, lens = self._prepare((np.asarray(x), dummy) + (() if lengths is None else (np.asarray(lengths),)))
            return self.model(xs, lengths=lens) if lens is not None else self.model(xs)
        finally:
            self.model.train()

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, train: Any, val: Any = None, steps: Optional[int] = None,
            epochs: Optional[int] = None) -> Dict[str, List[float]]:
        """Trains for `steps` updates (or `epochs` passes over `train`), validating on `val`.

        train, val: datasets (x, y) or (x, y, lengths), sample-major
        returns the history: per step "step", "loss", "lr", "grad_norm", "time" (s since start);
        per validation "val_step", "val_loss"; also stored in ``self.history``
        """
        train = check_dataset("train", train)
        val = None if val is None else check_dataset("val", val)
        n = train[0].shape[0]
        per_epoch = -(-n // self.batch_size)
        if steps is None:
            steps = per_epoch * check_int("epochs", epochs if epochs is not None else 1, minimum=1)
        steps = check_int("steps", steps, minimum=1)
        eval_every = self.eval_every or per_epoch
        best, best_state, stale = math.inf, None, 0
        bar = progress_bar(steps, self.desc, self.progress)
        start = time.perf_counter()
        step, ema = 0, None
        self.stopped_early = False
        try:
            while step < steps and not self.stopped_early:
                for batch in minibatches(train, self.batch_size, shuffle=True, rng=self.rng):
                    value = self.train_step(batch)
                    step += 1
                    ema = value if ema is None else 0.95 * ema + 0.05 * value
                    h = self.history
                    h["step"].append(step)
                    h["loss"].append(value)
                    h["lr"].append(self.optimizer.lr)
                    h["time"].append(time.perf_counter() - start)
                    bar.update(1)
                    post = {"loss": f"{ema:.4g}"}
                    if h["val_loss"]:
                        post["val"] = f"{h['val_loss'][-1]:.4g}"
                    bar.set_postfix(post, refresh=False)
                    if step % eval_every == 0 or step == steps:
                        score = self.evaluate(val) if val is not None else ema
                        if val is not None:
                            h["val_step"].append(step)
                            h["val_loss"].append(score)
                        if score < best - self.min_delta:
                            best, stale = score, 0
                            best_state = self.model.state_dict()
                            if self.checkpoint is not None:
                                _checkpoint_module().save(self.checkpoint, self.model)
                        else:
                            stale += 1
                            if self.patience is not None and stale >= self.patience:
                                self.stopped_early = True
                    if step >= steps or self.stopped_early:
                        break
        finally:
            bar.close()
        self.best_loss = best
        if self.restore_best and val is not None and best_state is not None:
            self.model.load_state_dict(best_state)
        return self.history


def fit(model: Any, train: Any, val: Any = None, steps: Optional[int] = None, epochs: Optional[int] = None,
        **trainer_options: Any) -> Dict[str, List[float]]:
    """Trains `model` with a Trainer(model, **trainer_options) and returns the history (see Trainer.fit)."""
    return Trainer(model, **trainer_options).fit(train, val, steps=steps, epochs=epochs)
