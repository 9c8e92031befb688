"""The ops routes the gateway's panel and the central ingest share: `GET /healthz` and
`GET /metrics`, added to a `gateway.ops.httptypes.Router`.

- `/healthz` answers the JSON body and status the service's `health()` gives (no login: load
  balancers and supervisors ask it);
- `/metrics` answers the Prometheus text the service's `metrics()` renders at the moment of the
  scrape, to clients in `allow` only (others: 403 `forbidden`; None: every client); a
  `metrics()` that answers None (nothing to report) is 404.

Both are never cached. Imports nothing of the edge or the ingest: each side passes its own
callables.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence

from gateway.ops.httptypes import HttpError, Request, Response, Router, json_response

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Health = Callable[[], tuple[int, object]]
"""→ (HTTP status, JSON-able body)."""
Metrics = Callable[[], tuple[bytes, str] | None]
"""→ (exposition, content type), or None when there is nothing to report."""


def allowed(remote: str, allow: Sequence[Network] | None) -> bool:
    """Whether `remote` (an address, maybe with an IPv6 zone) is inside `allow`."""
    if allow is None:
        return True
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in allow)


def add_ops_routes(router: Router, *, health: Health, metrics: Metrics | None,
                   allow: Sequence[Network] | None = None, name: str = "panel",
                   ready: Callable[[], Awaitable[None]] | None = None) -> None:
    """/healthz, and /metrics unless `metrics` is None (then it is an unknown path); `ready`
    is awaited before a scrape renders (what rendering imports, off the event loop's thread:
    gateway.first_import)."""

    async def healthz(request: Request) -> Response:
        status, body = health()
        return json_response(body, status)

    router.add_get("/healthz", healthz)
    if metrics is None:
        return
    serve = metrics

    async def scrape(request: Request) -> Response:
        if not allowed(request.remote, allow):
            log.info("event=metrics_refused server=%s client=%s", name, request.remote)
            raise HttpError(403, "forbidden", "metrics are not served to this address")
        if ready is not None:
            await ready()
        rendered = serve()
        if rendered is None:
            raise HttpError(404, "not_found", "there is nothing here to report metrics of")
        body, content_type = rendered
        return Response(body, 200, content_type, {"Cache-Control": "no-store"})

    router.add_get("/metrics", scrape)
