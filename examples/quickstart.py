# SPDX-License-Identifier: MIT
"""A first look at gatecell: run an LSTM, backpropagate through time, and train it a little.

The task: a 2-layer LSTM reads 20 random numbers and must output their running mean.
The layer protocol (forward, backward, parameters, grads) with gc.optim.Adam, no framework.
"""

import time

import numpy as np

import gatecell as gc


def main() -> None:
    rng = np.random.default_rng(0)
    T, N = 20, 32
    lstm = gc.LSTM(1, 32, num_layers=2, seed=0)
    head = gc.Linear(32, 1, seed=0)
    print(lstm, head, sep="\n")

    opt = gc.optim.Adam([lstm, head], lr=1e-2)
    start = time.perf_counter()
    for step in range(301):
        x = rng.uniform(-1, 1, size=(T, N, 1)).astype(np.float32)
        target = np.cumsum(x, axis=0) / np.arange(1, T + 1, dtype=np.float32)[:, None, None]
        h, _ = lstm(x)
        pred = head(h)
        loss = float(np.mean((pred - target) ** 2))
        dpred = (2.0 / pred.size) * (pred - target)
        lstm.backward(head.backward(dpred))
        opt.step()
        opt.zero_grad()
        if step % 100 == 0:
            print(f"step {step:4d}  mse {loss:.5f}")
    print(f"300 training steps in {time.perf_counter() - start:.1f} s; "
          f"predicting 0 would score {float(np.mean(target ** 2)):.4f}")


if __name__ == "__main__":
    main()
