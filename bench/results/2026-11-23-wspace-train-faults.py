# SPDX-License-Identifier: MIT
# Page faults, time and memory of steady training steps of one gatecell layer.
# Usage: python THIS T N I H L threads steps [fresh]   ("fresh": hold the previous cache, so each step makes a new one)
import resource, sys, time
import numpy as np
import gatecell as gc

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
def minflt():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

T, N, I, H, L = (int(v) for v in sys.argv[1:6])
threads = int(sys.argv[6]); steps = int(sys.argv[7])
fresh = len(sys.argv) > 8 and sys.argv[8] == "fresh"  # hold the previous cache: a new one every step (before)
gc.set_num_threads(threads)
rng = np.random.default_rng(0)
m = gc.LSTM(I, H, num_layers=L, seed=0).train()
x = rng.standard_normal((T, N, I)).astype(np.float32)
dy = rng.standard_normal((T, N, H)).astype(np.float32)
rss0 = status("VmRSS")
for k in range(steps + 1):
    hold = m._saved["cache"] if fresh and m._saved else None
    f0, t0 = minflt(), time.perf_counter()
    m.zero_grad(); y, _ = m(x); m.backward(dy)
    del hold
    t1, f1 = time.perf_counter(), minflt()
    if k == 0:
        print(f"first step: {f1-f0} minor faults, {1e3*(t1-t0):.0f} ms")
    else:
        print(f"step {k}: {f1-f0} minor faults, {1e3*(t1-t0):.0f} ms, RSS {status('VmRSS'):.0f} MiB")
print(f"{'new cache per step' if fresh else 'cache refilled'}: RSS before {rss0:.0f} MiB, after {status('VmRSS'):.0f} MiB, peak (VmHWM) {status('VmHWM'):.0f} MiB")
