"""Test support shared by the tests and ``benchmarks/``: synthetic studies (:mod:`tests.support.synthetic`).

It lives beside the tests, not in ``balnmp_cache``, so the package never ships a test fixture; the
benchmarks import it with the repository root on ``sys.path``.
"""
