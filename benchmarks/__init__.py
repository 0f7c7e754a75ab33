"""Speed and quality comparisons of keras_recsys against hand-written Keras, as ratios.

Run from the repository root, e.g. ``python -m benchmarks.bench_ranking --backend all``.
"""
