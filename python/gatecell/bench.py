# SPDX-License-Identifier: MIT
"""Benchmark gatecell against PyTorch and ONNX Runtime, side by side in one process.

Each (configuration, thread count, mode) is timed for every framework in alternating rounds
after a warm-up; the figure reported is the median. After each timed call the process sleeps
(untimed) until the worker threads that framework leaves spinning have gone idle, so that they do
not take a core from the next framework timed: with 2 cores, one spinning stranger halves a
2-thread run. OpenMP teams (gatecell, PyTorch) settle within milliseconds; ONNX Runtime's pool
spins for about 0.1 s after a call (measured here), hence its longer pause. Since a pause leaves
caches, thread teams and the core's clock cold (after 0.15 s idle, one untimed 0.7 ms call still
left the next one 25% slow here; and the second core took longer to come back: within 5 ms of
0.2 ms calls, a 2-thread gatecell call's helper thread joined 4 calls in 10, where 20 ms of calls
brought it back to every call), each timed call follows untimed calls of the same framework for
at least WARM_SECONDS, and the order of the frameworks turns by one every round, so that none
always follows the longest pause (ONNX Runtime, whose pause the next framework follows, never
follows it itself: a warm-up too short would favour it). Inference compares gatecell with PyTorch
and ONNX Runtime; a training step (forward in training mode, backward with every gradient)
with PyTorch. A large SGEMM measured at the start (the faster of torch's BLAS and gatecell's own
GEMM) gives the machine's ceiling, so each result is also shown as a share of what the CPU can do. Results go to the terminal, a JSON file and a
Markdown table. Needs the ``bench`` extra (torch, onnx, onnxruntime); a missing peer is skipped.

    gatecell bench --quick
    python bench/run.py --threads 1 2 --json bench.json --markdown bench.md
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

import gatecell as gc
from gatecell import _core
from gatecell.convert import torch_to_onnx

__all__ = ["Config", "DEFAULT_CONFIGS", "QUICK_CONFIGS", "main"]

KINDS = {"lstm": 4, "gru": 3, "rnn": 1}


@dataclass(frozen=True)
class Config:
    """One benchmarked network: kind (lstm, gru, rnn = tanh RNN), steps T, batch B, sizes I, H, layers."""

    kind: str
    T: int
    B: int
    I: int
    H: int
    layers: int = 1
    bidirectional: bool = False

    @classmethod
    def parse(cls, text: str) -> "Config":
        """Reads ``kind-T-B-I-H-layers[-bi]``, e.g. ``lstm-100-32-128-256-1``."""
        parts = text.lower().replace(":", "-").replace(",", "-").split("-")
        bidirectional = parts[-1] in ("bi", "bidirectional")
        if bidirectional:
            parts = parts[:-1]
        if len(parts) != 6 or parts[0] not in KINDS or not all(p.isdigit() and int(p) > 0 for p in parts[1:]):
            raise ValueError(f"--configs: expected kind-T-B-I-H-layers[-bi] with kind in {sorted(KINDS)}, "
                             f"got {text!r}")
        return cls(parts[0], *(int(p) for p in parts[1:]), bidirectional=bidirectional)

    @property
    def name(self) -> str:
        label = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN(tanh)"}[self.kind]
        return f"{label} {self.T} {self.B} {self.I} {self.H} {self.layers}" + (" bi" if self.bidirectional else "")

    def flops(self, training: bool) -> float:
        """Multiply-adds of the GEMMs (2 flops each); a training step does about 3 times the forward's."""
        G, D = KINDS[self.kind] * self.H, 2 if self.bidirectional else 1
        total = 0.0
        for layer in range(self.layers):
            width = self.I if layer == 0 else D * self.H
            total += D * 2.0 * self.T * self.B * G * (width + self.H)
        return 3 * total if training else total


# The table, a bidirectional stack, and small batches whose recurrent weights (4 MiB)
# outgrow L2, so that every step streams them from L3.
DEFAULT_CONFIGS = [Config.parse(s) for s in (
    "lstm-100-32-128-256-1", "gru-100-32-128-256-1", "rnn-100-32-128-256-1", "lstm-100-64-512-512-2",
    "lstm-50-256-64-128-1", "lstm-512-1-64-64-1", "gru-512-1-64-64-1", "lstm-1000-1-16-32-1",
    "lstm-100-32-128-256-2-bi", "lstm-200-1-256-512-1", "lstm-100-4-256-512-1")]
QUICK_CONFIGS = [Config.parse(s) for s in (
    "lstm-100-32-128-256-1", "gru-100-32-128-256-1", "rnn-100-32-128-256-1", "lstm-512-1-64-64-1")]


def _set_threads(n: int, torch_mod) -> None:
    gc.set_num_threads(n)
    if torch_mod is not None:
        torch_mod.set_num_threads(n)


def _release_free_heap() -> None:
    """Hands memory freed by earlier calls back to the OS (glibc), so that a step reusing it shows up
    in the peak instead of hiding inside the resident set it starts from."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _peak_rss_reset() -> Optional[int]:
    """Resets the peak resident set size (Linux) and returns the current RSS in bytes, or None."""
    _release_free_heap()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_bytes("VmRSS")
    except OSError:
        return None


def _status_bytes(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_memory(step: Callable[[], object]) -> Optional[float]:
    """Peak memory (MiB) one call of ``step`` adds above the resident set it starts from (Linux only)."""
    base = _peak_rss_reset()
    if base is None:
        return None
    step()
    peak = _status_bytes("VmHWM")
    return None if peak is None else max(0, peak - base) / 2**20


def sgemm_ceiling(threads: int, torch_mod, seconds: float) -> float:
    """GFLOP/s of a large float32 GEMM: the faster of torch's BLAS (NumPy's without torch) and
    gatecell's own packed GEMM, so that the ceiling is the machine's, not one library's (on a CPU
    with AVX-512, a BLAS that runs AVX2 kernels reaches half of it)."""
    n = 1536
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    if torch_mod is not None:
        torch_mod.set_num_threads(threads)
        ta, tb = torch_mod.from_numpy(a), torch_mod.from_numpy(b)
        run = lambda: torch_mod.mm(ta, tb)  # noqa: E731
    else:
        run = lambda: a @ b  # noqa: E731
    run()
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < 3 or (time.perf_counter() < deadline and len(times) < 50):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    before = gc.get_num_threads()
    gc.set_num_threads(threads)
    try:
        own = _core._time_gemm(a, b, 1 + 2 * len(times) // 3)[0]  # B packed once, as the time loops do
    finally:
        gc.set_num_threads(before)
    return 2.0 * n ** 3 / min(min(times), own) / 1e9


class Runner:
    """The callables that run one configuration in every framework, on shared weights and inputs."""

    def __init__(self, cfg: Config, torch_mod, ort_mod, onnx_mod) -> None:
        self.cfg = cfg
        rng = np.random.default_rng(1)
        self.x = rng.standard_normal((cfg.T, cfg.B, cfg.I), dtype=np.float32)
        D = 2 if cfg.bidirectional else 1
        self.dy = rng.standard_normal((cfg.T, cfg.B, D * cfg.H), dtype=np.float32)
        kwargs = dict(num_layers=cfg.layers, bidirectional=cfg.bidirectional, seed=0)
        cls = {"lstm": gc.LSTM, "gru": gc.GRU, "rnn": gc.RNN}[cfg.kind]
        self.gc_infer = cls(cfg.I, cfg.H, **kwargs).eval()
        self.gc_train = cls(cfg.I, cfg.H, **kwargs).train()
        self.gc_train.load_state_dict(self.gc_infer.state_dict())
        # Held as an optimizer holds them: a layer whose parameters another object can change in
        # place packs its weights afresh at every call, as it must in a real training loop (with
        # nothing holding them, it would keep the packs of the first step).
        self.gc_train_params = self.gc_train.parameters()
        self.frameworks: Dict[str, Dict[str, Callable[[], object]]] = {"gatecell": {
            "infer": lambda: self.gc_infer(self.x),
            "train": self._gc_train_step}}
        self.notes: List[str] = []
        if torch_mod is not None:
            self._add_torch(torch_mod)
        if ort_mod is not None and onnx_mod is not None:
            self._add_ort(ort_mod, onnx_mod)

    def _gc_train_step(self) -> None:
        m = self.gc_train
        m.zero_grad()
        y, _ = m(self.x)
        m.backward(self.dy)

    def _add_torch(self, torch) -> None:
        cfg = self.cfg
        cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cfg.kind]
        mod = cls(cfg.I, cfg.H, num_layers=cfg.layers, bidirectional=cfg.bidirectional)
        mod.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in self.gc_infer.state_dict().items()})
        x, dy = torch.from_numpy(self.x), torch.from_numpy(self.dy)
        with torch.inference_mode():
            y_torch = mod(x)[0].numpy()
        y_gc = self.gc_infer(self.x)[0]
        err = float(np.max(np.abs(y_torch - y_gc)))
        if err > 1e-3:
            raise RuntimeError(f"{cfg.name}: torch and gatecell outputs differ by {err:.2e}")

        def infer() -> object:
            with torch.inference_mode():
                return mod(x)

        def train() -> None:
            mod.zero_grad(set_to_none=True)
            y, _ = mod(x)
            y.backward(dy)

        self.frameworks["torch"] = {"infer": infer, "train": train}

    def _add_ort(self, ort, onnx) -> None:
        cfg = self.cfg
        self._ort = (ort, onnx_model(cfg, self.gc_infer.state_dict(), onnx).SerializeToString())
        self._ort_sessions: Dict[int, object] = {}
        self.threads = 1
        y_gc = self.gc_infer(self.x)[0]
        y_ort = self._ort_session(1).run(None, {"X": self.x})[0]
        err = float(np.max(np.abs(y_ort - y_gc)))
        if err > 1e-3:
            raise RuntimeError(f"{cfg.name}: ONNX Runtime and gatecell outputs differ by {err:.2e}")
        self.frameworks["onnxruntime"] = {"infer": lambda: self._ort_sessions[self.threads].run(None, {"X": self.x})}

    def _ort_session(self, threads: int):
        if threads not in self._ort_sessions:
            ort, data = self._ort
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            self._ort_sessions[threads] = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        return self._ort_sessions[threads]

    def set_threads(self, threads: int) -> None:
        if "onnxruntime" in self.frameworks:
            self._ort_session(threads)
        self.threads = threads


def onnx_model(cfg: Config, state: Dict[str, np.ndarray], onnx):
    """The network as an ONNX graph of LSTM/GRU/RNN nodes, with torch's weights in ONNX's gate order."""
    from onnx import TensorProto, helper, numpy_helper

    op = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[cfg.kind]
    H, D = cfg.H, 2 if cfg.bidirectional else 1

    nodes, inits = [], []
    current = "X"
    for layer in range(cfg.layers):
        onnx_weights = torch_to_onnx(cfg.kind, state, layer)
        W, R, B = onnx_weights["W"], onnx_weights["R"], onnx_weights["B"]
        names = [f"W{layer}", f"R{layer}", f"B{layer}"]
        inits += [numpy_helper.from_array(a.astype(np.float32), n) for a, n in zip((W, R, B), names)]
        attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
        if cfg.kind == "gru":
            attrs["linear_before_reset"] = 1
        y4 = f"Y{layer}_4d"
        nodes.append(helper.make_node(op, [current] + names, [y4], **attrs))
        # ONNX's Y is [T, D, B, H]; the next layer (and the comparison) wants [T, B, D*H].
        t_name, shape_name = f"Y{layer}_t", f"shape{layer}"
        nodes.append(helper.make_node("Transpose", [y4], [t_name], perm=[0, 2, 1, 3]))
        inits.append(numpy_helper.from_array(np.array([cfg.T, cfg.B, D * H], np.int64), shape_name))
        current = "Y" if layer == cfg.layers - 1 else f"Y{layer}"
        nodes.append(helper.make_node("Reshape", [t_name, shape_name], [current]))
    graph = helper.make_graph(
        nodes, "gatecell_bench",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [cfg.T, cfg.B, cfg.I])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [cfg.T, cfg.B, D * H])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# Untimed sleep after each call of a framework, until the threads it leaves spinning are idle.
SETTLE_SECONDS = {"onnxruntime": 0.15}
SETTLE_DEFAULT = 0.01
# Untimed calls before each timed one, for at least this long (and at least one call).
WARM_SECONDS = 0.02


def time_alternating(calls: Dict[str, Callable[[], object]], budget: float, min_rounds: int,
                     max_rounds: int, settle: Optional[Dict[str, float]] = None) -> Dict[str, float]:
    """Median ms per call of each callable, timed in alternating rounds (order turning) after warm-up.

    settle: seconds slept (untimed) after each call, per name (default SETTLE_SECONDS, else
            SETTLE_DEFAULT); see the module docstring
    """
    settle = SETTLE_SECONDS if settle is None else settle
    times: Dict[str, List[float]] = {name: [] for name in calls}
    for name, call in calls.items():  # warm-up: first-call allocations, lazy initialisation
        t0 = time.perf_counter()
        call()
        times[name].append(time.perf_counter() - t0)
    slowest = max(max(v) for v in times.values())
    rounds = int(min(max_rounds, max(min_rounds, budget / max(slowest * len(calls), 1e-9))))
    for name in times:
        times[name].clear()
    names = list(calls)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            call = calls[name]
            t0 = time.perf_counter()
            call()  # untimed: caches, clock and this framework's own threads warm again after the pause
            while time.perf_counter() - t0 < WARM_SECONDS:
                call()
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
            time.sleep(settle.get(name, SETTLE_DEFAULT))
    return {name: 1e3 * statistics.median(v) for name, v in times.items()}


def _import(name: str):
    try:
        return __import__(name)
    except ImportError:
        return None


def run(configs: Sequence[Config], threads: Sequence[int], quick: bool, log=print) -> dict:
    """Runs the whole benchmark and returns the result record (what --json writes)."""
    torch_mod, ort_mod, onnx_mod = _import("torch"), _import("onnxruntime"), _import("onnx")
    budget, min_rounds, max_rounds = (0.6, 3, 15) if quick else (2.5, 7, 60)
    record: dict = {
        "machine": {"processor": _cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()},
        "simd_path": gc.simd_path(),
        "versions": {"gatecell": gc.__version__,
                     "torch": getattr(torch_mod, "__version__", None),
                     "onnxruntime": getattr(ort_mod, "__version__", None)},
        "quick": quick, "sgemm_gflops": {}, "results": []}
    for n in threads:
        record["sgemm_gflops"][str(n)] = sgemm_ceiling(n, torch_mod, 0.5 if quick else 2.0)
        log(f"SGEMM ceiling at {n} thread(s): {record['sgemm_gflops'][str(n)]:.1f} GFLOP/s")
    for cfg in configs:
        runner = Runner(cfg, torch_mod, ort_mod, onnx_mod)
        for n in threads:
            _set_threads(n, torch_mod)
            runner.set_threads(n)
            ceiling = record["sgemm_gflops"][str(n)]
            for mode in ("infer", "train"):
                calls = {fw: c[mode] for fw, c in runner.frameworks.items() if mode in c}
                ms = time_alternating(calls, budget, min_rounds, max_rounds)
                gflops = {fw: cfg.flops(mode == "train") / (v * 1e-3) / 1e9 for fw, v in ms.items()}
                peers = {fw: v for fw, v in ms.items() if fw != "gatecell"}
                best_peer = min(peers, key=peers.get) if peers else None
                entry = {"config": cfg.name, "kind": cfg.kind, "T": cfg.T, "B": cfg.B, "I": cfg.I, "H": cfg.H,
                         "layers": cfg.layers, "bidirectional": cfg.bidirectional, "threads": n, "mode": mode,
                         "ms": ms, "gflops": gflops,
                         "pct_of_sgemm": {fw: 100.0 * g / ceiling for fw, g in gflops.items()},
                         "best_peer": best_peer,
                         "speedup_vs_best_peer": peers[best_peer] / ms["gatecell"] if best_peer else None,
                         "us_per_step": 1e3 * ms["gatecell"] / cfg.T}
                target = None
                if best_peer is not None:
                    # the goal: 1.2x the best peer, capped at 85% of the SGEMM ceiling
                    target_gflops = min(1.2 * gflops[best_peer], max(0.85 * ceiling, gflops[best_peer]))
                    target = cfg.flops(mode == "train") / (target_gflops * 1e9) * 1e3
                entry["target_ms"] = target
                entry["meets_target"] = None if target is None else ms["gatecell"] <= target
                if mode == "train" and n == threads[0]:
                    entry["peak_mib"] = {fw: peak_memory(calls[fw]) for fw in calls}
                record["results"].append(entry)
                log(_line(entry))
    return record


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _fmt(v: Optional[float], digits: int = 2) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}f}" if v < 100 else f"{v:.0f}"


def _line(e: dict) -> str:
    ms = "  ".join(f"{fw} {_fmt(v)} ms" for fw, v in e["ms"].items())
    ratio = e["speedup_vs_best_peer"]
    tail = "" if ratio is None else f"  x{ratio:.2f} vs {e['best_peer']}"
    return f"{e['config']:<28} t={e['threads']} {e['mode']:<5} {ms}{tail}"


def markdown(record: dict) -> str:
    """The results as a Markdown table (one row per configuration, threads and mode)."""
    ceil = ", ".join(f"{n} thread(s) {g:.1f} GFLOP/s" for n, g in record["sgemm_gflops"].items())
    lines = [f"Machine: {record['machine']['processor']} ({record['machine']['cores']} cores); "
             f"torch {record['versions']['torch']}, onnxruntime {record['versions']['onnxruntime']}, "
             f"gatecell {record['versions']['gatecell']} ({record.get('simd_path', '?')} kernels); "
             f"SGEMM ceiling (the faster of torch's and gatecell's GEMM): {ceil}.", "",
             "| config (kind T B I H layers) | thr | mode | gatecell ms | torch ms | ORT ms | gatecell GFLOP/s "
             "| % SGEMM | × best peer | target ms | met | µs/step | peak MiB gc / torch |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in record["results"]:
        ms = e["ms"]
        ratio = e["speedup_vs_best_peer"]
        met = {None: "–", True: "yes", False: "no"}[e["meets_target"]]
        peak = e.get("peak_mib")
        peak_txt = "" if not peak else f"{_fmt(peak.get('gatecell'), 1)} / {_fmt(peak.get('torch'), 1)}"
        lines.append(
            f"| {e['config']} | {e['threads']} | {e['mode']} | {_fmt(ms['gatecell'])} | {_fmt(ms.get('torch'))} "
            f"| {_fmt(ms.get('onnxruntime'))} | {_fmt(e['gflops']['gatecell'], 1)} "
            f"| {_fmt(e['pct_of_sgemm']['gatecell'], 1)} | {'–' if ratio is None else f'{ratio:.2f}'} "
            f"| {_fmt(e['target_ms'])} | {met} | {e['us_per_step']:.2f} | {peak_txt} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: ``gatecell bench [--quick] [--threads 1 2] [--configs ...] [--json F] [--markdown F]``."""
    parser = argparse.ArgumentParser(prog="gatecell bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer configurations and rounds (about a minute)")
    parser.add_argument("--threads", type=int, nargs="+", default=None, help="thread counts (default: 1 2)")
    parser.add_argument("--configs", nargs="+", default=None, metavar="KIND-T-B-I-H-L[-bi]",
                        help="configurations, e.g. lstm-100-32-128-256-1 gru-512-1-64-64-1")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write the results as a Markdown table")
    args = parser.parse_args(argv)
    threads = args.threads or [1, 2]
    if any(n < 1 for n in threads):
        parser.error(f"--threads: expected positive integers, got {threads}")
    try:
        configs = [Config.parse(c) for c in args.configs] if args.configs else (
            QUICK_CONFIGS if args.quick else DEFAULT_CONFIGS)
    except ValueError as e:
        parser.error(str(e))
    record = run(configs, threads, args.quick)
    table = markdown(record)
    print()
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
