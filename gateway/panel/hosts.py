"""Which requests the panel answers by the name they were sent to, and who the client is behind
a reverse proxy.

DNS rebinding: a page on `attacker.example` whose name is then made to resolve to the panel's
address reads the panel as its own origin — the browser sees `attacker.example` on both sides,
so neither the same-origin policy nor the `Origin` check stops it. The browser still sends
`Host: attacker.example:PORT`, so the panel answers only the names it is reachable by:
`panel.bind`, `localhost`, this machine's name (`gethostname()`, its first label, and that label
under `.local`) and addresses (any address a socket of this machine can be bound to), each with
the panel's port, and the names of `panel.hosts` on any port (a proxy in front may use its
own). Anything else is 421 `misdirected_request`, logged as `event=panel_host_refused` (one
line, then at most one a minute with a count). A request without `Host` (HTTP/1.0: no browser
sends one) is answered. `/healthz` and `/metrics` answer any name: monitoring reaches a gateway
by names it cannot know, and neither changes anything (`/metrics` is limited by address).

Behind a reverse proxy every client has the proxy's address: with `panel.trusted_proxies`, a
request from one of them counts as from the last address in `X-Forwarded-For` that is not
itself a trusted proxy (the client the proxy saw); a header that does not parse is ignored."""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from gateway.ops.connections import RateLimitFilter
from gateway.ops.httptypes import Handler, HttpError, Request, Response, Router
from gateway.ops.routes import Network, allowed

log = logging.getLogger("gateway.panel.server")
log.addFilter(RateLimitFilter(prefix="event=panel_host_refused"))

OPEN_PATHS = frozenset({"/healthz", "/metrics"})
"""Answered whatever the `Host`."""
MAX_REMEMBERED = 64
"""Addresses remembered as this machine's or not."""
_PORT = re.compile(r"\A:([0-9]{1,5})\Z")


def split_host(value: str) -> tuple[str, int | None] | None:
    """(name, port) of a `Host` header, the name lower case without a trailing dot or IPv6
    brackets; None: no host a client could mean."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1:]
    elif value.count(":") == 1:
        name, colon, port = value.partition(":")
        rest = colon + port
    elif ":" in value:  # an IPv6 address without brackets is no Host
        return None
    else:
        name, rest = value, ""
    port_match = _PORT.match(rest)
    if rest and port_match is None:
        return None
    name = name[:-1] if name.endswith(".") else name
    if not name:
        return None
    return name, None if port_match is None else int(port_match[1])


def _own_names() -> frozenset[str]:
    try:
        full = socket.gethostname().lower().rstrip(".")
    except OSError:
        full = ""
    short = full.split(".", 1)[0]
    names = {"localhost"}
    if short:
        names.update({full, short, f"{short}.local"})
    return frozenset(names)


def _is_own_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether `address` is one of this machine's: a socket can be bound to it."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(address), 0))
    except OSError:
        return False
    return True


class HostCheck:
    """The names the panel answers to (see the module docstring); `port` is set when the
    server has bound."""

    def __init__(self, bind: str, hosts: Iterable[str]) -> None:
        self.port: int | None = None
        self._listed = frozenset(_bare(h) for h in hosts)
        self._own = _own_names() | {_bare(bind)}
        self._addresses: OrderedDict[str, bool] = OrderedDict()

    def allows(self, host: str) -> bool:
        if not host:
            return True
        parsed = split_host(host)
        if parsed is None:
            return False
        name, port = parsed
        if name in self._listed:
            return True
        if port != self.port and not (port is None and self.port == 80):
            return False
        if name in self._own:
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False
        return self._own_address(address)

    def _own_address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        key = str(address)
        known = self._addresses.get(key)
        if known is None:
            known = _is_own_address(address)
            self._addresses[key] = known
            while len(self._addresses) > MAX_REMEMBERED:
                self._addresses.popitem(last=False)
        return known

    def check(self, request: Request, client: str) -> None:
        """421 for a `Host` the panel does not answer to."""
        host = request.host
        if self.allows(host):
            return
        log.warning("event=panel_host_refused client=%s host=%r path=%s", client, host[:100],
                    request.path[:100])
        raise HttpError(421, "misdirected_request",
                        f"this panel does not answer to the name {host[:100]!r}: use its "
                        "address, localhost or the machine's name, or add the name to "
                        "panel.hosts (a proxy in front of it, a DNS name)")


class HostCheckedRouter(Router):
    """A Router whose routes (but /healthz and /metrics) first check the `Host`."""

    def __init__(self, hosts: HostCheck, proxies: Sequence[Network]) -> None:
        super().__init__()
        self._hosts = hosts
        self._proxies = proxies

    def add(self, method: str, path: str, handler: Handler) -> None:
        if path in OPEN_PATHS:
            super().add(method, path, handler)
            return
        hosts, proxies = self._hosts, self._proxies

        async def checked(request: Request) -> Response:
            hosts.check(request, client_of(request, proxies))
            return await handler(request)

        super().add(method, path, checked)


def client_of(request: Request, proxies: Sequence[Network]) -> str:
    """The client's address: the peer's, or behind a trusted proxy the one it forwarded."""
    remote = request.remote or "unknown"
    forwarded = request.headers.get("x-forwarded-for")
    if not proxies or not forwarded or not allowed(remote, proxies):
        return remote
    for part in reversed(forwarded.split(",")):
        try:
            address = ipaddress.ip_address(part.strip())
        except ValueError:
            return remote  # not what a proxy writes: the proxy's own address, as without it
        if not allowed(str(address), proxies):
            return str(address)
    return remote


def _bare(name: str) -> str:
    name = name.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name[:-1] if name.endswith(".") else name
