"""The benchmarks (manage.py benchmark_*), apart from the panel's own commands.

`setup` is what they share (a benchmark owner, real servers, the panel's
processes); `inside` acts inside a server as its owner would, for them and
the tests. The suite runs every one at a tiny size (test_benchmarks.py).
"""
