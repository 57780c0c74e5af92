"""Benchmarks: the engine against a saga hand-written with the raw Temporal SDK.

Run by hand: ``python -m bench`` (see ``python -m bench --help``). Figures are printed and, with
``--write FILE``, saved as markdown for the run log (``docs/benchmark-runs.md``; the figures to
quote are in ``docs/benchmarks.md``'s summary). Not a test: machines here are shared and noisy, so
compare the ratios measured side by side in one run.
"""
