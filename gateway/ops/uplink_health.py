"""The `uplink` health check: whether the MQTT uplink carries data both ways.

**degraded**, the first that applies, each naming why and the outbox's depth:
- it carries out unsigned operator commands (`operators.allow_unsigned`, lab only);
- its outbox keeps failing to commit or read (the disk full or failing: what the writer
  retries, with the reason; gateway.uplink.writer_faults) — the data path is stuck even if the
  broker is reachable;
- connected but **not subscribed**: the broker refused an inbound topic filter (its SUBACK:
  MQTT 5 *Not authorized*, MQTT 3.1.1 0x80 — an access rule that does not let this identity
  read its own `cmd`, `config/set` or `ack`). The detail names each refused filter, the
  broker's reason and what does not arrive: operator commands (acknowledge, shelve … from
  central), flashed configs, the ingest's acknowledgements (without them the outbox keeps what
  was stored centrally and publishes it again). Telemetry, alarms and state are still
  published; the refused filters are asked for again with back-off (gateway.uplink.
  subscriptions), and the check is ok again once the broker grants them — on the same
  connection or the next;
- connected, but nothing it published has been confirmed for 2 minutes (four ack timeouts if
  longer) while entries wait: no RoomWarden ingest behind the broker (`delivery: ingest`), or
  no subscriber (`puback`);
- not connected (the gateway works on its own; the outbox keeps everything), with the last
  error.

`not configured` is ok. An outbox found damaged and replaced by a fresh one
(gateway.uplink.outbox_recovery) is named in the detail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.ops.liveness_health import short
from gateway.uplink.status import link_text, refused_text

if TYPE_CHECKING:
    from gateway.uplink.publisher import Uplink

UNCONFIRMED_AFTER = 120.0
"""Seconds (at least; four ack timeouts if longer) with nothing confirmed while entries wait
before the uplink counts as degraded though connected."""


def uplink_trouble(uplink: Uplink | None, allow_unsigned: bool) -> tuple[bool, str]:
    """(degraded, detail) of the `uplink` check (gateway.ops.health wraps it)."""
    if uplink is None:
        return False, "not configured"
    status = uplink.status()
    outbox = f"outbox {status.outbox.depth}" + _outbox_trouble(uplink)
    link = link_text(status, with_error=False)
    if allow_unsigned:  # issue 9: lab mode
        return True, ("unsigned operator commands allowed (operators.allow_unsigned: lab "
                      f"only); {link}; {outbox}")
    failing = uplink.committer.faults.error
    if failing is not None:  # the data path is stuck even if the broker is reachable
        return True, f"{short(failing, 200)}; {link}; {outbox}"
    if status.connected and status.refused:
        return True, (f"connected, not subscribed: {refused_text(status.refused)}; telemetry "
                      "and alarms are still published; subscribing again every "
                      f"{uplink.settings.reconnect_max:g} s at most; {outbox}")
    stalled = _unconfirmed(uplink, status.unconfirmed_s, status.awaiting)
    if status.connected and stalled is not None:
        return True, f"connected; {stalled}; {outbox}"
    if status.connected:
        return False, f"connected; {outbox}"
    why = f" ({short(status.last_error)})" if status.last_error else ""
    return True, f"disconnected{why}; {outbox}"


def _unconfirmed(uplink: Uplink, seconds: float, awaiting: int) -> str | None:
    """Why a connected uplink delivers nothing (None: it does): the broker takes the messages
    but the ingest (`delivery: ingest`) or any subscriber (`puback`) has confirmed none for
    long — the entries stay in the outbox and are published again until its budget drops
    them (an upgraded gateway with no RoomWarden ingest behind its broker, the audit saw)."""
    if seconds < max(UNCONFIRMED_AFTER, 4 * uplink.delivery.ack_timeout):
        return None
    if uplink.settings.delivery == "ingest":
        return (f"the ingest has confirmed nothing for {seconds:.0f} s ({awaiting} waiting): "
                "is the RoomWarden ingest running and subscribed? (a consumer other than it "
                "needs uplink.delivery: puback)")
    return f"no subscriber has taken the telemetry for {seconds:.0f} s ({awaiting} waiting)"


def _outbox_trouble(uplink: Uplink) -> str:
    """` (damaged file replaced …)` once the outbox had to start afresh (else empty)."""
    n = uplink.outbox.recoveries
    if n <= 0:
        return ""
    return (f" (damaged file replaced by a fresh one{f' {n} times' if n > 1 else ''}; "
            "what it held is lost: see the log, event=outbox_corrupt)")
