"""Builds the compiled modules; everything else is declared in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup


def compiled(name: str, language: str = "c") -> Extension:
    return Extension(f"cachesim.{name}", [f"src/cachesim/{name}.pyx"], language=language,
                     extra_compile_args=["-O3"], define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])


extensions = [
    compiled("_core"),                      # key compilation and the prefix-cache engine
    compiled("_scan"),                      # the fast JSON-lines scanner of the readers
    compiled("_providers", language="c++"),  # provider caches (the capacity LRU keeps a std::deque per replica)
    compiled("_mrc"),                       # one-pass hit-ratio curves (stack distances)
]

setup(ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}))
