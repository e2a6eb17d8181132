# SPDX-License-Identifier: MIT
"""Inference ms of gatecell and ONNX Runtime (and torch) for a few configurations, in one process.

A shorter `gatecell bench` (inference only, same alternating timer and Runner) for A/B runs of two
builds of the extension: run it once per build, alternating builds, and compare the ratios.

    python bench/small_batch_ab.py [--threads 1 2] [--train] CONFIG ...
"""

import argparse

from gatecell import bench


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("configs", nargs="+")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--train", action="store_true", help="time training steps too (gatecell vs torch)")
    p.add_argument("--budget", type=float, default=1.5, help="seconds per timing (see bench.time_alternating)")
    args = p.parse_args()
    torch_mod, ort_mod, onnx_mod = bench._import("torch"), bench._import("onnxruntime"), bench._import("onnx")
    for text in args.configs:
        cfg = bench.Config.parse(text)
        runner = bench.Runner(cfg, torch_mod, ort_mod, onnx_mod)
        for n in args.threads:
            bench._set_threads(n, torch_mod)
            runner.set_threads(n)
            for mode in ("infer", "train") if args.train else ("infer",):
                calls = {fw: c[mode] for fw, c in runner.frameworks.items() if mode in c}
                ms = bench.time_alternating(calls, args.budget, 7, 40)
                best = min((v, fw) for fw, v in ms.items() if fw != "gatecell")
                peers = "  ".join(f"{fw} {v:7.2f}" for fw, v in ms.items() if fw != "gatecell")
                print(f"{cfg.name:24s} t={n} {mode}  gatecell {ms['gatecell']:7.2f}  {peers}  "
                      f"x{best[0] / ms['gatecell']:.3f} vs {best[1]}", flush=True)


if __name__ == "__main__":
    main()
