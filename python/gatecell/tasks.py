# SPDX-License-Identifier: MIT
"""Tasks that need no download, each a data generator and a ready model.

- adding problem (Hochreiter & Schmidhuber 1997): a sequence of (value, marker) pairs; the target is
  the sum of the two marked values, one marked in each half. Always answering 1 (the mean) gives
  MSE 1/6 ~ 0.167, so anything below that has learned to carry the values across the sequence.
- copy (memory) task: a few symbols, a long blank delay, a cue, then the symbols must be repeated.
- next-character language model on any text (a short default text is built in).
- noisy time-series forecasting: the next value of a sum of sines observed with noise.

Datasets are sample-major tuples for ``gc.Trainer``: (x, y) or (x, y, lengths).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from ._checks import check_int
from .layers import GRU, LSTM, RNN, Linear
from .models import Embedding, LastStep, Sequential

__all__ = ["adding_problem", "copy_task", "CharVocab", "char_dataset", "DEFAULT_TEXT", "sine_forecast",
           "recurrent_model", "sample_chars", "Task", "TASKS", "ADDING_BASELINE_MSE"]

ADDING_BASELINE_MSE = 1.0 / 6.0  # Var(u1 + u2) for u ~ U(0, 1): the MSE of always answering 1

DEFAULT_TEXT = """\
A recurrent network reads a sequence one step at a time and keeps a small memory of what it has seen.
At every step it mixes the new input with that memory and writes the result back. The trouble is that
the same weights are used again and again, so a signal from far back is multiplied by them many times,
and the gradient that should teach the network about it shrinks towards nothing or grows without bound.
The long short-term memory cell answers this with a cell state that is carried forward by addition:
a forget gate decides how much of the old state to keep, an input gate decides how much of the new
candidate to write, and an output gate decides how much of the state to show. When the forget gate is
open, the state and its gradient pass through many steps almost unchanged. The gated recurrent unit
does the same with fewer parts: an update gate blends the old state with a new candidate, and a reset
gate decides how much of the old state the candidate may look at. Both cells learn to remember a number
for a hundred steps, where a plain recurrent network forgets it after a dozen. Small models like these
still run well on a laptop, in a phone, or inside a sensor, and they are a good way to learn how
sequence models work: every gate can be plotted, every gradient can be measured, and every result can
be checked by hand against the equations that define them.
"""


def _rng(seed: Any) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def adding_problem(n: int, steps: int = 100, seed: Any = 0, dtype: Any = np.float32) -> Tuple[np.ndarray, np.ndarray]:
    """The adding problem: x [n, steps, 2] of (value ~ U(0,1), marker in {0,1}), y [n, 1] the sum of the marked values.

    n: number of sequences; steps: T (>= 2); seed: an int or numpy Generator; dtype: of x and y
    One marker lies in the first half and one in the second, as in Hochreiter & Schmidhuber (1997).
    """
    n, steps = check_int("n", n, minimum=1), check_int("steps", steps, minimum=2)
    rng = _rng(seed)
    x = np.zeros((n, steps, 2), dtype=dtype)
    x[..., 0] = rng.random((n, steps))
    half = steps // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, steps, size=n)
    rows = np.arange(n)
    x[rows, first, 1] = 1
    x[rows, second, 1] = 1
    y = (x[rows, first, 0] + x[rows, second, 0])[:, None].astype(dtype)
    return x, y


def copy_task(n: int, symbols: int = 5, delay: int = 20, alphabet: int = 8,
              seed: Any = 0) -> Tuple[np.ndarray, np.ndarray]:
    """The copy (memory) task as token sequences for an Embedding model with per-step targets.

    n: number of sequences; symbols: K symbols to remember; delay: blank steps before the cue
    alphabet: symbols are drawn from 1..alphabet; token 0 is blank and alphabet+1 the cue
    returns x [n, T] and y [n, T] (T = 2K + delay + 1): y is blank except the last K steps, which repeat
    the first K inputs. Guessing blank there and uniformly later gives a known chance level (see Task).
    """
    n, k = check_int("n", n, minimum=1), check_int("symbols", symbols, minimum=1)
    delay, alphabet = check_int("delay", delay, minimum=0), check_int("alphabet", alphabet, minimum=2)
    rng = _rng(seed)
    steps = 2 * k + delay + 1
    x = np.zeros((n, steps), dtype=np.int64)
    y = np.zeros((n, steps), dtype=np.int64)
    data = rng.integers(1, alphabet + 1, size=(n, k))
    x[:, :k] = data
    x[:, k + delay] = alphabet + 1
    y[:, -k:] = data
    return x, y


class CharVocab:
    """Characters <-> integer ids for a text.

    text: the characters the vocabulary covers (sorted, one id each)
    """

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text:
            raise ValueError("text: expected a non-empty string")
        self.chars = sorted(set(text))
        self.index = {c: k for k, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise ValueError(f"text: characters not in the vocabulary: {unknown[:10]!r}")
        return np.array([self.index[c] for c in text], dtype=np.int64)

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[int(k)] for k in ids)


def char_dataset(text: str = DEFAULT_TEXT, steps: int = 64, n: Optional[int] = None, seed: Any = 0
                 ) -> Tuple[np.ndarray, np.ndarray, CharVocab]:
    """Next-character prediction windows from a text.

    text: the corpus; steps: window length T; n: number of windows (default: enough to cover the text
    about 4 times); seed: chooses the window starts
    returns x [n, T] ids, y [n, T] the ids one character later, and the vocabulary
    """
    steps = check_int("steps", steps, minimum=1)
    vocab = CharVocab(text)
    ids = vocab.encode(text)
    if len(ids) <= steps:
        raise ValueError(f"text: expected more than steps={steps} characters, got {len(ids)}")
    n = check_int("n", n, minimum=1) if n is not None else max(1, 4 * len(ids) // steps)
    starts = _rng(seed).integers(0, len(ids) - steps, size=n)
    window = starts[:, None] + np.arange(steps)[None, :]
    return ids[window], ids[window + 1], vocab


def sine_forecast(n: int, steps: int = 50, noise: float = 0.1, seed: Any = 0, dtype: Any = np.float32
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """Noisy time-series forecasting: the clean next value of a random two-tone signal seen with noise.

    n: number of windows; steps: T observed values; noise: std of the observation noise
    returns x [n, T, 1] noisy observations and y [n, 1] the noiseless value at step T
    """
    n, steps = check_int("n", n, minimum=1), check_int("steps", steps, minimum=2)
    rng = _rng(seed)
    t = np.arange(steps + 1)[None, :]
    f = rng.uniform(0.02, 0.12, size=(n, 2, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 2, 1))
    amp = rng.uniform(0.3, 1.0, size=(n, 2, 1))
    clean = (amp * np.sin(2 * np.pi * f * t[:, None, :] + phase)).sum(axis=1)
    x = clean[:, :steps] + noise * rng.standard_normal((n, steps))
    return x[..., None].astype(dtype), clean[:, steps:].astype(dtype)


_KINDS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


def recurrent_model(kind: str, input_size: int, hidden_size: int, output_size: int, vocab: Optional[int] = None,
                    per_step: bool = False, num_layers: int = 1, seed: int = 0, dtype: Any = np.float32) -> Sequential:
    """A ready model: [Embedding] -> RNN/LSTM/GRU -> [LastStep] -> Linear, batch-first.

    kind: "rnn", "lstm" or "gru"; input_size: features per step (the embedding size with vocab)
    hidden_size: recurrent units; output_size: outputs (classes for a language model)
    vocab: token vocabulary size (adds an Embedding) or None; per_step: an output at every step (no LastStep)
    num_layers: stacked recurrent layers; seed: initialisation; dtype: float32 or float64
    An LSTM's forget-gate biases start at 1 (Gers et al. 2000), which helps it keep memories early on.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind: expected one of {sorted(_KINDS)}, got {kind!r}")
    mods = []
    if vocab is not None:
        mods.append(("embed", Embedding(vocab, input_size, dtype=dtype, seed=seed)))
    rec = _KINDS[kind](input_size, hidden_size, num_layers=num_layers, batch_first=True, dtype=dtype, seed=seed + 1)
    if kind == "lstm":
        for name, b in rec.parameters().items():
            if name.startswith("bias_ih"):
                b[hidden_size:2 * hidden_size] = 1.0
    mods.append(("rnn", rec))
    if not per_step:
        mods.append(("last", LastStep()))
    mods.append(("head", Linear(hidden_size, output_size, dtype=dtype, seed=seed + 2)))
    return Sequential(mods)


@dataclass
class Task:
    """A task for ``gatecell train``: how to make data and a model, and how to train it.

    make_data(n, steps, seed) -> dataset tuple; make_model(kind, hidden, seed) -> model
    loss: Trainer loss name; lr, steps, batch_size: defaults; length: default T; baseline: a
    reference loss (chance level), for reports
    """

    name: str
    description: str
    make_data: Callable[..., Tuple[np.ndarray, ...]]
    make_model: Callable[..., Sequential]
    loss: str
    lr: float
    steps: int
    batch_size: int
    length: int
    baseline: Optional[float] = None


def _char_data(n: int, steps: int, seed: int, text: str = DEFAULT_TEXT) -> Tuple[np.ndarray, ...]:
    x, y, _ = char_dataset(text, steps, n, seed)
    return x, y


def _char_model(kind: str, hidden: int, seed: int, text: str = DEFAULT_TEXT) -> Sequential:
    v = len(CharVocab(text))
    return recurrent_model(kind, 16, hidden, v, vocab=v, per_step=True, seed=seed)


_COPY_ALPHABET = 8
_COPY_SYMBOLS = 5


TASKS: Dict[str, Task] = {
    "adding": Task("adding", "sum of the two marked values in a long sequence (baseline MSE 0.167)",
                   lambda n, steps, seed: adding_problem(n, steps, seed),
                   lambda kind, hidden, seed: recurrent_model(kind, 2, hidden, 1, seed=seed),
                   "mse", 3e-3, 1500, 64, 100, ADDING_BASELINE_MSE),
    "copy": Task("copy", "repeat 5 symbols after a blank delay",
                 lambda n, steps, seed: copy_task(n, _COPY_SYMBOLS, max(steps - 2 * _COPY_SYMBOLS - 1, 0),
                                                  _COPY_ALPHABET, seed),
                 lambda kind, hidden, seed: recurrent_model(kind, 8, hidden, _COPY_ALPHABET + 2,
                                                            vocab=_COPY_ALPHABET + 2, per_step=True, seed=seed),
                 "cross_entropy", 1e-2, 1500, 64, 31,
                 # no memory: blanks are certain, the last 5 of 31 steps a uniform guess over the alphabet
                 _COPY_SYMBOLS * float(np.log(_COPY_ALPHABET)) / 31),
    "chars": Task("chars", "next-character language model on the built-in text (or --text FILE)",
                  _char_data, _char_model, "cross_entropy", 1e-2, 600, 32, 64, None),
    "sine": Task("sine", "forecast the next clean value of a noisy two-tone signal",
                 lambda n, steps, seed: sine_forecast(n, steps, 0.1, seed),
                 lambda kind, hidden, seed: recurrent_model(kind, 1, hidden, 1, seed=seed),
                 "mse", 3e-3, 600, 64, 50, None),
}


def sample_chars(model: Sequential, vocab: CharVocab, prime: str = "A ", length: int = 200,
                 temperature: float = 1.0, seed: Any = 0) -> str:
    """Generates text from a character model (``recurrent_model(..., vocab=..., per_step=True)``).

    model: with children "embed", "rnn" and "head"; vocab: its characters
    prime: text the model reads first; length: characters to generate
    temperature: divides the logits before the softmax (< 1 sharper, > 1 more random); seed: the sampling
    """
    length = check_int("length", length, minimum=0)
    if not temperature > 0:
        raise ValueError(f"temperature: expected a value > 0, got {temperature}")
    if not prime:
        raise ValueError("prime: expected at least one character")
    rng = _rng(seed)
    embed, rnn, head = model["embed"], model["rnn"], model["head"]
    was_training = model.training
    model.eval()
    try:
        out, state = rnn(embed(vocab.encode(prime)[None, :]))
        text = []
        for _ in range(length):
            logits = head(out[:, -1]).astype(np.float64)[0] / temperature
            p = np.exp(logits - logits.max())
            token = int(rng.choice(len(p), p=p / p.sum()))
            text.append(vocab.chars[token])
            out, state = rnn(embed(np.array([[token]])), state)
    finally:
        model.train(was_training)
    return "".join(text)
