"""A pin-frugal top level for placing the inference core on a small FPGA.

:class:`SynthesisTop` puts an :class:`~delrec.hw.core.InferenceCore` (or the
:class:`~delrec.hw.online_core.OnlineCore`) behind a
serial host link of seven pins (plus ``clk`` and ``rst``), so that the core
can be synthesised, placed and routed on a package with few IOs (the iCE40
UP5K in its SG48 package) while every one of its streams stays in use: the
host can load every parameter memory, stream input events, read membranes,
readout values, scores and counters, and receive every spike. Nothing is
tied off, so the synthesis tools can only remove what the core itself does
not need; the costs they report are the core's plus this link's (about
``2 * command_bits + response_bits`` flip-flops, 123 for the SHD size, and
a few dozen LUTs).

The link (input pins registered once and output pins driven straight from
flip-flops, so that pad delays never enter the core's timing; a change on an
input pin takes effect two clock edges later):

``sdi``, ``shift``
    While ``shift`` is high, ``sdi`` enters the command register at its
    top and every bit moves one place down: after :attr:`command_bits`
    shifts, the first bit sent is bit 0 (least significant bit first). The
    same strobe shifts the response register one place down (see ``sdo``).
    Shifting a command in therefore scrambles a response not yet read: read
    (and ``TAKE``) every response before shifting in the next command.
``commit``
    Issue the command register as one beat: the beat is held (and
    ``command_pending`` is high) until the core accepts it. A commit while a
    beat is pending is ignored.
``sdo``, ``response_valid``
    Bit 0 of the response register. A beat of the core's ``read_data`` or
    ``spikes`` stream (``read_data`` first) is loaded into the register
    when it is free; ``response_valid`` stays high until the host commits
    :attr:`Opcode.TAKE`. The host reads ``sdo``, pulses ``shift``, and so on
    for :attr:`response_bits` bits.
``command_pending``, ``busy``
    A committed beat waits for the core; the core's ``busy`` (one cycle late).

Command word (:attr:`command_bits` bits): bits ``[0:opcode_bits]`` the
:class:`Opcode` (2 bits; 3 for a core with a ``signal`` stream, such as the
online-learning core), then the raw bits of the stream's payload
(:func:`~delrec.hw.ports.input_layout`, :func:`~delrec.hw.ports.write_layout`,
:func:`~delrec.hw.ports.read_layout`, or the online core's layouts), zero-padded. Response word
(:attr:`response_bits` bits): bit 0 is 1 for a ``read_data`` beat (then the
payload's ``data``) and 0 for a ``spikes`` beat (then ``neuron``, ``last``).
:func:`encode_command` and :func:`decode_response` build and read these words.

A real host link would add clock-domain crossing for its strobes; here
the host is assumed to be synchronous to ``clk`` (a strobe held high for
``n`` cycles acts ``n`` times).
"""

from __future__ import annotations

import enum

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SynthesisTop", "Opcode", "encode_command", "decode_response", "pack_payload"]

OPCODE_BITS = 2


class Opcode(enum.IntEnum):
    """What a committed command does."""

    INPUT = 0   #: one beat of the ``inputs`` stream
    WRITE = 1   #: one beat of the ``write`` stream
    READ = 2    #: one beat of the ``read`` request stream
    TAKE = 3    #: free the response register for the next beat
    SIGNAL = 4  #: one beat of the ``signal`` stream (a core with one; the opcode is then 3 bits)


def pack_payload(layout: data.StructLayout, **fields: int) -> int:
    """The raw bits of one payload of ``layout`` as an integer (missing fields are 0).

    Raises
    ------
    ValueError
        For a field the layout does not have, or a value that does not fit it.
    """
    members = {name: field for name, field in layout}
    value = 0
    for name, field_value in fields.items():
        if name not in members:
            raise ValueError(f"Payload has no field {name!r}; it has {sorted(members)}")
        field = members[name]
        raw = int(field_value)
        if not 0 <= raw < (1 << field.width):
            raise ValueError(f"Field {name!r} holds {field.width} bits; {raw!r} does not fit")
        value |= raw << field.offset
    return value


def encode_command(opcode: Opcode, payload: int = 0, opcode_bits: int = OPCODE_BITS) -> int:
    """The command word of ``opcode`` with a payload's raw bits (see :func:`pack_payload`).

    ``opcode_bits`` is the top's :attr:`SynthesisTop.opcode_bits` (3 for a
    core with a ``signal`` stream).
    """
    return int(Opcode(opcode)) | (int(payload) << opcode_bits)


def decode_response(word: int, top: "SynthesisTop") -> dict:
    """Read a response word of ``top``: ``{"kind": "read_data", "data": ...}`` or a spike.

    Returns
    -------
    dict
        ``kind`` (``"read_data"`` or ``"spike"``) and the payload's fields.
    """
    body = word >> 1
    if word & 1:
        layout = _payload_layout(top.core, "read_data")
        kind = "read_data"
    else:
        layout = _payload_layout(top.core, "spikes")
        kind = "spike"
    out = {"kind": kind}
    for name, field in layout:
        out[name] = (body >> field.offset) & ((1 << field.width) - 1)
    return out


def _payload_layout(core, name: str) -> data.StructLayout:
    """The payload layout of the stream port ``name`` of ``core`` (from its signature)."""
    return core.signature.members[name].signature.members["payload"].shape


class SynthesisTop(wiring.Component):
    """A core behind a seven-pin serial host link.

    See the module documentation for the protocol.

    Parameters
    ----------
    core : wiring.Component
        A core with the streams ``inputs``, ``write``, ``read`` (and
        optionally ``signal``) in and ``spikes``, ``read_data`` out, and a
        ``busy`` output: ``InferenceCore(build)`` of a
        :class:`~delrec.build.CoreBuild` (:class:`~delrec.hw.core.InferenceCore`),
        or the :class:`~delrec.hw.online_core.OnlineCore`.

    Attributes
    ----------
    core : wiring.Component
    opcode_bits : int
        2, or 3 for a core with a ``signal`` stream (:attr:`Opcode.SIGNAL`).
    command_bits : int
        Width of the command register.
    response_bits : int
        Width of the response register.
    sdi, shift, commit : In(1)
    sdo, response_valid, command_pending, busy : Out(1)
    """

    def __init__(self, core: wiring.Component):
        if not isinstance(core, wiring.Component):
            raise TypeError(f"Core must be a wiring.Component (InferenceCore(build), say), not {core!r}")
        self.core = core
        names = {Opcode.INPUT: "inputs", Opcode.WRITE: "write", Opcode.READ: "read"}
        if "signal" in self.core.signature.members:
            names[Opcode.SIGNAL] = "signal"
        self._stream_names = names
        self.opcode_bits = OPCODE_BITS if len(names) == 3 else OPCODE_BITS + 1
        self._payload_layouts = {code: _payload_layout(self.core, name) for code, name in names.items()}
        self.command_bits = self.opcode_bits + max(layout.size for layout in self._payload_layouts.values())
        self.response_bits = 1 + max(_payload_layout(self.core, "spikes").size,
                                     _payload_layout(self.core, "read_data").size)
        super().__init__({
            "sdi": In(1),
            "shift": In(1),
            "commit": In(1),
            "sdo": Out(1),
            "response_valid": Out(1),
            "command_pending": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core

        # pins registered once
        sdi, shift, commit = Signal(), Signal(), Signal()
        m.d.sync += [sdi.eq(self.sdi), shift.eq(self.shift), commit.eq(self.commit)]

        # -- commands: shift register -> one pending beat on one stream ----------------------
        shifter = Signal(self.command_bits)
        command = Signal(self.command_bits)
        pending = Signal()
        with m.If(shift):
            m.d.sync += shifter.eq(Cat(shifter[1:], sdi))
        opcode = command[:self.opcode_bits]
        body = command[self.opcode_bits:]
        streams = {code: getattr(core, name) for code, name in self._stream_names.items()}
        accepted = Signal()
        for code, stream in streams.items():
            m.d.comb += [
                stream.valid.eq(pending & (opcode == code)),
                stream.payload.eq(body[:self._payload_layouts[code].size]),
            ]
            with m.If(stream.valid & stream.ready):
                m.d.comb += accepted.eq(1)
        take = Signal()
        with m.If(accepted):
            m.d.sync += pending.eq(0)
        with m.If(commit & ~pending):
            with m.If(shifter[:self.opcode_bits] == Opcode.TAKE):
                m.d.comb += take.eq(1)
            with m.Else():
                m.d.sync += [command.eq(shifter), pending.eq(1)]

        # -- responses: read data or spikes -> the response shift register ---------------------
        response = Signal(self.response_bits)
        full = Signal()
        m.d.comb += [
            core.read_data.ready.eq(~full),
            core.spikes.ready.eq(~full & ~core.read_data.valid),
        ]
        with m.If(core.read_data.valid & ~full):
            m.d.sync += [response.eq(Cat(1, core.read_data.payload.as_value())), full.eq(1)]
        with m.Elif(core.spikes.valid & ~full):
            m.d.sync += [response.eq(Cat(0, core.spikes.payload.as_value())), full.eq(1)]
        with m.Elif(shift):
            m.d.sync += response.eq(response >> 1)
        with m.If(take):
            m.d.sync += full.eq(0)

        busy = Signal()
        m.d.sync += busy.eq(core.busy)
        m.d.comb += [  # every output pin straight from a flip-flop
            self.sdo.eq(response[0]),
            self.response_valid.eq(full),
            self.command_pending.eq(pending),
            self.busy.eq(busy),
        ]
        return m
