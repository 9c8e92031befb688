"""Encoding and strict decoding of contract messages; ContractError and nothing else."""

from __future__ import annotations

from pydantic import (
    ValidationError,
)

from gateway.contract.base import Upstream, describe_errors
from gateway.contract.topics import Message, Topic, payload_adapter
from gateway.contract.vocab import DEFAULT_ROOT, MAX_PAYLOAD_BYTES, ContractError

# ---------------------------------------------------------------------------------- codec

def encode(message: Message) -> bytes:
    """Compact UTF-8 JSON; null fields are left out (every nullable field defaults to null).
    Raises ContractError if the result would exceed the size limit."""
    try:
        data = message.model_dump_json(exclude_none=True).encode()
    except Exception as exc:  # e.g. a lone surrogate in a string
        raise ContractError(f"cannot encode: {type(exc).__name__}: {exc}") from None
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ContractError(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return data


def decode(topic: str | Topic, payload: bytes, *, root: str = DEFAULT_ROOT) -> Message:
    """The message a topic and payload carry; ContractError (only) if either is bad."""
    try:
        parsed = topic if isinstance(topic, Topic) else Topic.parse(topic, root)
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise ContractError("payload must be bytes")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ContractError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        raw = bytes(payload)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContractError(f"payload is not UTF-8: {exc.reason} at byte {exc.start}"
                                ) from None
        try:
            message: Message = payload_adapter(parsed.channel).validate_json(text)
        except ValidationError as exc:
            raise ContractError(f"{parsed.channel.value}: {describe_errors(exc)}") from None
        if isinstance(message, Upstream) and (message.site, message.gateway) != (
                parsed.site, parsed.gateway):
            raise ContractError(
                f"payload names {message.site}/{message.gateway} but the topic "
                f"{parsed.site}/{parsed.gateway}")
        return message
    except ContractError:
        raise
    except Exception as exc:  # the contract promises ContractError only
        raise ContractError(f"undecodable payload: {type(exc).__name__}: {exc}") from None
