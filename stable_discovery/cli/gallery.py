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
ENV_TOKEN = "SDP_GALLERY_TOKEN"  # gallery.access.ENV_TOKEN, without importing the server here


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
        help="address to bind (default: 127.0.0.1, this machine only). Any other address, "
        "e.g. 0.0.0.0 for every network, shares the gallery with a secret link: a token is "
        "made and printed in a ready-to-open URL",
    )
    p.add_argument(
        "--token",
        metavar="TOKEN",
        help=f"the shared gallery's token (default: ${ENV_TOKEN}, else a new one each start; "
        "at least 16 letters, digits, '-' or '_')",
    )
    p.add_argument(
        "--read-only",
        action="store_true",
        help="show the images, records and stats, but let nobody change a mark",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also accept requests addressed to NAME (a DNS name or proxy in front of the "
        "gallery; repeatable). The machine's own names and addresses are always accepted",
    )
    p.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    p.set_defaults(func=cmd_gallery)


def cmd_gallery(args: argparse.Namespace, out: TextIO) -> int:
    """Serve until Ctrl+C."""
    from stable_discovery.gallery.access import is_loopback
    from stable_discovery.gallery.server import make_server
    from stable_discovery.store.database import workspace_path

    workspace = workspace_path(args.workspace)
    shared = not is_loopback(args.host)
    token = _token(args) if shared else None
    server = make_server(
        workspace,
        args.host,
        args.port,
        token=token,
        read_only=args.read_only,
        allow_hosts=tuple(args.allow_host),
    )
    url = _announce(args, server, workspace, out)
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


def _token_origin(args: argparse.Namespace) -> str:
    """Where the shared gallery's token came from, for the line that prints the link."""
    if args.token:
        return "the token given with --token"
    import os

    if os.environ.get(ENV_TOKEN):
        return f"the token in ${ENV_TOKEN}"
    return f"a new token each start; --token or ${ENV_TOKEN} keeps one"


def _token(args: argparse.Namespace) -> str:
    """The shared gallery's token: --token, else $SDP_GALLERY_TOKEN, else a new one."""
    import os
    import re

    from stable_discovery.errors import UsageError
    from stable_discovery.gallery.access import new_token

    given = args.token or os.environ.get(ENV_TOKEN)
    if not given:
        return new_token()
    source = "--token" if args.token else f"${ENV_TOKEN}"
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,200}", given):
        raise UsageError(f"{source}: a token is 16 to 200 letters, digits, '-' or '_'")
    return str(given)


def _announce(args: argparse.Namespace, server: Any, workspace: Any, out: TextIO) -> str:
    """Print where the gallery is (with the token for a shared one); the URL to open."""
    from stable_discovery.gallery.access import network_address

    if server.forced_read_only:
        out.write(f"note: {server.forced_read_only}: the gallery is read-only (marks cannot be saved)\n")
    if server.access.token is None:
        url = str(server.url)
        out.write(f"gallery of {workspace} at {url}  (Ctrl+C to stop)\n")
        out.flush()
        return url
    host = args.host
    if host in ("0.0.0.0", "::", ""):
        host = network_address() or "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    link = f"http://{shown}:{server.port}/?token={server.access.token}"
    what = "see the images (read-only)" if server.read_only else "see and rate the images"
    out.write(
        f"gallery of {workspace}, shared on {args.host}: anyone with this link can {what}:\n"
        f"  {link}\n"
        f"({_token_origin(args)}; --read-only lets viewers look without rating; Ctrl+C to stop)\n"
    )
    out.flush()
    return f"http://127.0.0.1:{server.port}/?token={server.access.token}" if args.host == "0.0.0.0" else link
