"""Benchmarks: ``python -m benchmarks [--only NAME]``.

Each ``benchmarks/bench_<name>.py`` defines ``main()``: it prints a human-readable
table and one machine-readable line per figure, ``BENCH <metric> <value> <unit>``
(ratios use unit ``x``), measuring its baseline in the same run.
"""
