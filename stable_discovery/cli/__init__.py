"""The ``sdp`` command line: one module per group of commands."""

from __future__ import annotations

from stable_discovery.cli.main import build_parser, entry_point, main

__all__ = ["build_parser", "entry_point", "main"]
