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

Only POST changes anything. Each request opens its own SQLite connection (a ``Store``)
and closes it when done. Errors are answered as JSON ``{"error": message}`` with a 4xx
status, or a 500 without details (one line goes to the terminal).
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
from urllib.parse import parse_qs

from stable_discovery.errors import SdpError, UsageError
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
from stable_discovery.gallery.live import Reply, experiments_reply
from stable_discovery.gallery.paths import safe_image_path, split_file_route
from stable_discovery.gallery.thumbs import ThumbnailError, thumbnail
from stable_discovery.store import gallery_queries as queries
from stable_discovery.store.database import Store, read_experiment_names

__all__ = ["GalleryServer", "make_server", "LOOPBACK_HOSTS"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

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

    def __init__(
        self, address: tuple[str, int], workspace: Path, *, log: Callable[[str], None] | None = None
    ) -> None:
        self.workspace = Path(workspace)
        self.root = os.path.realpath(self.workspace)
        self.static = _load_static()
        self.log = log or (lambda line: sys.stderr.write(line + "\n"))
        self._lock = threading.Lock()
        self._names: set[str] = set()
        self._facets: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(address, GalleryHandler)
        self.port = int(self.server_address[1])
        self.allowed_hosts: set[str] | None = None
        if host in LOOPBACK_HOSTS:
            self.allowed_hosts = {f"127.0.0.1:{self.port}", f"localhost:{self.port}", f"[::1]:{self.port}"}

    @property
    def url(self) -> str:
        host = str(self.server_address[0])
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    def open_store(self) -> Store:
        return Store(self.workspace)

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

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def parse_request(self) -> bool:
        self._t0 = time.perf_counter()  # Server-Timing counts header parsing too
        return super().parse_request()

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
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _dispatch(self, method: str) -> None:
        try:
            self._check_host()
            path, _, query = self.path.partition("?")
            if method == "POST":
                self._post(path)
            else:
                try:
                    params = parse_qs(query, keep_blank_values=True, max_num_fields=1000)
                except ValueError:
                    raise ApiError(400, "too many query parameters") from None
                self._get(path, params)
        except ApiError as exc:
            self._json(exc.status, {"error": exc.message})
        except UsageError as exc:
            self._json(400, {"error": str(exc)})
        except SdpError as exc:
            self._json(500, {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug: one line on the terminal, no details to the page
            if os.environ.get("SDP_DEBUG"):
                raise
            self.server.log(
                f"gallery: internal error on {method} {self.path[:200]}: {type(exc).__name__}: {exc}"
            )
            self._json(500, {"error": "internal error; the terminal running sdp gallery says more"})

    def _check_host(self) -> None:
        allowed = self.server.allowed_hosts
        if allowed is not None and (self.headers.get("Host") or "").lower() not in allowed:
            raise ApiError(403, "unexpected Host header")

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
            return experiments_reply(self.server.workspace, store, self.headers.get("If-None-Match"))

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
        origin = self.headers.get("Origin")
        host = self.headers.get("Host") or ""
        if origin is not None and origin.lower() != f"http://{host}".lower():
            self._drain()
            raise ApiError(403, "cross-origin requests are refused")
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
        self._json(200, _POST_ROUTES[path](self, self.rfile.read(length)))

    def post_rate(self, body: bytes) -> dict[str, Any]:
        return self._rate(parse_rate(body))

    def post_archive(self, body: bytes) -> dict[str, Any]:
        """Archive an experiment (the page hides it from its list unless asked) or bring it back."""
        name, archived = parse_archive(body)
        with self.server.open_store() as store:
            if store.get(name) is None:
                raise ApiError(404, f"no experiment named {name!r}")
            exp = store.set_archived(name, archived)
        return {"experiment": exp.name, "archived": exp.archived}

    def _rate(self, request: RateRequest) -> dict[str, Any]:
        """Apply a checked rating change; the sample's rating as it now stands."""
        with self.server.open_store() as store:
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
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

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
    workspace: Path, host: str = "127.0.0.1", port: int = 0, log: Callable[[str], None] | None = None
) -> GalleryServer:
    """A gallery server over ``workspace`` (which must hold a run store), not yet serving."""
    workspace = Path(workspace)
    if not (workspace / "discovery.db").is_file():
        raise UsageError(
            f"no run store in {workspace} (discovery.db is missing): run `sdp run` first, "
            "or point --workspace at the folder it wrote"
        )
    Store(workspace).close()  # applies pending migrations (indexes) once, up front
    try:
        return GalleryServer((host, port), workspace, log=log)
    except OSError as exc:
        if exc.errno in (98, 48):  # EADDRINUSE on Linux, macOS
            raise UsageError(
                f"port {port} is in use: pick another with --port, or --port 0 for any free one"
            ) from None
        raise UsageError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
