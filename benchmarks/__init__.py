"""Reproducible benchmarks for caikit-dask: ``python -m benchmarks [--smoke] [--json PATH]``.

Every number is printed next to baselines measured in the same run (an
in-process call, a plain Dask actor, a Ray actor when ``ray`` is installed), so
results from different machines or commits are compared as ratios.
"""
