"""The one compiled part, near-dedup's inner loops (curate/dedup/_kernels.c); everything else is
in pyproject.toml.  ``pip install -e .`` builds it with the system's C compiler (gcc or clang).
The source's digest is built in, so an editable install whose C file changed since the build
says so at import instead of running old code (curate/dedup/kernels.py)."""
import hashlib
from pathlib import Path

from setuptools import Extension, setup

SOURCE = "curate/dedup/_kernels.c"
digest = hashlib.sha256((Path(__file__).parent / SOURCE).read_bytes()).hexdigest()[:16]

setup(ext_modules=[Extension("curate.dedup._kernels", [SOURCE], extra_compile_args=["-O3", "-std=gnu11"],
                             define_macros=[("SOURCE_DIGEST", f'"{digest}"')])])
