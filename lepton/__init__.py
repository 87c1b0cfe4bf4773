"""Lepton: a browser dashboard and CLI for cross-domain transfer learning."""

__version__ = "0.1.0"
