"""How wmark runs long jobs: the one progress bar (stderr, ETA, ``--no-progress``) and torch's CPU
thread count pinned for a run and given back."""
