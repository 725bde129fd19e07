"""An agent that prints its context pack, then gives up."""

import os
import sys
from pathlib import Path

print(Path(os.environ["CORRAL_CONTEXT"]).read_text(), flush=True)
sys.exit(1)
