"""Who may use the gallery: the Host and Origin checks, and the token a shared gallery
asks for.

* Bound to this machine only (``127.0.0.1``, ``::1``, ``localhost``; the default), the
  gallery asks for nothing; the ``Host`` header must name this machine, so a web page
  that rebinds its own DNS name to 127.0.0.1 gets nothing (DNS rebinding).
* Bound to any other address, it asks for a secret token on every request: the link
  ``sdp gallery`` prints carries it (``/?token=…``); the first visit turns it into a
  cookie (``HttpOnly``, ``SameSite=Lax``) and reloads the page without it, and later
  requests carry the cookie. Scripts may send ``Authorization: Bearer TOKEN``.
  The ``Host`` header must still name this machine: its host names, an address typed as
  numbers (a rebinding attack always uses a name), or a name given with ``--allow-host``.
* Whatever the address, a request whose ``Origin`` is another site is refused.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie

__all__ = [
    "Access",
    "ENV_TOKEN",
    "LOOPBACK_HOSTS",
    "is_loopback",
    "machine_names",
    "network_address",
    "new_token",
    "split_host",
]

#: The environment variable that gives a shared gallery its token.
ENV_TOKEN = "SDP_GALLERY_TOKEN"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Seconds a browser keeps the token's cookie (a new token makes it useless anyway).
COOKIE_AGE = 30 * 24 * 3600


def new_token() -> str:
    """A fresh secret: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the gallery on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def network_address() -> str | None:
    """This machine's address on its network (the one its default route uses), found
    without sending anything; None when it has none."""
    for family, target in ((socket.AF_INET, ("10.255.255.255", 1)), (socket.AF_INET6, ("fd00::1", 1))):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect(target)  # UDP: chooses a route, sends nothing
                address = str(probe.getsockname()[0])
        except OSError:
            continue
        if not is_loopback(address) and address not in ("0.0.0.0", "::"):
            return address
    return None


def machine_names() -> set[str]:
    """The names and addresses this machine answers to (lower case, without port)."""
    names = {"localhost", "127.0.0.1", "::1"}
    try:
        host = socket.gethostname()
    except OSError:
        host = ""
    if host:
        names |= {host, f"{host}.local"}
        try:
            names.add(socket.getfqdn(host))
        except OSError:
            pass
        try:
            names |= {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
        except OSError:
            pass
    address = network_address()
    if address:
        names.add(address)
    return {n.lower() for n in names if n}


def split_host(header: str) -> tuple[str, int | None] | None:
    """``"name:8642"`` → ``("name", 8642)``, ``"[::1]:80"`` → ``("::1", 80)``; None when
    malformed."""
    header = header.strip().lower()
    if not header or any(c in header for c in " /\\@?#"):
        return None
    if header.startswith("["):
        end = header.find("]")
        if end < 0:
            return None
        host, rest = header[1:end], header[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = header.partition(":") if header.count(":") <= 1 else (header, "", "")
    if not host:
        return None
    if not port_text:
        return host, None
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
        return None
    return host, int(port_text)


@dataclass(frozen=True)
class Access:
    """The checks of one gallery: its port, the host names the ``Host`` header may
    carry, whether an IP address may stand there, and the token (None: none needed)."""

    port: int
    hosts: frozenset[str]
    ip_literals: bool = False
    token: str | None = None

    @classmethod
    def for_bind(cls, host: str, port: int, token: str | None, allow: Iterable[str] = ()) -> Access:
        """The checks for a gallery bound to ``host``: loopback needs no token (``token``
        is ignored); any other address needs one."""
        extra = {a.strip().lower().strip("[]") for a in allow if a.strip()}
        if is_loopback(host):
            return cls(port, frozenset({"127.0.0.1", "localhost", "::1"} | extra))
        if not token:
            raise ValueError("a gallery bound to a network address needs a token")
        names = machine_names() | extra
        if host not in ("0.0.0.0", "::", ""):
            names.add(host.lower().strip("[]"))
        return cls(port, frozenset(names), ip_literals=True, token=token)

    @property
    def cookie_name(self) -> str:
        # cookies are kept per host name, not per port: one gallery's cookie per port
        return f"sdp_gallery_{self.port}"

    def host_allowed(self, header: str | None) -> bool:
        """Whether the ``Host`` header names this gallery."""
        parsed = split_host(header or "")
        if parsed is None:
            return False
        host, port = parsed
        if port is not None and port != self.port:
            return False
        if port is None and self.port != 80:
            return False
        return host in self.hosts or (self.ip_literals and _is_ip(host))

    @staticmethod
    def origin_allowed(origin: str | None, host_header: str | None) -> bool:
        """Whether the ``Origin`` header (absent: a same-origin GET, or not a browser)
        is this gallery's own."""
        if origin is None:
            return True
        return origin.lower() == f"http://{(host_header or '').lower()}"

    def token_state(self, headers: Mapping[str, str] | object, query: Mapping[str, Sequence[str]]) -> str:
        """``"none"`` (no token needed), ``"cookie"`` or ``"header"`` (carried, right),
        ``"query"`` (in ``?token=``, right: set the cookie), ``"missing"`` or ``"wrong"``."""
        if self.token is None:
            return "none"
        get = getattr(headers, "get", None)
        auth = (get("Authorization") if get else None) or ""
        if auth.startswith("Bearer "):
            return "header" if self._same(auth[len("Bearer ") :].strip()) else "wrong"
        given = query.get("token")
        if given:
            return "query" if self._same(given[0]) else "wrong"
        cookie = self._cookie(get("Cookie") if get else None)
        if cookie is None:
            return "missing"
        return "cookie" if self._same(cookie) else "wrong"

    def _same(self, given: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode("utf-8"))

    def _cookie(self, header: str | None) -> str | None:
        if not header:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            return None
        morsel = jar.get(self.cookie_name)
        return None if morsel is None else morsel.value

    def set_cookie(self) -> str:
        """The ``Set-Cookie`` value that carries the token."""
        return f"{self.cookie_name}={self.token}; Max-Age={COOKIE_AGE}; Path=/; HttpOnly; SameSite=Lax"
