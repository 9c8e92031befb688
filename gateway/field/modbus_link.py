"""A Modbus bus connection (RTU over a serial port, or TCP) on top of pymodbus's async clients.

It turns pymodbus's many outcomes into two: a list of values, or one of two errors —
`ExceptionReply` (the device answered with a Modbus exception code) and `CommFailure`
(timeout, CRC error, garbage, truncated frame, connection lost). pymodbus is told not to
retry (`retries=0`): the bus loop owns retry and back-off, so one dead device costs at most
one timeout per poll. Register-read replies are decoded in one `struct` call
(gateway.field.modbus_replies, issue 15), pymodbus's client otherwise as it is; replies are
matched as before.

The link alone (re)connects, one connection at a time: pymodbus's own reconnect task is off
(`reconnect_delay=0`), and a read or write that finds the link down connects it again under
a lock, closing the client first (`_connect`). The poll is the retry: a device that fails is
polled with the bus loop's back-off (gateway.field.health), so one connection attempt per
poll. The field audit: with both reconnecting after a Modbus TCP device restarted, each
connect set the client's one transport and the overwritten one was never closed — a second
connection to the device, left idle for minutes; a converter that takes one connection per
bus link (RS-485 to Ethernet) refused every new one while the orphan held its slot, and the
device stayed offline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from gateway.config.profile import RegisterType
from gateway.config.site import ModbusRtuBus, ModbusTcpBus
from gateway.field.modbus_replies import ReadRepliesDecoder, UndecodableReply, words_struct
from gateway.field.planner import ReadRequest
from gateway.field.rtu_line import HuntingRtuFramer, UnitGuard

log = logging.getLogger("roomwarden.field")

ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


FUNCTION_CODES = {RegisterType.COIL: 1, RegisterType.DISCRETE_INPUT: 2,
                  RegisterType.HOLDING: 3, RegisterType.INPUT: 4}
"""The read function of each register type: a reply of another function (a device that
answers a holding read with its input registers, a late reply to another read) is no reply to
this read."""
WRITE_FUNCTION_CODES = {"write_coil": 5, "write_register": 6}


GATEWAY_NO_ANSWER = (10, 11)
"""A Modbus gateway's (TCP to RS-485) exceptions for a device that did not answer it: path
unavailable, target device failed to respond. No reply of the device: `CommFailure`, as a
timeout on our own line (a gateway whose serial side lost power answers every unit so:
gateway.field.bus_loop's bus silence; an output module behind it is unanswered)."""


def exception_reply(code: int) -> Exception:
    """The error of a reply with exception `code`."""
    if code in GATEWAY_NO_ANSWER:
        return CommFailure(str(ExceptionReply(code)))
    return ExceptionReply(code)


class ExceptionReply(Exception):
    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})")


class CommFailure(Exception):
    """No usable reply: timeout, CRC error, garbage, truncated frame or no connection."""


class ModbusLink:
    def __init__(self, bus: ModbusRtuBus | ModbusTcpBus) -> None:
        self.bus = bus
        self.client: AsyncModbusSerialClient | AsyncModbusTcpClient
        self.guard: UnitGuard | None = None
        """RTU: when a unit may be asked again after a failed exchange (gateway.field.rtu_line;
        TCP replies carry the request's transaction id)."""
        if isinstance(bus, ModbusRtuBus):
            self.client = AsyncModbusSerialClient(
                bus.port, baudrate=bus.baudrate, parity=bus.parity, stopbits=bus.stopbits,
                bytesize=bus.bytesize, timeout=bus.timeout, retries=0,
                reconnect_delay=0, name=bus.id,  # (the link reconnects: the docstring)
                trace_pdu=self._received)
            self.client.ctx.framer = HuntingRtuFramer(ReadRepliesDecoder())
            self.guard = UnitGuard(bus.id, bus.timeout)
            self.frame_gap = bus.frame_gap
        else:
            self.client = AsyncModbusTcpClient(
                bus.host, port=bus.port, timeout=bus.timeout, retries=0,
                reconnect_delay=0, name=bus.id)
            self.client.ctx.framer.decoder = ReadRepliesDecoder()
            self.frame_gap = 0.0
        self._last_frame_end = 0.0
        self._connecting = asyncio.Lock()

    async def open(self) -> None:
        if not await self._connect():  # polls retry the connection; the loop notes it
            raise CommFailure(f"cannot connect to {self._endpoint()}")

    async def _connect(self) -> bool:
        """Connect unless connected; whether the link is connected now. One connect at a time
        (a poll's read and an output's write may both find the link down), and the client is
        closed first: pymodbus keeps one transport, and a connect sets it whether or not one
        is open (`close()` closes it and cancels any reconnect task of pymodbus's). The caller
        sends at once, with no await in between: pymodbus's `execute` connects by itself if
        it finds no transport, outside this lock."""
        async with self._connecting:
            if self.client.connected:
                return True
            self.client.close()
            return await self.client.connect()

    async def close(self) -> None:
        self.client.close()

    @property
    def connected(self) -> bool:
        """Whether the connection is open now (the config health check asks)."""
        return bool(self.client.connected)

    async def read(self, request: ReadRequest, unit: int) -> Sequence[int] | Sequence[bool]:
        return await self._read(request, unit, self._values)

    async def read_words(self, request: ReadRequest, unit: int) -> bytes:
        """A register read's registers as they came, two big-endian bytes each (what the
        block decoder unpacks: no list of ints made and packed again; issue 15); the same
        errors as `read`."""
        return await self._read(request, unit, self._words)  # type: ignore[return-value]

    async def _read(self, request: ReadRequest, unit: int,
                    extract: Callable[[ReadRequest, Any], Sequence[int] | Sequence[bool] | bytes]
                    ) -> Sequence[int] | Sequence[bool] | bytes:
        if not self.client.connected and not await self._connect():
            raise CommFailure(f"not connected to {self._endpoint()}")
        if self.frame_gap:  # (RTU only: no coroutine to await per TCP read)
            await self._respect_frame_gap(unit)
            if not self.client.connected and not await self._connect():  # (lost meanwhile)
                raise CommFailure(f"not connected to {self._endpoint()}")
        try:
            reply = await self._send(request, unit)
            return extract(request, reply)
        except CommFailure:
            self._failed(unit)
            raise
        except ModbusException as exc:
            self._failed(unit)
            raise CommFailure(_short(exc)) from exc
        except (TimeoutError, OSError) as exc:
            self._failed(unit)
            raise CommFailure(repr(exc)) from exc
        finally:
            if self.frame_gap:  # (read by `_respect_frame_gap` alone)
                self._last_frame_end = asyncio.get_running_loop().time()

    def _checked(self, request: ReadRequest, reply: Any) -> None:
        """Raise unless `reply` is a reply of `request`'s function."""
        if reply is None:
            raise CommFailure("no reply")
        if isinstance(reply, UndecodableReply):
            raise CommFailure(reply.reason)
        if reply.isError():
            code = getattr(reply, "exception_code", None)
            if isinstance(code, int) and code:
                raise exception_reply(code)
            raise CommFailure(f"error reply: {reply}")
        expected = FUNCTION_CODES[request.register]
        if reply.function_code != expected:  # pymodbus matches replies by unit and transaction
            raise CommFailure(f"reply of function {reply.function_code} to a read of function "
                              f"{expected}")

    def _values(self, request: ReadRequest, reply: Any) -> Sequence[int] | Sequence[bool]:
        self._checked(request, reply)
        if request.register.is_bit:
            bits: list[bool] = list(reply.bits)
            if len(bits) != 8 * -(-request.count // 8):  # the bytes that carry them, exactly
                raise CommFailure(f"reply carries {len(bits)} bits, asked {request.count}")
            return bits[:request.count]
        registers: list[int] = list(reply.registers)
        if len(registers) != request.count:
            raise CommFailure(f"reply carries {len(registers)} registers, asked {request.count}")
        return registers

    def _words(self, request: ReadRequest, reply: Any) -> bytes:
        self._checked(request, reply)
        words: bytes | None = getattr(reply, "words", None)  # (modbus_replies's replies)
        if words is None:  # pymodbus's own reply (its debug log on): 16-bit registers
            registers = reply.registers
            words = words_struct(len(registers)).pack(*registers)
        if len(words) != 2 * request.count:
            raise CommFailure(f"reply carries {len(words) // 2} registers, asked "
                              f"{request.count}")
        return words

    async def write_coil(self, address: int, value: bool, unit: int) -> None:
        await self._write("write_coil", address, value, unit)

    async def write_register(self, address: int, value: int, unit: int) -> None:
        await self._write("write_register", address, value, unit)

    async def _write(self, method: str, address: int, value: Any, unit: int) -> None:
        if not self.client.connected and not await self._connect():
            raise CommFailure(f"not connected to {self._endpoint()}")
        if self.frame_gap:  # (no unit guard: an alarm output never waits)
            await self._respect_frame_gap()
            if not self.client.connected and not await self._connect():  # (lost meanwhile)
                raise CommFailure(f"not connected to {self._endpoint()}")
        try:
            reply = await getattr(self.client, method)(address, value, device_id=unit)
        except ModbusException as exc:
            self._failed(unit)
            raise CommFailure(_short(exc)) from exc
        finally:
            self._last_frame_end = asyncio.get_running_loop().time()
        if isinstance(reply, UndecodableReply):
            self._failed(unit)
            raise CommFailure(reply.reason)
        if reply.isError():
            raise exception_reply(int(getattr(reply, "exception_code", 0) or 0))
        expected = WRITE_FUNCTION_CODES[method]
        if reply.function_code != expected or reply.address != address:
            self._failed(unit)  # (a late reply to another write: not this write's answer)
            raise CommFailure(f"reply of function {reply.function_code} at {reply.address} to "
                              f"a write of function {expected} at {address}")

    def _send(self, request: ReadRequest, unit: int) -> Awaitable[Any]:
        """The client's read of `request` (its awaitable, awaited by the caller: no coroutine
        of ours around it)."""
        client = self.client
        if request.register is RegisterType.HOLDING:
            return client.read_holding_registers(request.address, count=request.count,
                                                 device_id=unit)
        if request.register is RegisterType.INPUT:
            return client.read_input_registers(request.address, count=request.count,
                                               device_id=unit)
        if request.register is RegisterType.COIL:
            return client.read_coils(request.address, count=request.count, device_id=unit)
        return client.read_discrete_inputs(request.address, count=request.count,
                                           device_id=unit)

    async def _respect_frame_gap(self, unit: int | None = None) -> None:
        """RTU needs 3.5 characters of silence between frames, and a unit that failed an
        exchange is not read again before its late reply would have come (`UnitGuard`; the
        bus loop polls other devices meanwhile); sleep only what is missing."""
        if not self.frame_gap:
            return
        wait = self._last_frame_end + self.frame_gap - asyncio.get_running_loop().time()
        if self.guard is not None and unit is not None:
            wait = max(wait, self.guard.wait_before(unit))
        if wait > 0:
            await asyncio.sleep(wait)

    def _failed(self, unit: int) -> None:
        if self.guard is not None:
            self.guard.failed(unit)

    def _received(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        """pymodbus's hook for every PDU sent and received: a frame no request waits for is a
        late reply (the transaction manager drops it; its unit waits a timeout again)."""
        if not sending and self.guard is not None:
            waiting = getattr(self.client.ctx, "response_future", None)
            if waiting is None or waiting.done():
                self.guard.late_frame(pdu.dev_id)
        return pdu

    def _endpoint(self) -> str:
        bus = self.bus
        return bus.port if isinstance(bus, ModbusRtuBus) else f"{bus.host}:{bus.port}"


def _short(exc: Exception) -> str:
    text = str(exc).replace("\n", " ")
    if "No response" in text or "timeout" in text.lower():
        return "timeout: no valid reply"
    return text[:200]
