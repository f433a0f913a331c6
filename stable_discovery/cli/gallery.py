"""``sdp gallery``: serve the screening gallery over a workspace.

Kept apart from :mod:`stable_discovery.cli.main` so that the web server is imported only when
the command runs; ``build_parser`` calls :func:`add_commands`.
"""

from __future__ import annotations

import argparse
import threading
from typing import Any, TextIO

__all__ = ["add_commands", "cmd_gallery"]

DEFAULT_PORT = 8642


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a port is a number from 0 to 65535, not {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 0 to 65535, not {value}")
    return value


def add_commands(sub: Any) -> None:
    """Add ``gallery`` to the ``sdp`` subcommands."""
    from stable_discovery.cli.args import add_workspace_arg as _add_workspace_arg

    p = sub.add_parser(
        "gallery",
        help="screen images in a local web gallery: favourites, stars, filters, stats",
        description="Serve a web gallery over the workspace's experiments on this machine. "
        "Keys: arrows or h/j/k/l move, f favourite, 1-5 stars, x reject, Enter opens, "
        "Escape closes, c compares two, / searches, ? shows every key. It follows running "
        "experiments as they grow, works on phones and tablets (--host to reach it from one), "
        "downloads what the filters show as a zip, and archives experiments.",
    )
    _add_workspace_arg(p)
    p.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"port to listen on (default: {DEFAULT_PORT}; 0 picks a free one)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: 127.0.0.1, this machine only; "
        "0.0.0.0 shares the gallery, and its rating, with your network)",
    )
    p.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    p.set_defaults(func=cmd_gallery)


def cmd_gallery(args: argparse.Namespace, out: TextIO) -> int:
    """Serve until Ctrl+C."""
    from stable_discovery.gallery.server import make_server
    from stable_discovery.store.database import workspace_path

    workspace = workspace_path(args.workspace)
    server = make_server(workspace, args.host, args.port)
    url = server.url
    if args.host in ("0.0.0.0", "::"):
        url = f"http://127.0.0.1:{server.port}/" if args.host == "0.0.0.0" else f"http://[::1]:{server.port}/"
        out.write(
            f"warning: listening on all interfaces ({args.host}); anyone who can reach "
            "this machine can see and rate the images\n"
        )
    out.write(f"gallery of {workspace} at {url}  (Ctrl+C to stop)\n")
    out.flush()
    if not args.no_browser:
        import webbrowser

        threading.Timer(0.3, lambda: webbrowser.open(url)).start()
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        out.write("\nstopped\n")
    finally:
        server.server_close()
    return 0
