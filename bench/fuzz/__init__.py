"""Mutation fuzzer for cachesim (issue 16): damaged or hostile input must end in a clean error or a right answer.

Plain modules, run as ``python bench/fuzz/run.py --seed S --budget N --kind readers|arrays|npz|all --out R.json``.
"""
