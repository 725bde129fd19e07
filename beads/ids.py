"""Hash IDs for beads, as `bd` makes them: `<prefix>-<base36 hash>`.

The hash is short while a prefix has few beads and grows as it fills, keeping
the chance that a fresh ID collides with an existing one under about 7%
(4 characters up to ~500 beads, 5 up to ~3,000, 6 up to ~17,000). A collision
is not an error: the database's primary key refuses it and the caller tries
the next candidate.
"""

import hashlib
import os
import re
import time
from collections.abc import Iterator

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
MIN_LENGTH, MAX_LENGTH = 4, 12
COLLISION_BUDGET = 0.075


def hash_length(existing: int) -> int:
    """The shortest length whose birthday-collision chance stays within budget."""
    for length in range(MIN_LENGTH, MAX_LENGTH):
        if existing * existing / (2 * 36**length) < COLLISION_BUDGET:
            return length
    return MAX_LENGTH


def base36(number: int, length: int) -> str:
    digits = []
    for _ in range(length):
        number, digit = divmod(number, 36)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def candidates(prefix: str, title: str, existing: int) -> Iterator[str]:
    """Endless fresh IDs: title, time and randomness hashed, lengthening after misses."""
    length = hash_length(existing)
    misses = 0
    while True:
        seed = f"{title}\0{time.time_ns()}\0{os.urandom(16).hex()}".encode()
        number = int.from_bytes(hashlib.sha256(seed).digest()[:16], "big")
        yield f"{prefix}-{base36(number, length)}"
        misses += 1
        if misses % 3 == 0 and length < MAX_LENGTH:
            length += 1  # a crowded space: widen rather than keep colliding


# bd's ID shape: `<prefix>-<hash>`, a child `<parent>.<n>` (`bd-a3f8e9.1`). An ID
# is a path segment of every page that links its bead and a ref-like word in
# commit trailers, so only letters, digits, `-`, `_` and `.` are taken, starting
# with a letter or a digit.
SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


def problem(bead_id: str) -> str:
    """Why `bead_id` is not a bd ID (a message naming it), or ""."""
    prefix, _, rest = bead_id.rpartition("-")
    if SHAPE.fullmatch(bead_id) and prefix and rest:
        return ""
    return f"{bead_id!r} is not a bead ID: bd's are <prefix>-<hash> of letters, digits, -, _ and ."
