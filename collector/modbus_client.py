"""A lean asyncio Modbus client for the collector: Modbus TCP and RTU over TCP, reads only.

pymodbus costs the collector about 60 % of its CPU per request (transaction manager, framer,
PDU classes, log-level checks, a future and a timer per request and attempt). The collector
needs little of it: one request in flight per connection (:class:`collector.transport.Connection`
sees to that), the four read function codes, a timeout with retries. This client is an
``asyncio.Protocol`` with one future per request attempt and no task of its own; the timeout is
one timer per connection that is moved, not re-created, from request to request.

Safety: facmon never writes to building equipment. The client has no write method, and
:func:`build_request`, the only place a request frame is made, refuses every function code but
the reads 1-4 (:func:`check_read_only`).

Framing:

- Modbus TCP: MBAP header (transaction id, protocol 0, length, unit id) + PDU. Each attempt
  gets a new transaction id; an answer with another id (a late answer to a request that timed
  out) is dropped.
- RTU over TCP (a serial gateway in transparent mode): unit id + PDU + CRC16, no transaction
  id. The answer's length follows from its function code and byte count (exception answers are
  5 bytes). Bytes that arrive while no request waits are dropped, the buffer is emptied before
  every request and retry, and a frame from another unit (a late answer) is skipped.

pymodbus is not imported here: serial RTU (``modbus_rtu``) keeps using it, in
``collector.transport``.
"""

from __future__ import annotations

import asyncio
import struct
from array import array
from itertools import chain
from typing import cast

__all__ = [
    "READ_FUNCTION_CODES",
    "ModbusClient",
    "ModbusExceptionResponse",
    "ReadOnlyViolation",
    "Unavailable",
    "build_request",
    "check_read_only",
    "crc16",
    "decode_answer",
]

READ_FUNCTION_CODES = frozenset({1, 2, 3, 4})

_EXCEPTION_NAMES = {
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

# Modbus limits per read: 2000 bits (1, 2), 125 registers (3, 4).
_MAX_COUNT = {1: 2000, 2: 2000, 3: 125, 4: 125}
# After this many requests in a row without any answer (each after all its retries) the TCP
# connection is dropped and the next request reconnects: a gateway that rebooted without
# resetting the connection would otherwise stay silent forever. pymodbus does the same.
_SILENT_REQUESTS_BEFORE_RECONNECT = 4


class ReadOnlyViolation(RuntimeError):
    """Something tried to send a Modbus function code other than a read (1, 2, 3, 4)."""


class ModbusExceptionResponse(Exception):
    """The device answered a read with a Modbus exception code."""

    def __init__(self, code: int, function_code: int, address: int, count: int) -> None:
        self.code = code
        self.function_code = function_code
        self.address = address
        self.count = count
        name = _EXCEPTION_NAMES.get(code, "unknown")
        super().__init__(
            f"Modbus exception {code} ({name}) for function {function_code} "
            f"address {address} count {count}"
        )


class Unavailable(Exception):
    """The device or gateway cannot be reached or gives no usable answer (text for operators)."""


def check_read_only(function_code: int) -> None:
    if function_code not in READ_FUNCTION_CODES:
        raise ReadOnlyViolation(
            f"refusing to send Modbus function code {function_code}: facmon only reads "
            f"(function codes {sorted(READ_FUNCTION_CODES)})"
        )


# -- frames -------------------------------------------------------------------------------------

_MBAP_READ = struct.Struct(">HHHBBHH")  # tid, protocol, length, unit, fc, address, count
_MBAP_HEAD = struct.Struct(">HHH")  # tid, protocol, length (counts unit id + PDU)
_RTU_READ = struct.Struct(">BBHH")  # unit, fc, address, count
_CRC_BYTES = struct.Struct("<H")  # the CRC goes low byte first


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


_CRC_PAIRS: array[int] | None = None  # see crc16
_LE_WORDS: dict[int, struct.Struct] = {}


def _crc_pairs() -> array[int]:
    global _CRC_PAIRS
    if _CRC_PAIRS is None:
        t = _CRC_TABLE
        one = [(c >> 8) ^ t[c & 0xFF] for c in range(65536)]
        _CRC_PAIRS = array("H", [one[c] for c in one])
    return _CRC_PAIRS


def crc16(data: bytes) -> int:
    """Modbus RTU CRC16 of ``data``; 0 for a whole frame whose CRC is right.

    Two bytes per step: after XOR-ing two bytes into the 16-bit register, all of its bits
    are shifted out, so the next register is a function of that value alone (a 64 K table,
    128 KiB, built on first use). Half the Python loop turns of the byte-wise table: a
    60-register RTU answer costs about 3 us instead of 5.
    """
    n = len(data)
    if n < 16:  # requests: not worth the table
        crc = 0xFFFF
        for byte in data:
            crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
        return crc
    pairs = _CRC_PAIRS if _CRC_PAIRS is not None else _crc_pairs()
    words = _LE_WORDS.get(n >> 1)
    if words is None:
        words = _LE_WORDS[n >> 1] = struct.Struct(f"<{n >> 1}H")
    crc = 0xFFFF
    for word in words.unpack_from(data):
        crc = pairs[crc ^ word]
    if n & 1:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ data[-1]) & 0xFF]
    return crc


def build_request(
    function_code: int, address: int, count: int, unit: int, transaction_id: int | None
) -> bytes:
    """The one function that makes a request frame: reads only.

    ``transaction_id`` None: an RTU frame (unit + PDU + CRC); else a Modbus TCP frame.
    """
    check_read_only(function_code)
    if not 1 <= count <= _MAX_COUNT[function_code] or not 0 <= address <= 0xFFFF - count + 1:
        raise ValueError(
            f"cannot read {count} from address {address} with function {function_code}"
        )
    if transaction_id is None:
        frame = _RTU_READ.pack(unit, function_code, address, count)
        return frame + _CRC_BYTES.pack(crc16(frame))
    return _MBAP_READ.pack(transaction_id, 0, 6, unit, function_code, address, count)


_WORDS: dict[int, struct.Struct] = {}
# Bits of each byte value, lowest first (Modbus packs the first coil in the lowest bit).
_BYTE_BITS = tuple(tuple(bool(b >> i & 1) for i in range(8)) for b in range(256))


def decode_answer(
    pdu: bytes, function_code: int, address: int, count: int
) -> list[int] | list[bool]:
    """Registers (3, 4) or bits (1, 2) of an answer PDU (function code onwards).

    The same checks and messages as ``collector.transport.modbus_read`` on a pymodbus answer.
    """
    if len(pdu) < 2:
        raise Unavailable(f"malformed answer: {len(pdu)} byte(s)")
    fc = pdu[0]
    if fc & 0x80:
        raise ModbusExceptionResponse(pdu[1], function_code, address, count)
    if fc != function_code:
        raise Unavailable(f"answer with function {fc} to a function {function_code} request")
    n = pdu[1]
    if n != len(pdu) - 2:
        raise Unavailable(f"malformed answer: byte count {n} with {len(pdu) - 2} data bytes")
    if fc >= 3:
        if n != 2 * count:
            raise Unavailable(f"response has {n // 2} registers, asked for {count}")
        words = _WORDS.get(count)
        if words is None:
            words = _WORDS[count] = struct.Struct(f">{count}H")
        return list(words.unpack_from(pdu, 2))
    if 8 * n < count:
        raise Unavailable(f"short response: {8 * n} of {count} bits")
    bits = list(chain.from_iterable(map(_BYTE_BITS.__getitem__, pdu[2:])))
    del bits[count:]  # padded to whole bytes
    return bits


# -- the connection -----------------------------------------------------------------------------


class _Link(asyncio.Protocol):
    """One TCP connection; at most one request waits for its answer (``waiter``).

    The waiter gets the answer's unit id and PDU, None when the attempt timed out, or
    :class:`Unavailable` when the connection is lost or the byte stream cannot be framed.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes] | None] | None = None
        self.buf = b""
        self.ignored = 0  # answers (or RTU bytes) that came when nothing or something else waited
        self._loop = asyncio.get_running_loop()
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def open(self) -> bool:
        return self.transport is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's (facmon's loop) is not an asyncio.Transport subclass.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.buf = b""
        self._fail(Unavailable(f"connection to {self.label} lost"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()  # connection_lost follows, from the loop
            self.transport = None
        self._fail(Unavailable(f"connection to {self.label} closed"))

    def _fail(self, exc: Unavailable) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def send(self, frame: bytes, timeout: float) -> asyncio.Future[tuple[int, bytes] | None]:
        if self.transport is None:
            raise Unavailable(f"connection to {self.label} lost")
        if self.waiter is not None:
            # Without transaction ids (RTU) two requests in flight cannot be told apart.
            raise RuntimeError(f"{self.label}: a request is already waiting for its answer")
        waiter = self.waiter = self._loop.create_future()
        self.transport.write(frame)
        self._expire_at(self._loop.time() + timeout)
        return waiter

    # The timeout: a timer per request and attempt (call_at + cancel) is a heap push and a
    # cancelled entry per request. Answers come long before the deadline, so one timer per
    # connection is left running and only moved on when it fires early.
    def _expire_at(self, deadline: float) -> None:
        self._deadline = deadline
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline:
                return
            timer.cancel()  # a shorter timeout than the one the timer was set for
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self.waiter
        if waiter is None or waiter.done():
            return  # idle: the next request sets a timer again
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)
            return
        waiter.set_result(None)

    def _answer(self, unit: int, pdu: bytes) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result((unit, pdu))
        else:
            self.ignored += 1

    def _garbled(self, why: str) -> None:
        # The stream cannot be framed any more: give up this connection, reconnect next time.
        self._fail(Unavailable(f"malformed answer from {self.label}: {why}"))
        self.buf = b""
        if self.transport is not None:
            self.transport.close()


class _TcpLink(_Link):
    """Modbus TCP: frames delimited by the MBAP length; answers matched by transaction id."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.tid = 0  # of the request waiting for its answer (or the last one)

    def send(self, frame: bytes, timeout: float) -> asyncio.Future[tuple[int, bytes] | None]:
        waiter = super().send(frame, timeout)
        self.tid = frame[0] << 8 | frame[1]
        return waiter

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        n = len(buf)
        off = 0
        while n - off >= 8:  # header and function code
            tid, protocol, length = _MBAP_HEAD.unpack_from(buf, off)
            if protocol != 0 or not 2 <= length <= 254:
                self._garbled(f"protocol {protocol}, length {length}")
                return
            end = off + 6 + length
            if end > n:
                break
            if tid == self.tid:
                self._answer(buf[off + 6], buf[off + 7 : end])
            else:
                self.ignored += 1  # a late answer to an attempt that timed out
            off = end
        self.buf = buf[off:] if off else buf


class _RtuLink(_Link):
    """RTU over TCP: frames found by function code, byte count and CRC; matched by unit id."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.unit = 0  # of the request waiting for its answer
        self.function_code = 0
        self.skipped = False  # bytes before its answer were dropped

    def send(self, frame: bytes, timeout: float) -> asyncio.Future[tuple[int, bytes] | None]:
        waiter = super().send(frame, timeout)
        # Nothing is received before this runs: the loop reads the socket only later.
        self.buf = b""  # stale bytes: a late answer, line noise
        self.skipped = False
        self.unit, self.function_code = frame[0], frame[1]
        return waiter

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            self.buf = b""  # nothing asked: cannot be an answer to the next request
            self.ignored += 1
            return
        buf = self.buf + data if self.buf else data
        n = len(buf)
        unit, fc = self.unit, self.function_code
        i = 0
        # Hunt for the answer: this unit, this function (or its exception), a right CRC. A
        # frame of another unit (a late answer to a request that timed out) is stepped over
        # byte by byte: its CRC cannot fit at a wrong offset.
        while n - i >= 5:
            if buf[i] != unit or buf[i + 1] not in (fc, fc | 0x80):
                i += 1
                continue
            size = 5 if buf[i + 1] & 0x80 else 5 + buf[i + 2]
            if n - i < size:
                break  # wait for the rest
            frame = buf[i : i + size]
            if crc16(frame):
                i += 1
                continue
            if i or self.skipped:
                self.ignored += 1  # bytes before the answer: a frame of another unit, noise
            self.buf = b""
            self._answer(unit, frame[1:-2])
            return
        # What is kept is under 5 bytes or one candidate answer (at most 260 bytes).
        self.skipped = self.skipped or i > 0
        self.buf = buf[i:]


class ModbusClient:
    """Reads from the units behind one TCP connection (Modbus TCP, or RTU over TCP).

    One request at a time: the caller (:class:`collector.transport.Connection`) waits for an
    answer before sending the next. ``timeout`` (per attempt, also for connecting) and
    ``retries`` (re-sent attempts after a timeout) apply to the next request; the connection
    sets them per request as the devices sharing it may differ.
    """

    def __init__(
        self, host: str, port: int, *, rtu: bool = False, timeout: float = 1.0, retries: int = 0
    ) -> None:
        self.host = host
        self.port = port
        self.rtu = rtu
        self.timeout = timeout
        self.retries = retries
        self.label = f"{host}:{port}"
        self._link: _Link | None = None
        self._tid = 0
        self._silent = 0  # requests in a row without any answer
        self._ignored = 0  # by links closed since

    @property
    def ignored_answers(self) -> int:
        """Answers dropped as not for the request waiting (late ones), or stray RTU bytes."""
        return self._ignored + (self._link.ignored if self._link is not None else 0)

    @property
    def connected(self) -> bool:
        return self._link is not None and self._link.open

    async def connect(self) -> bool:
        """(Re)connect within ``timeout``; False when it cannot."""
        self.close()
        loop = asyncio.get_running_loop()
        link: _Link = _RtuLink(self.label) if self.rtu else _TcpLink(self.label)
        try:
            async with asyncio.timeout(self.timeout):
                await loop.create_connection(lambda: link, self.host, self.port)
        except (OSError, TimeoutError):
            return False
        self._link = link
        self._silent = 0
        return True

    def close(self) -> None:
        if self._link is not None:
            self._link.close()
            self._ignored += self._link.ignored
            self._link = None

    async def read(
        self, function_code: int, address: int, count: int, unit: int
    ) -> list[int] | list[bool]:
        """``count`` registers (function codes 3, 4) or bits (1, 2) from ``address`` of ``unit``.

        Raises ReadOnlyViolation for any other function code, ModbusExceptionResponse for an
        exception answer, Unavailable when not connected, the connection is lost, no answer
        comes within ``timeout`` after ``retries + 1`` attempts, or the answer does not fit.
        """
        link = self._link
        if link is None or link.transport is None:
            raise Unavailable(f"connection to {self.label} lost")
        attempts = self.retries + 1
        rtu = self.rtu
        for _ in range(attempts):
            if rtu:
                frame = build_request(function_code, address, count, unit, None)
            else:
                self._tid = tid = self._tid % 0xFFFF + 1
                frame = build_request(function_code, address, count, unit, tid)
            waiter = link.send(frame, self.timeout)
            try:
                got = await waiter
            finally:
                link.waiter = None
            if got is not None:
                break
        else:
            self._silent += 1
            if self._silent >= _SILENT_REQUESTS_BEFORE_RECONNECT:
                self.close()
            raise Unavailable(f"no response within {self.timeout:g} s ({attempts} attempt(s))")
        self._silent = 0
        answer_unit, pdu = got
        if answer_unit != unit and unit:
            raise Unavailable(f"answer from unit {answer_unit} to a request for unit {unit}")
        return decode_answer(pdu, function_code, address, count)
