"""Subcommands of `sine`, one module each."""
