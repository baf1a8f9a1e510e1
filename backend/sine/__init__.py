"""sine: SINE single-image editing engine, daemon and command line."""

__version__ = "0.1.0"
