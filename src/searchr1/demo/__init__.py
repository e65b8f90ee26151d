"""The embedded demo: a tiny copy-capable model learns with RL to search SearchWorld on CPU."""
