"""An agent that crashes."""

import sys

print("about to fail", flush=True)
sys.exit(3)
