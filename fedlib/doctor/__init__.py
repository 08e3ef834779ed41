"""`python -m fedlib doctor`: what fedlib sees on this machine, under this launcher — the per-rank
report (`report`) and the checks it runs (`checks`)."""

from .report import run

__all__ = ["run"]
