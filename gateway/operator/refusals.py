"""Why a gateway refuses an operator command: stable codes for machines, a message for
people. The codes travel in `CommandResult.code` and are listed in docs/mqtt-contract.md."""

from __future__ import annotations

from typing import Final

from gateway.alarms.events import CommandRefused

OVERSIZED: Final = "oversized"
"""The payload is larger than MAX_COMMAND_BYTES."""
MALFORMED: Final = "malformed"
"""Not a command of the contract (not UTF-8 JSON, unknown action, a field wrong)."""
RETAINED: Final = "retained"
"""Delivered as a retained message: it would be applied again at every reconnect."""
WRONG_GATEWAY: Final = "wrong_gateway"
"""Names another gateway, site or topic root; or, signed, not all three (an older signing
tool bound a command to the gateway id only, which other sites may share)."""
UNSIGNED: Final = "unsigned"
"""No signature, and this gateway takes signed alarm commands only."""
UNTRUSTED_KEY: Final = "untrusted_key"
"""Signed by a key that is not among the gateway's operator keys."""
BAD_SIGNATURE: Final = "bad_signature"
"""The signature does not verify: the command was altered, or signed with another key."""
NOT_PERMITTED: Final = "not_permitted"
"""The key may not do this action (`operators.keys[].may`)."""
BAD_VALIDITY: Final = "bad_validity"
"""No `expires`, or it is before `ts`, or more than MAX_COMMAND_LIFETIME_S after it."""
NOT_YET_VALID: Final = "not_yet_valid"
"""Issued in the future by more than the allowed clock skew."""
EXPIRED: Final = "expired"
"""Past its `expires` time: when it arrived, or when its turn to be carried out came (it
expired while it waited behind others or for its id's write; its id stays used)."""
REPLAYED: Final = "replayed"
"""This key's command id was received before (also before a restart), or the command was
issued before the gateway's replay memory began."""
TOO_LONG: Final = "too_long"
"""A shelve or suppression longer than MAX_SHELVE_S (the panel's limit too)."""
NOT_APPLICABLE: Final = "not_applicable"
"""The alarms refused it: unknown alarm, nothing to acknowledge, already shelved …"""
UNAVAILABLE: Final = "unavailable"
"""The replay memory cannot record the command (disk trouble), or the gateway stopped before
its turn came: nothing is carried out."""
BUSY: Final = "busy"
"""Too many commands already wait for the replay memory (a slow or locked disk,
gateway.operator.command_queue): not judged, nothing carried out or remembered."""
FAILED: Final = "failed"
"""A fault in the gateway while carrying it out (logged)."""

CODES: Final = (OVERSIZED, MALFORMED, RETAINED, WRONG_GATEWAY, UNSIGNED, UNTRUSTED_KEY,
                BAD_SIGNATURE, NOT_PERMITTED, BAD_VALIDITY, NOT_YET_VALID, EXPIRED, REPLAYED,
                TOO_LONG, NOT_APPLICABLE, UNAVAILABLE, BUSY, FAILED)


class Refused(CommandRefused):
    """An operator command refused with a code (one of CODES) and a message; the panel shows
    the message (it is a CommandRefused), `cmd/result` carries both."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
