# SPDX-License-Identifier: MIT
"""The ``gatecell`` command: demo, train, generate, verify, bench.

    gatecell demo [--quick]           RNN vs GRU vs LSTM on the adding problem, with a report folder
    gatecell train TASK               train a ready model on adding / copy / chars / sine
    gatecell generate                 sample text from a character model
    gatecell verify                   random configurations against PyTorch (and ONNX Runtime)
    gatecell bench                    speed against PyTorch (gatecell.bench)
"""

from __future__ import annotations

import argparse
import ctypes
import sys
from typing import List, Optional

__all__ = ["main"]


def _positive(kind: type):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a value > 0, got {text}")
        return value
    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gatecell", description="Recurrent networks (RNN, LSTM, GRU) in a small C++ core.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = sub.add_parser("demo", help="vanilla RNN, GRU and LSTM on the adding problem, with plots and a report")
    d.add_argument("--length", type=_positive(int), default=None, help="sequence length T (default 100)")
    d.add_argument("--steps", type=_positive(int), default=None, help="training steps per model (default 3000)")
    d.add_argument("--hidden", type=_positive(int), default=None, help="recurrent units (default 16)")
    d.add_argument("--batch-size", type=_positive(int), default=None, help="sequences per step (default 32)")
    d.add_argument("--lr", type=_positive(float), default=None, help="Adam learning rate (default 0.01)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", default="gatecell-demo", help="report folder (default ./gatecell-demo)")
    d.add_argument("--quick", action="store_true", help="a smoke test in under a minute (T=20, few steps)")
    d.add_argument("--threads", type=_positive(int), default=1,
                    help="kernel threads (default 1: fastest for these small models)")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")

    t = sub.add_parser("train", help="train a ready model on a built-in task")
    t.add_argument("task", choices=["adding", "copy", "chars", "sine"])
    t.add_argument("--model", choices=["rnn", "gru", "lstm"], default="lstm")
    t.add_argument("--hidden", type=_positive(int), default=64)
    t.add_argument("--length", type=_positive(int), default=None, help="sequence length (task default)")
    t.add_argument("--steps", type=_positive(int), default=None, help="training steps (task default)")
    t.add_argument("--batch-size", type=_positive(int), default=None)
    t.add_argument("--lr", type=_positive(float), default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--text", default=None, help="chars: a UTF-8 text file (default: the built-in text)")
    t.add_argument("--save", default=None, help="write the trained model to this safetensors checkpoint")
    t.add_argument("--quick", action="store_true", help="a few steps on small data (smoke test)")
    t.add_argument("--threads", type=_positive(int), default=1,
                    help="kernel threads (default 1: fastest for these small models)")
    t.add_argument("--no-progress", action="store_true")

    g = sub.add_parser("generate", help="sample text from a character model (trains one if no --checkpoint)")
    g.add_argument("--checkpoint", default=None, help="a model saved by 'gatecell train chars --save'")
    g.add_argument("--text", default=None, help="the text the model was (or is to be) trained on; sets the vocabulary")
    g.add_argument("--prime", default="The ", help="text to start from")
    g.add_argument("--length", type=int, default=300, help="characters to generate")
    g.add_argument("--temperature", type=_positive(float), default=0.8)
    g.add_argument("--steps", type=_positive(int), default=None, help="training steps without --checkpoint")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--quick", action="store_true")
    g.add_argument("--threads", type=_positive(int), default=1,
                    help="kernel threads (default 1: fastest for these small models)")
    g.add_argument("--no-progress", action="store_true")

    v = sub.add_parser("verify", help="gatecell against PyTorch (and ONNX Runtime) on random configurations")
    v.add_argument("--cases", type=_positive(int), default=20)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--quick", action="store_true", help="4 cases")
    v.add_argument("--no-onnx", action="store_true", help="skip ONNX Runtime even when installed")

    b = sub.add_parser("bench", help="speed against PyTorch (arguments go to gatecell.bench)", add_help=False)
    b.add_argument("args", nargs=argparse.REMAINDER)
    return p


def set_threads(n: int) -> Optional[int]:
    """Sets how many OpenMP threads the kernels of this thread use; returns the previous number (None if unknown).

    n: threads. The demo's models are small: one thread is fastest, and on a busy machine the fork and
    join of every step can cost far more than the work it shares.
    """
    from . import _core
    if hasattr(_core, "set_num_threads"):
        previous = _core.get_num_threads()
        _core.set_num_threads(n)
        return previous
    try:  # cores built without set_num_threads: the OpenMP runtime the extension loaded
        gomp = ctypes.CDLL("libgomp.so.1")
        previous = gomp.omp_get_max_threads()
        gomp.omp_set_num_threads(ctypes.c_int(n))
        return previous
    except (OSError, AttributeError):
        return None


def _read_text(path: Optional[str]) -> str:
    from .tasks import DEFAULT_TEXT
    if path is None:
        return DEFAULT_TEXT
    with open(path, encoding="utf-8") as f:
        return f.read()


def _demo(a: argparse.Namespace) -> int:
    from .demo import DemoOptions, run_demo
    opts = DemoOptions(seed=a.seed, out=a.out, progress=not a.no_progress, quick=a.quick)
    if a.quick:
        opts.length, opts.steps, opts.test_size = 20, 400, 256
    for name in ("length", "steps", "hidden", "batch_size", "lr"):
        if getattr(a, name) is not None:
            setattr(opts, name, getattr(a, name))
    run_demo(opts)
    return 0


def _train(a: argparse.Namespace, text: Optional[str] = None):
    """Trains the task's model; returns (model, trainer, history, extra) where extra is the vocab for chars."""
    from . import data
    from .tasks import TASKS, char_dataset, recurrent_model
    from .training import Trainer
    task = TASKS[a.task]
    length = a.length or (16 if a.quick and a.task != "copy" else task.length)
    steps = a.steps or (20 if a.quick else task.steps)
    batch = getattr(a, "batch_size", None) or task.batch_size
    n = max(256, batch * min(steps, 400))
    vocab = None
    if a.task == "chars":
        text = text if text is not None else _read_text(a.text)
        x, y, vocab = char_dataset(text, length, n, a.seed)
        dataset = (x, y)
        model = recurrent_model(a.model, 16, a.hidden, len(vocab), vocab=len(vocab), per_step=True, seed=a.seed)
    else:
        dataset = task.make_data(n, length, a.seed)
        model = task.make_model(a.model, a.hidden, a.seed)
    train, val = data.train_val_split(dataset, 0.1, seed=a.seed)
    trainer = Trainer(model, loss=task.loss, lr=getattr(a, "lr", None) or task.lr, batch_size=batch, clip_norm=1.0,
                      seed=a.seed, progress=not a.no_progress, desc=f"{a.task}/{a.model}",
                      eval_every=max(1, steps // 10))
    hist = trainer.fit(train, val, steps=steps)
    print(f"{a.task} with {a.model}: training loss {sum(hist['loss'][-10:]) / len(hist['loss'][-10:]):.4f}, "
          f"validation loss {min(hist['val_loss']):.4f}" +
          (f" (baseline {task.baseline:.3f})" if task.baseline is not None else ""))
    return model, vocab


def _save(path: str, model) -> None:
    try:
        from .checkpoint import save
    except ImportError:
        raise SystemExit("gatecell: --save needs gatecell.checkpoint, which this build lacks")
    save(path, model)
    print(f"saved {path}")


def _train_cmd(a: argparse.Namespace) -> int:
    model, vocab = _train(a)
    if vocab is not None:
        from .tasks import sample_chars
        print("sample:", repr(sample_chars(model, vocab, "The ", 120, 0.8, a.seed)))
    if a.save:
        _save(a.save, model)
    return 0


def _generate(a: argparse.Namespace) -> int:
    from .tasks import CharVocab, sample_chars
    text = _read_text(a.text)
    vocab = CharVocab(text)
    if a.checkpoint:
        try:
            from .checkpoint import load
        except ImportError:
            raise SystemExit("gatecell: --checkpoint needs gatecell.checkpoint, which this build lacks")
        model = load(a.checkpoint)
    else:
        ns = argparse.Namespace(task="chars", model="lstm", hidden=128 if not a.quick else 32, length=None,
                                steps=a.steps, batch_size=None, lr=None, seed=a.seed, text=a.text, quick=a.quick,
                                no_progress=a.no_progress, threads=a.threads)
        model, vocab = _train(ns, text)
    unknown = sorted(set(a.prime) - set(vocab.chars))
    if unknown:
        raise SystemExit(f"gatecell: --prime has characters outside the text's vocabulary: {unknown!r}")
    print(a.prime + sample_chars(model, vocab, a.prime, a.length, a.temperature, a.seed))
    return 0


def _verify(a: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise SystemExit("gatecell verify needs PyTorch: pip install 'gatecell[torch]'")
    from .verify import run_verify
    run_verify(4 if a.quick else a.cases, a.seed, onnx=not a.no_onnx)
    return 0


def _bench(args: List[str]) -> int:
    try:
        from . import bench
    except ImportError:
        print("gatecell bench: this build has no gatecell.bench module (the benchmarks are not installed)",
              file=sys.stderr)
        return 2
    return int(bench.main(args) or 0)


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the ``gatecell`` command line; returns the exit status.

    argv: the arguments after the program name (default: sys.argv[1:])
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        return _bench(argv[1:])
    a = _parser().parse_args(argv)
    previous = set_threads(a.threads) if getattr(a, "threads", None) is not None else None
    commands = {"demo": _demo, "train": _train_cmd, "generate": _generate, "verify": _verify}
    try:
        return commands[a.command](a)
    finally:
        if previous is not None:  # main() may run inside a larger program (or a test session)
            set_threads(previous)


if __name__ == "__main__":
    raise SystemExit(main())
