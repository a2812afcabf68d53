"""curate: raw instruction / dialogue corpora in, a clean fine-tuning set out, every record accounted for."""
__version__ = "0.1.0"
