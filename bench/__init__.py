"""Benchmarks: the engine against a saga hand-written with the raw Temporal SDK.

Run by hand: ``python -m bench`` (see ``python -m bench --help``). Figures are printed and, with
``--write``, saved to ``docs/benchmarks.md``. Not a test: machines here are shared and noisy, so
compare the ratios measured side by side in one run.
"""
