"""The bench's chatty agent: its first act prints the time, then it prints
BENCH_LINES timestamped lines BENCH_EVERY seconds apart and writes one file in
its scope."""

import time

print(f"bench-start {time.time():.6f}", flush=True)

import os  # noqa: E402  (after the stamp: the first act is timed)

bead = os.environ["CORRAL_BEAD"]
every = float(os.environ["BENCH_EVERY"])
for k in range(int(os.environ["BENCH_LINES"])):
    print(f"bench-line {k} {time.time():.6f}", flush=True)
    time.sleep(every)
os.makedirs("bench", exist_ok=True)
with open(os.path.join("bench", bead + ".txt"), "w") as f:
    f.write(bead + "\n")
