"""CRC-16/CCITT-FALSE as gateware: one byte per cycle, a parity network.

The host protocol (:mod:`delrec.wire`) protects every frame with
CRC-16/CCITT-FALSE (polynomial ``0x1021``, initial value ``0xFFFF``, no
reflection, no final XOR). One byte step of that CRC is linear over GF(2) in
the 16 bits of the running CRC and the 8 bits of the byte, so each of the 16
next-state bits is the XOR of a fixed subset of those 24 bits. The subsets
are derived here from the bit-serial definition
(:func:`delrec.wire.crc16_step`, which the host's :func:`delrec.wire.crc16`
runs too), which keeps the gateware and the host's CRC one definition.
"""

from __future__ import annotations

from functools import reduce
from operator import xor

from amaranth.hdl import Cat, Const, Value

from delrec.wire import crc16_step

__all__ = ["crc16_next"]


def _parity_taps() -> list[list[int]]:
    """For each next-state bit, the input bits it XORs (0..15 CRC, 16..23 byte)."""
    columns = [crc16_step(1 << bit, 0) for bit in range(16)]
    columns += [crc16_step(0, 1 << bit) for bit in range(8)]
    return [[source for source, column in enumerate(columns) if column >> out & 1]
            for out in range(16)]


_TAPS = _parity_taps()


def crc16_next(crc: Value, byte: Value) -> Value:
    """The 16-bit CRC after ``byte`` (combinational: one XOR tree per output bit).

    Parameters
    ----------
    crc : Value
        The running CRC, 16 bits.
    byte : Value
        The next byte, 8 bits.
    """
    inputs = Cat(crc[:16], byte[:8])
    return Cat(*[reduce(xor, [inputs[source] for source in taps], Const(0, 1)) for taps in _TAPS])
