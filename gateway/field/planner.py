"""Request planning: merge a device's points into the fewest Modbus reads, and learn splits.

Pure code. Points of one register type are sorted by address and merged greedily while the
request stays within the protocol limit (125 registers, 2000 bits, or the profile's lower
limit) and the unused gap between neighbours is at most `max_gap` registers (16 × that for
bits). For one-dimensional chunking with a span limit, greedy left-to-right is optimal.

Some devices answer a read that touches an unmapped register with exception 2 (illegal data
address) and so void every good point in it. `split_request` cuts such a request at its widest
gap (or its middle) and returns a *barrier*: an address a merged request may no longer span.
Barriers are remembered by the caller and passed to `plan_requests`, so the split survives
the next cycle without being learned again — until the caller (gateway.field.modbus_poller)
drops them for one poll after enough clean ones, to find out whether they are still needed.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.config.profile import RegisterType
from gateway.field.points import BoundPoint
from gateway.records import dataclass

FUNCTION_CODE = {
    RegisterType.COIL: 1,
    RegisterType.DISCRETE_INPUT: 2,
    RegisterType.HOLDING: 3,
    RegisterType.INPUT: 4,
}
MAX_REGISTERS = 125
MAX_BITS = 2000


@dataclass(frozen=True, slots=True)
class Barrier:
    register: RegisterType
    address: int
    """A request may not hold both an address below this one and one at or above it."""


@dataclass(frozen=True, slots=True)
class ReadRequest:
    register: RegisterType
    address: int
    count: int
    points: tuple[BoundPoint, ...]

    @property
    def function_code(self) -> int:
        return FUNCTION_CODE[self.register]

    @property
    def end(self) -> int:
        return self.address + self.count

    def describe(self) -> str:
        unit = "bits" if self.register.is_bit else "registers"
        return (f"FC{self.function_code:02d} {self.register.value:<14} "
                f"{self.address:>5}..{self.end - 1:<5} {self.count:>4} {unit:<9} "
                f"{len(self.points):>3} points")


def plan_requests(points: Iterable[BoundPoint], *, max_registers: int = MAX_REGISTERS,
                  max_bits: int = MAX_BITS, max_gap: int = 8,
                  barriers: Iterable[Barrier] = ()) -> list[ReadRequest]:
    """The fewest reads covering `points` within the limits, gaps and learned barriers."""
    by_type: dict[RegisterType, list[BoundPoint]] = {}
    for point in points:
        by_type.setdefault(point.modbus.register, []).append(point)
    cuts: dict[RegisterType, set[int]] = {}
    for barrier in barriers:
        cuts.setdefault(barrier.register, set()).add(barrier.address)

    requests: list[ReadRequest] = []
    for register in sorted(by_type, key=lambda r: FUNCTION_CODE[r]):
        group = sorted(by_type[register], key=lambda p: (p.modbus.address, p.modbus.width))
        limit = max_bits if register.is_bit else max_registers
        gap_limit = max_gap * 16 if register.is_bit else max_gap
        register_cuts = cuts.get(register, set())
        start = end = -1
        members: list[BoundPoint] = []
        for point in group:
            address, stop = point.modbus.address, point.modbus.address + point.modbus.width
            fits = (
                members
                and address - end <= gap_limit
                and max(end, stop) - start <= limit
                and not any(start < cut <= address for cut in register_cuts)
            )
            if fits:
                end = max(end, stop)
                members.append(point)
                continue
            if members:
                requests.append(ReadRequest(register, start, end - start, tuple(members)))
            start, end, members = address, stop, [point]
        if members:
            requests.append(ReadRequest(register, start, end - start, tuple(members)))
    return requests


def split_request(request: ReadRequest) -> tuple[Barrier, list[ReadRequest]] | None:
    """Cut a request that the device refused into two, or None if it holds a single register
    span that cannot be cut (then its points are themselves unreadable)."""
    points = sorted(request.points, key=lambda p: (p.modbus.address, p.modbus.width))
    best_index, best_gap = -1, -1
    reach = points[0].modbus.address + points[0].modbus.width
    candidates: list[tuple[int, int]] = []  # (index where the right half starts, gap before it)
    for index in range(1, len(points)):
        address = points[index].modbus.address
        if address >= reach:  # a clean cut: no point spans it
            candidates.append((index, address - reach))
        reach = max(reach, address + points[index].modbus.width)
    if not candidates:
        return None
    middle = len(points) / 2
    for index, gap in candidates:
        if gap > best_gap or (gap == best_gap and abs(index - middle) < abs(best_index - middle)):
            best_index, best_gap = index, gap
    left, right = points[:best_index], points[best_index:]
    barrier = Barrier(request.register, right[0].modbus.address)
    return barrier, [_cover(request.register, left), _cover(request.register, right)]


def _cover(register: RegisterType, points: list[BoundPoint]) -> ReadRequest:
    start = min(p.modbus.address for p in points)
    end = max(p.modbus.address + p.modbus.width for p in points)
    return ReadRequest(register, start, end - start, tuple(points))


def theoretical_rtu_seconds(requests: Iterable[ReadRequest], *, char_time: float,
                            frame_gap: float) -> float:
    """The shortest possible time for `requests` on an RTU line: every request and reply frame
    byte at `char_time`, plus one inter-frame silence before each frame."""
    total = 0.0
    for request in requests:
        request_bytes = 8  # unit, function, address (2), count (2), CRC (2)
        data = (request.count + 7) // 8 if request.register.is_bit else 2 * request.count
        reply_bytes = 5 + data  # unit, function, byte count, data, CRC (2)
        total += (request_bytes + reply_bytes) * char_time + 2 * frame_gap
    return total
