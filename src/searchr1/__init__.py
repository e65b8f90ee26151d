"""searchr1: train language models with RL to interleave reasoning and search (Search-R1)."""
__version__ = "0.1.0"
