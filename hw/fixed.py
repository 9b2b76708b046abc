"""Amaranth expressions for the integer operations of :mod:`delrec.arith`, and small shared helpers.

``saturate``, ``clamp``, ``decay``, ``rshift_round``, ``forward_value`` and
``sign_extend`` return an expression computing exactly the function of the
same name in :mod:`delrec.arith` (``saturate`` is ``sat``; plain
combinational logic, no state). ``delay_line`` builds the register chains of
the pipelines; ``check_bank_bits`` and ``words_per_bank`` size banked memories.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Signal, Value

__all__ = ["saturate", "clamp", "decay", "rshift_round", "forward_value", "sign_extend", "delay_line",
           "sweep", "check_bank_bits", "words_per_bank"]


def saturate(value: Value, bits: int) -> Value:
    """:func:`delrec.arith.sat`: clamp a signed ``value`` to ``bits`` bits (result ``signed(bits)``)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    value = Value.cast(value)
    width = value.shape().width
    if width <= bits and value.shape().signed:  # fits already: sign-extend to bits
        return Cat(value, value[-1].replicate(bits - width)).as_signed()
    clamped = Mux(value > hi, hi, Mux(value < lo, lo, value))
    return clamped[:bits].as_signed()


def clamp(value: Value, lo: int, hi: int) -> Value:
    """:func:`delrec.arith.clamp` with constant bounds (the result has ``value``'s shape)."""
    value = Value.cast(value)
    return Mux(value < lo, lo, Mux(value > hi, hi, value))


def rshift_round(value: Value, shift) -> Value:
    """:func:`delrec.arith.rshift_round`: ``(value + 2^(k-1)) >> k`` rounded half up; ``k = 0`` exact.

    ``shift`` is a constant ``int`` or an unsigned :class:`~amaranth.hdl.Value`
    (a run-time learning-rate shift). A run-time shift uses
    ``(x + 2^(k-1)) >> k = ((x >> (k-1)) + 1) >> 1`` (nested floors), which
    needs one shifter of the value's width and an increment, no ``2^(k-1)``
    constant as wide as the largest shift. The result has ``value``'s width
    plus one bit (a signed value stays signed).
    """
    value = Value.cast(value)
    width = value.shape().width + 1
    if isinstance(shift, int):
        if shift < 0:
            raise ValueError(f"Shift must be non-negative, not {shift!r}")
        return value if shift == 0 else (value + (1 << (shift - 1))) >> shift
    shift = Value.cast(shift).as_unsigned()
    coarse = value >> (shift - 1)[:len(shift)]
    rounded = (coarse + 1) >> 1
    out = Mux(shift == 0, value, rounded)
    return out[:width].as_signed() if value.shape().signed else out[:width]


def forward_value(value: Value, frac_bits: int) -> Value:
    """:func:`delrec.arith.forward_value`: ``value >> frac_bits`` as a narrower signed value."""
    value = Value.cast(value)
    return value if frac_bits == 0 else value[frac_bits:].as_signed()


def decay(value: Value, param: Value, mode: str, frac_bits: int) -> Value:
    """:func:`delrec.arith.decay`: the leak of a signed ``value``, floor rounding.

    ``mode="multiply"``: ``(value * param) >> frac_bits`` (``param`` unsigned,
    ``0..2^frac_bits``); ``mode="shift"``: ``value - (value >> param)``.
    The result has the width of ``value`` (the leak never grows a value:
    ``|decay(x)| <= |x|`` up to floor rounding toward ``-inf``, which stays in range).
    """
    value = Value.cast(value)
    width = value.shape().width
    if mode == "multiply":
        product = value * param.as_unsigned()
        return (product >> frac_bits)[:width].as_signed()
    if mode == "shift":
        return (value - (value >> param))[:width].as_signed()
    raise ValueError(f"Leak mode must be 'multiply' or 'shift', not {mode!r}")


def sign_extend(value: Value, bits: int) -> Value:
    """``value`` reinterpreted as ``signed(bits)`` two's complement (low ``bits`` bits).

    A narrower value is first extended by its own signedness (zeros for
    unsigned, copies of the sign bit for signed).
    """
    value = Value.cast(value)
    width = value.shape().width
    if width < bits:
        fill = value[-1] if value.shape().signed else Const(0, 1)
        value = Cat(value, fill.replicate(bits - width))
    return value[:bits].as_signed()


def check_bank_bits(bank_bits) -> None:
    """Refuse a memory bank size that is not ``None`` or a positive power of two (bits)."""
    if bank_bits is None:
        return
    if isinstance(bank_bits, bool) or not isinstance(bank_bits, int) or bank_bits < 1 \
            or bank_bits & (bank_bits - 1):
        raise ValueError(f"Weight bank size must be a power of two (bits), not {bank_bits!r}")


def words_per_bank(words: int, width: int, bank_bits: int | None) -> int:
    """Words of one bank of a ``words x width`` memory split into banks of at most ``bank_bits``.

    A power of two (at least 1), so that the bank is the high part of the
    address; ``words`` itself (one bank) for ``bank_bits=None`` or when the
    memory is no larger than a bank.
    """
    if bank_bits is None or words * width <= bank_bits:
        return words
    bank = 1
    while 2 * bank * width <= bank_bits:
        bank *= 2
    return bank


def delay_line(m, value, cycles: int, name: str) -> list:
    """``value`` delayed by 1 .. ``cycles`` cycles in ``m``'s sync domain: ``cycles`` registers.

    Entry ``n`` is ``value`` of ``n + 1`` cycles before (named ``{name}_{n + 1}``);
    the last entry is the full delay.
    """
    value = Value.cast(value)
    stages = [Signal(value.shape(), name=f"{name}_{n}") for n in range(1, cycles + 1)]
    m.d.sync += [stage.eq(prev) for stage, prev in zip(stages, [value] + stages)]
    return stages


def sweep(m, start, count: int, name: str) -> tuple[Signal, Signal]:
    """A counter that visits ``0..count-1``, one a cycle, from the cycle after ``start``.

    Returns ``(active, index)``: ``active`` is high while the sweep runs
    (``count`` cycles), ``index`` the word of the cycle. The clear of a
    memory: write 0 to ``index`` while ``active``.
    """
    active = Signal(name=f"{name}_active")
    index = Signal(range(count + 1), name=f"{name}_index")
    with m.If(start):
        m.d.sync += [active.eq(1), index.eq(0)]
    with m.Elif(active):
        m.d.sync += index.eq(index + 1)
        with m.If(index == count - 1):
            m.d.sync += active.eq(0)
    return active, index
