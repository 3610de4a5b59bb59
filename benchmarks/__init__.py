"""Reproducible benchmarks for arkor_nb against the tools notebook users use today.

Run ``make bench`` (``python -m benchmarks.run --full``) or ``make bench-quick``.
Every comparison is measured interleaved in one run, so ratios are fair on a
noisy machine; results land in ``benchmarks/results/`` and ``benchmarks/README.md``.
"""
