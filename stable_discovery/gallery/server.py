"""The gallery's HTTP server: the page, a JSON API over the run store, images and thumbnails.

Routes (GET unless said)::

    /                          the page (static/index.html); /static/<file> its assets
    /api/experiments           every experiment with its counts, archived or not, and
                               whether a run is writing to it; ETag (304 when unchanged)
    /api/samples?experiment=E  a page of samples; filters fav, rejected, stars, v=NAME:CHOICE
                               (CHOICE -1: absent), q=WORDS (of the prompt); paging:
                               after=<last index shown> or before=<first index shown>|end,
                               limit (default 200), total=1; since=STAMP: what a run added
    /api/facets?experiment=E   the values each slot and sampled setting took, with counts
                               (under the other filters when filters are given)
    /api/record?experiment=E&index=I   one sample's full record
    /api/stats?experiment=E    per-value favourite statistics (stable_discovery.analysis.stats)
    /api/download?experiment=E the images the filters select, as a zip (gallery.download)
    POST /api/rate             {"experiment", "index", "favourite"?, "stars"?, "rejected"?}
    POST /api/archive          {"experiment", "archived"}
    /img/E/FILE, /thumb/E/FILE an image of experiment E, or its cached thumbnail

Only POST changes anything (and nothing with ``read_only``). Each request opens its own
SQLite connection (a ``Store``, read-only for GET) and closes it when done. Errors are
answered as JSON ``{"error": message}`` with a 4xx status, a 503 with the message for a
fault of the machine (a full disk, a damaged or vanished store), or a 500 without
details (one line goes to the terminal).

Who may ask (Host and Origin checks, the token of a shared gallery) is decided in
:mod:`.access`; how long a connection may take, and how many there may be, in
:mod:`.connections`.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from stable_discovery.errors import SdpError, UsageError
from stable_discovery.gallery.access import LOOPBACK_HOSTS, Access, is_loopback, new_token
from stable_discovery.gallery.api import (
    MAX_BODY,
    ApiError,
    RateRequest,
    page_args,
    parse_archive,
    parse_filters,
    parse_int,
    parse_rate,
    window_args,
)
from stable_discovery.gallery.connections import Deadlines, connection_limit
from stable_discovery.gallery.live import Reply, experiments_reply
from stable_discovery.gallery.paths import safe_image_path, split_file_route
from stable_discovery.gallery.thumbs import ThumbnailError, thumbnail
from stable_discovery.store import gallery_queries as queries
from stable_discovery.store.database import Store, read_experiment_names, require_store
from stable_discovery.store.faults import describe as describe_fault

__all__ = ["GalleryServer", "make_server", "LOOPBACK_HOSTS"]

_STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _load_static() -> dict[str, tuple[bytes, str]]:
    """The page's files, read once: URL path → (bytes, content type)."""
    folder = resources.files(__package__) / "static"
    files: dict[str, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        suffix = os.path.splitext(entry.name)[1]
        if entry.is_file() and suffix in _STATIC_TYPES:
            files[f"/static/{entry.name}"] = (entry.read_bytes(), _STATIC_TYPES[suffix])
    files["/"] = files["/static/index.html"]
    return files


class GalleryServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one workspace."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # a burst of new connections waits in the kernel, not in SYN retries

    def __init__(
        self,
        address: tuple[str, int],
        workspace: Path,
        *,
        log: Callable[[str], None] | None = None,
        token: str | None = None,
        read_only: bool = False,
        allow_hosts: tuple[str, ...] = (),
        deadlines: Deadlines | None = None,
        max_connections: int | None = None,
    ) -> None:
        self.workspace = Path(workspace)
        self.root = os.path.realpath(self.workspace)
        self.static = _load_static()
        self.log = log or (lambda line: sys.stderr.write(line + "\n"))
        self.read_only = read_only
        #: why the gallery is read-only although it was not asked to be (None: it was not)
        self.forced_read_only: str | None = None
        self._lock = threading.Lock()
        self._names: set[str] = set()
        self._facets: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self.deadlines = deadlines or Deadlines()
        self.max_connections = max_connections or connection_limit()
        self._active = 0
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(address, GalleryHandler)
        self.port = int(self.server_address[1])
        self.access = Access.for_bind(host, self.port, token, allow_hosts)
        self.shared = self.access.token is not None

    # connections -------------------------------------------------------------------
    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve a new connection in its own thread, making room for it at the limit
        (the longest idle connection is closed), or turning it away when all are busy."""
        with self._lock:
            full = self._active >= self.max_connections
        if full and not self.deadlines.evict_one():
            self.shutdown_request(request)
            return
        with self._lock:
            self._active += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            with self._lock:
                self._active -= 1
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.deadlines.disarm(request)
            with self._lock:
                self._active -= 1

    def server_close(self) -> None:
        super().server_close()
        self.deadlines.close()

    @property
    def url(self) -> str:
        host = str(self.server_address[0])
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    def open_store(self, write: bool = False) -> Store:
        """The store for one request: read-only for GET, writable for a mark. A store
        that vanished while the gallery runs is a 503, not a new empty store."""
        try:
            require_store(self.workspace)
        except UsageError:
            raise ApiError(
                503, f"the run store is gone: {self.workspace / 'discovery.db'} is missing"
            ) from None
        return Store(self.workspace, mode="write" if write else "read")

    def is_experiment(self, name: str) -> bool:
        """Whether ``name`` is an experiment of the store (cached; refreshed on a miss)."""
        with self._lock:
            if name in self._names:
                return True
        names = read_experiment_names(self.workspace)
        with self._lock:
            self._names = names
        return name in names

    def cached_facets(
        self, key: tuple[Any, ...], make: Callable[[], list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        with self._lock:
            hit = self._facets.get(key)
        if hit is None:
            hit = make()
            with self._lock:
                if len(self._facets) > 64:
                    self._facets.clear()
                self._facets[key] = hit
        return hit

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)):
            return
        if os.environ.get("SDP_DEBUG"):
            super().handle_error(request, client_address)
            return
        self.log(f"gallery: internal error: {type(exc).__name__}: {exc}")


class GalleryHandler(BaseHTTPRequestHandler):
    """One request: route it, answer it, never leak a traceback."""

    server: GalleryServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small responses go out at once, not after a delayed ACK
    server_version = "sdp-gallery"
    sys_version = ""
    timeout = 60  # seconds any one read or write of the socket may block

    def log_message(self, format: str, *args: Any) -> None:
        return None

    # deadlines (see .connections) --------------------------------------------------
    def handle_one_request(self) -> None:
        """Wait for a request head for at most ``deadlines.head`` seconds (an idle
        keep-alive connection, or one that trickles its headers, is then closed)."""
        deadlines = self.server.deadlines
        deadlines.arm(self.connection, deadlines.head, head=True)
        try:
            super().handle_one_request()
        finally:
            deadlines.disarm(self.connection)

    def parse_request(self) -> bool:
        self._t0 = time.perf_counter()  # Server-Timing counts header parsing too
        ok = super().parse_request()
        # the head is in: the request's own work is not limited, its body and answer are
        self.server.deadlines.disarm(self.connection)
        return ok

    def _read_body(self, length: int) -> bytes:
        self.server.deadlines.arm(self.connection, self.server.deadlines.body)
        try:
            return self.rfile.read(length)
        finally:
            self.server.deadlines.disarm(self.connection)

    # methods -----------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _refuse_method(self) -> None:
        self._drain()
        self._json(405, {"error": f"{self.command} is not allowed here"}, extra={"Allow": "GET, POST"})

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _refuse_method

    def _drain(self) -> None:
        """Read (and drop) a small body so the connection stays usable."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if 0 < length <= MAX_BODY:
            self._read_body(length)
        elif length:
            self.close_connection = True

    def _dispatch(self, method: str) -> None:
        try:
            path, _, query = self.path.partition("?")
            try:
                params = parse_qs(query, keep_blank_values=True, max_num_fields=1000)
            except ValueError:
                raise ApiError(400, "too many query parameters") from None
            if not self._admit(method, path, params):
                return
            if method == "POST":
                self._post(path)
            else:
                self._get(path, params)
        except ApiError as exc:
            self._json(exc.status, {"error": exc.message})
        except UsageError as exc:
            self._json(400, {"error": str(exc)})
        except (OverflowError, RecursionError, UnicodeError) as exc:
            self._json(400, {"error": f"a value of the request is out of range: {type(exc).__name__}"})
        except SdpError as exc:
            self._json(500, {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - a fault of the machine (503) or a bug (500), never a traceback
            self._unexpected(method, exc)

    def _unexpected(self, method: str, exc: Exception) -> None:
        fault = describe_fault(exc, self.server.workspace / "discovery.db")
        if fault is not None:
            self.server.log(f"gallery: {fault}")
            self._json(503, {"error": fault})
            return
        if os.environ.get("SDP_DEBUG"):
            raise exc
        self.server.log(f"gallery: internal error on {method} {self.path[:200]}: {type(exc).__name__}: {exc}")
        self._json(500, {"error": "internal error; the terminal running sdp gallery says more"})

    # who may ask (see .access) -----------------------------------------------------
    def _admit(self, method: str, path: str, params: dict[str, list[str]]) -> bool:
        """Check Host, Origin and the token; False when the request was answered here
        (refused, or the page reloaded without the token in its address)."""
        access = self.server.access
        host = self.headers.get("Host")
        if not access.host_allowed(host):
            self._drain()
            raise ApiError(403, "unexpected Host header (--allow-host NAME accepts another name)")
        if not access.origin_allowed(self.headers.get("Origin"), host):
            self._drain()
            raise ApiError(403, "cross-origin requests are refused")
        state = access.token_state(self.headers, params)
        if state in ("missing", "wrong"):
            self._drain()
            raise ApiError(
                401,
                "this gallery is shared with a token: open the link `sdp gallery` printed"
                if state == "missing"
                else "wrong token: open the link `sdp gallery` printed",
            )
        if state == "query" and method == "GET" and not path.startswith("/api/"):
            # the first visit: keep the token in a cookie, and reload without it in the address
            rest = urlencode([(k, v) for k, vs in params.items() if k != "token" for v in vs])
            self._redirect(path + (f"?{rest}" if rest else ""), {"Set-Cookie": access.set_cookie()})
            return False
        return True

    def _redirect(self, location: str, extra: dict[str, str]) -> None:
        self._send(303, b"", "text/plain; charset=utf-8", extra={"Location": location, **extra})

    # GET ---------------------------------------------------------------------------
    def _get(self, path: str, params: dict[str, list[str]]) -> None:
        static = self.server.static.get(path)
        if static is not None:
            self._send(200, static[0], static[1], extra={"Cache-Control": "no-cache"})
            return
        if path.startswith("/api/"):
            handler = _GET_ROUTES.get(path[len("/api/") :])
            if handler is None:
                raise ApiError(404, f"no such API: {path[:100]}")
            self._answer(handler(self, params))
            return
        route = split_file_route(path)
        if route is None or route[0] not in ("img", "thumb"):
            if ".." in path or "%" in path or "\\" in path:
                raise ApiError(403, "refused")
            raise ApiError(404, "not found")
        kind, experiment, name = route
        if not self.server.is_experiment(experiment):
            raise ApiError(404, "not found")
        source = safe_image_path(self.server.workspace, experiment, name, self.server.root)
        if source is None:
            raise ApiError(
                403 if (self.server.workspace / experiment / name).is_symlink() else 404, "not found"
            )
        if kind == "img":
            self._file(source, "image/png")
            return
        try:
            thumb = thumbnail(self.server.workspace, experiment, name, source)
        except ThumbnailError as exc:
            raise ApiError(404, str(exc)) from None
        if isinstance(thumb, bytes):
            self._send(200, thumb, "image/jpeg", extra={"Cache-Control": "private, max-age=86400"})
        else:
            self._file(thumb, "image/jpeg")

    def _store_and_experiment(self, params: dict[str, list[str]]) -> tuple[Store, int, str]:
        names = params.get("experiment") or [""]
        name = names[0]
        if not name:
            raise ApiError(400, "which experiment? give experiment=NAME")
        store = self.server.open_store()
        exp_id = store.experiment_id(name)
        if exp_id is None:
            store.close()
            raise ApiError(404, f"no experiment named {name!r}")
        return store, exp_id, name

    def api_experiments(self, params: dict[str, list[str]]) -> Any:
        with self.server.open_store() as store:
            reply = experiments_reply(self.server.workspace, store, self.headers.get("If-None-Match"))
        if reply.status == 200:
            # a shared gallery names the workspace, without the path of this machine's folders
            reply.data["workspace"] = (
                self.server.workspace.name if self.server.shared else str(self.server.workspace)
            )
            reply.data["read_only"] = self.server.read_only
        return reply

    def api_samples(self, params: dict[str, list[str]]) -> Any:
        filters = parse_filters(params)
        after, limit = page_args(params)
        before, total, since = window_args(params)
        store, exp_id, name = self._store_and_experiment(params)
        with store:
            if since is not None:
                result = queries.recent(store.db, exp_id, filters, since, limit)
            else:
                result = queries.page(store.db, exp_id, filters, after, limit, before=before, total=total)
        result["experiment"] = name
        return result

    def api_facets(self, params: dict[str, list[str]]) -> Any:
        from stable_discovery.analysis.stats import setting_names

        filters = parse_filters(params)
        store, exp_id, name = self._store_and_experiment(params)
        with store:
            key = (exp_id, *store.experiment_stamp(exp_id))
            settings = setting_names(store.require(name).template_text)
            names = self.server.cached_facets(key, lambda: queries.facets(store.db, exp_id, settings))
            names = queries.follow_filters(store.db, exp_id, names, filters)
        return {"experiment": name, "names": names}

    def api_download(self, params: dict[str, list[str]]) -> Any:
        from stable_discovery.gallery.download import send_zip

        filters = parse_filters(params)
        store, _exp_id, name = self._store_and_experiment(params)
        with store:
            send_zip(self, store, name, filters)
        return None

    def api_record(self, params: dict[str, list[str]]) -> Any:
        index = parse_int((params.get("index") or [""])[0], "index")
        store, _exp_id, name = self._store_and_experiment(params)
        with store:
            exp = store.require(name)
            record = store.record(exp, index)
        if record is None or record["status"] != "done":
            raise ApiError(404, f"{name!r} has no generated sample {index}")
        record["backend"] = exp.backend  # the page says when the model was not used (dummy)
        return record

    def api_stats(self, params: dict[str, list[str]]) -> Any:
        from stable_discovery.analysis.stats import experiment_stats

        min_text = (params.get("min_stars") or [""])[0]
        min_stars = None if min_text in ("", "none") else parse_int(min_text, "min_stars", low=1, high=5)
        store, _exp_id, name = self._store_and_experiment(params)
        with store:
            data = experiment_stats(store, store.require(name), min_stars=min_stars).to_dict()
        data.setdefault("experiment", name)
        return data

    # POST --------------------------------------------------------------------------
    def _post(self, path: str) -> None:
        if path not in _POST_ROUTES:
            self._drain()
            raise ApiError(
                404 if not path.startswith("/api/") or path[5:] not in _GET_ROUTES else 405,
                "nothing to post here",
            )
        if self.server.read_only:
            self._drain()
            raise ApiError(403, "this gallery is read-only: nothing can be changed here")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            self._drain()
            raise ApiError(415, "send JSON (Content-Type: application/json)")
        length_text = self.headers.get("Content-Length")
        if length_text is None or not (length_text.isascii() and length_text.isdigit()):
            self.close_connection = True
            raise ApiError(411, "Content-Length is required")
        length = int(length_text)
        if length > MAX_BODY:
            self.close_connection = True
            raise ApiError(413, "the body is too large")
        self._json(200, _POST_ROUTES[path](self, self._read_body(length)))

    def post_rate(self, body: bytes) -> dict[str, Any]:
        return self._rate(parse_rate(body))

    def post_archive(self, body: bytes) -> dict[str, Any]:
        """Archive an experiment (the page hides it from its list unless asked) or bring it back."""
        name, archived = parse_archive(body)
        with self.server.open_store(write=True) as store:
            if store.get(name) is None:
                raise ApiError(404, f"no experiment named {name!r}")
            exp = store.set_archived(name, archived)
        return {"experiment": exp.name, "archived": exp.archived}

    def _rate(self, request: RateRequest) -> dict[str, Any]:
        """Apply a checked rating change; the sample's rating as it now stands."""
        with self.server.open_store(write=True) as store:
            exp = store.get(request.experiment)
            if exp is None:
                raise ApiError(404, f"no experiment named {request.experiment!r}")
            if not store.is_done(exp.id, request.index):
                raise ApiError(404, f"{request.experiment!r} has no generated sample {request.index}")
            kwargs: dict[str, Any] = {}
            if request.favourite is not ...:
                kwargs["favourite"] = request.favourite
            if request.rejected is not ...:
                kwargs["rejected"] = request.rejected
            if request.stars is not ...:
                kwargs["stars"] = request.stars
            store.rate(exp, [request.index], **kwargs)
            rating = store.rating(exp, request.index)
        return {"experiment": exp.name, "index": request.index, "rating": rating}

    # responses ---------------------------------------------------------------------
    def _answer(self, result: Any) -> None:
        """Send what a GET route returned: data (200), a :class:`Reply`, or nothing when
        the route answered by itself (a download)."""
        if result is None:
            return
        if isinstance(result, Reply):
            if result.data is None:
                self.send_response(result.status)
                for key, value in result.headers.items():
                    self.send_header(key, value)
                self.send_header("Server-Timing", f"app;dur={(time.perf_counter() - self._t0) * 1000:.3f}")
                self.end_headers()
            else:
                self._json(result.status, result.data, extra=result.headers)
            return
        self._json(200, result)

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        if ctype.startswith("text/html"):
            self.send_header("Content-Security-Policy", _CSP)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.send_header("Server-Timing", f"app;dur={(time.perf_counter() - self._t0) * 1000:.3f}")
        deadlines = self.server.deadlines
        deadlines.arm(self.connection, deadlines.write + len(body) / 65536)  # a slow reader: 64 kB/s
        try:
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)
        finally:
            deadlines.disarm(self.connection)

    def _json(self, status: int, data: Any, extra: dict[str, str] | None = None) -> None:
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {"Cache-Control": "no-store", **(extra or {})}
        self._send(status, body, "application/json; charset=utf-8", headers)

    def _file(self, path: Path, ctype: str) -> None:
        try:
            st = path.stat()
            etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
            headers = {
                "Cache-Control": "private, max-age=86400",
                "ETag": etag,
                "Last-Modified": formatdate(st.st_mtime, usegmt=True),
            }
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Server-Timing", f"app;dur={(time.perf_counter() - self._t0) * 1000:.3f}")
                self.end_headers()
                return
            data = path.read_bytes()
        except OSError:
            raise ApiError(404, "not found") from None
        self._send(200, data, ctype, headers)


_GET_ROUTES: dict[str, Callable[[GalleryHandler, dict[str, list[str]]], Any]] = {
    "experiments": GalleryHandler.api_experiments,
    "samples": GalleryHandler.api_samples,
    "facets": GalleryHandler.api_facets,
    "record": GalleryHandler.api_record,
    "stats": GalleryHandler.api_stats,
    "download": GalleryHandler.api_download,
}

_POST_ROUTES: dict[str, Callable[[GalleryHandler, bytes], dict[str, Any]]] = {
    "/api/rate": GalleryHandler.post_rate,
    "/api/archive": GalleryHandler.post_archive,
}


def make_server(
    workspace: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    log: Callable[[str], None] | None = None,
    *,
    token: str | None = None,
    read_only: bool = False,
    allow_hosts: tuple[str, ...] = (),
    deadlines: Deadlines | None = None,
    max_connections: int | None = None,
) -> GalleryServer:
    """A gallery server over ``workspace`` (which must hold a run store), not yet serving.

    A ``host`` other than this machine's loopback needs a ``token`` (a new one when
    none is given: ``server.access.token``). A store that cannot
    be written (a read-only disk or folder) is served read-only whatever ``read_only``
    says; ``server.forced_read_only`` then says why.
    """
    workspace = Path(workspace)
    if token is None and not is_loopback(host):
        token = new_token()
    require_store(workspace)
    Store(workspace, mode="read").close()  # refuses a newer or damaged store; applies pending indexes
    forced = None
    if not read_only and not (
        os.access(workspace / "discovery.db", os.W_OK) and os.access(workspace, os.W_OK)
    ):
        forced = f"{workspace} cannot be written"
    try:
        server = GalleryServer(
            (host, port),
            workspace,
            log=log,
            token=token,
            read_only=read_only or forced is not None,
            allow_hosts=allow_hosts,
            deadlines=deadlines,
            max_connections=max_connections,
        )
    except OSError as exc:
        if exc.errno in (98, 48):  # EADDRINUSE on Linux, macOS
            raise UsageError(
                f"port {port} is in use: pick another with --port, or --port 0 for any free one"
            ) from None
        raise UsageError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    server.forced_read_only = forced
    return server
