"""raytrainer: an MMEngine-style training engine whose ranks run inside Ray Train workers."""

__version__ = "0.1.0"
