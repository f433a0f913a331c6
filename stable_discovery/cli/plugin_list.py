"""``sdp plugins``: what is installed and which hooks it implements."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

__all__ = ["add_commands"]


def cmd_plugins(args: argparse.Namespace, out: TextIO) -> int:
    from stable_discovery import plugins
    from stable_discovery.backends.families import families_summary

    rows = plugins.plugin_rows()
    if args.json:
        out.write(json.dumps(rows, indent=2) + "\n")
        return 0
    for row in rows:
        kind = "built-in" if row["builtin"] else (f"version {row['version']}" if row["version"] else "plugin")
        out.write(f"{row['name']} ({kind})\n")
        for hook in row["hooks"]:
            out.write(f"  {hook}\n")
    out.write("samplers: " + ", ".join(plugins.samplers()) + "\n")
    out.write("backends: " + ", ".join(plugins.backends()) + "\n")
    out.write(f"model families (diffusers backend): {families_summary()}\n")
    out.write("sinks: " + (", ".join(plugins.sinks()) or "none") + "\n")
    return 0


def add_commands(sub: Any) -> None:
    """Add ``sdp plugins`` to the ``sdp`` parser."""
    p = sub.add_parser("plugins", help="list installed plugins and the hooks they implement")
    p.add_argument(
        "--json", action="store_true", help="the plugins as a JSON list: name, version, built-in, hooks"
    )
    p.set_defaults(func=cmd_plugins)
