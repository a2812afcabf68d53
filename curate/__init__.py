"""curate: raw instruction / dialogue corpora in, a clean fine-tuning set out, every record accounted for."""
import os

__version__ = "0.1.0"

# No step uses BLAS, but two OpenBLAS thread pools load anyway (numpy's, and scipy's when numba
# types its first kernel), and their threads spin for a while after start: ~0.3 s of CPU taken
# from the dedup threads on a 2-core machine.  One BLAS thread unless the user chose otherwise;
# this only has effect when curate is imported before numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
