"""What the beads layer tells the layers above it, which it may not import."""

from django.dispatch import Signal

# Sent with `bead` and `reason` once a move to blocked has won, whoever made it:
# a person (the admin, the bead list), spent attempts, a refused change set, a
# spent budget. Receivers run inside the mover's transaction.
blocked = Signal()

# Sent with `beads` (a list) once beads have closed, however they closed (a
# landing, by hand, an import), with the parents that closed after them; the
# plans they finished are finished already. Receivers run inside the mover's
# transaction.
closed = Signal()
