"""faceloom: shared-encoder / two-decoder face swapping, from extraction to labelled output."""

__version__ = "0.1.0"
