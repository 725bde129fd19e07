"""An agent that prints secrets: its session token and the value of the
environment variable named by argv[1], each whole, then each cut in two with a
pause of argv[2] seconds between the halves (so Corral reads and writes them in
different pieces of its log), then gives up (so nothing is submitted)."""

import os
import sys
import time

token = os.environ["CORRAL_TOKEN"]
secret = os.environ[sys.argv[1]]
pause = float(sys.argv[2])
print(f"whole token: {token}", flush=True)
print(f"whole secret: {secret}", flush=True)
# The token cut just past its prefix, the secret in its middle: each head too
# short to look like a credential alone.
for label, value, cut in (("token", token, 7), ("secret", secret, len(secret) // 2)):
    print(f"split {label}: {value[:cut]}", end="", flush=True)
    time.sleep(pause)
    print(f"{value[cut:]} :end", flush=True)
print("LEAKED", flush=True)
sys.exit(1)
