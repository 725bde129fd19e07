"""Hash IDs for beads, as `bd` makes them: `<prefix>-<base36 hash>`.

The hash is short while a prefix has few beads and grows as it fills, keeping
the chance that a fresh ID collides with an existing one under about 7%
(4 characters up to ~500 beads, 5 up to ~3,000, 6 up to ~17,000). A collision
is not an error: the database's primary key refuses it and the caller tries
the next candidate.
"""

import hashlib
import os
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
