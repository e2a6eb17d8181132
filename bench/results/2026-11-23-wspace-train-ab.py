# SPDX-License-Identifier: MIT
# A/B of one training step of a gatecell LSTM: the cache refilled (now) vs a new cache per step (before),
# Usage: python THIS T N I H L threads rounds
# alternating, with minor page faults per step (getrusage) and the medians.
import resource, statistics, sys, time
import numpy as np
import gatecell as gc

T, N, I, H, L = (int(v) for v in sys.argv[1:6])
threads, reps = int(sys.argv[6]), int(sys.argv[7])
gc.set_num_threads(threads)
rng = np.random.default_rng(0)
m = gc.LSTM(I, H, num_layers=L, seed=0).train()
x = rng.standard_normal((T, N, I)).astype(np.float32)
dy = rng.standard_normal((T, N, H)).astype(np.float32)

def step(fresh):
    hold = m._saved["cache"] if fresh and m._saved else None  # someone else holds it: a new cache
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    m.zero_grad(); m(x); m.backward(dy)
    t = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    del hold
    return 1e3 * t, r1.ru_minflt - r0.ru_minflt, 1e3 * (r1.ru_utime - r0.ru_utime), 1e3 * (r1.ru_stime - r0.ru_stime)

step(False); step(False)
res = {True: [], False: []}
for k in range(reps):
    for fresh in ((True, False) if k % 2 == 0 else (False, True)):
        res[fresh].append(step(fresh))
for fresh, name in ((True, "new cache per step (before)"), (False, "cache refilled (after)")):
    med = lambda k: statistics.median(r[k] for r in res[fresh])
    print(f"{T}-{N}-{I}-{H}-{L} thr={threads} {name}: wall median {med(0):.0f} ms (min {min(r[0] for r in res[fresh]):.0f}), "
          f"user {med(2):.0f} ms, sys {med(3):.0f} ms, minor faults {med(1):.0f} per step")
