"""Helpers for the field benchmarks: key streams, baselines written here (OrderedDict LRU, vLLM-style and
Python-loop hashing), the libCacheSim driver and the results/plot writers. Numpy throughout: no Python object per
block except inside the pure-Python baselines, whose slowness is what they measure."""
