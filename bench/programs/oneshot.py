"""The bench's quick agent: its first act prints the time (the bench reads it
from the session's log, as the sandbox lets an agent write nothing outside its
clone), then it writes one file in its scope and exits."""

import time

print(f"bench-start {time.time():.6f}", flush=True)

import os  # noqa: E402  (after the stamp: the first act is timed)

bead = os.environ["CORRAL_BEAD"]
os.makedirs("bench", exist_ok=True)
with open(os.path.join("bench", bead + ".txt"), "w") as f:
    f.write(bead + "\n")
print("wrote bench/" + bead + ".txt", flush=True)
