"""Helpers of installer/install.py: stdlib only, because they run before anything is installed."""
