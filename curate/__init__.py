"""curate: raw instruction / dialogue corpora in, a clean fine-tuning set out, every record accounted for."""
import os

__version__ = "0.1.0"

# No step uses BLAS, but numpy's OpenBLAS thread pool loads anyway, and its threads spin for a
# while after start: CPU taken from the dedup threads on a 2-core machine.  One BLAS thread
# unless the user chose otherwise; this only has effect when curate is imported before numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
