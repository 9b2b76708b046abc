"""The host link: protocol frames on a byte stream <-> the inference core's streams.

:class:`HostLink` is the device end of the host protocol (:mod:`delrec.wire`;
the host end is :mod:`delrec.firmware.protocol`). It receives request frames
on ``rx``, executes them on an :class:`~delrec.hw.core.InferenceCore` through
the core's five streams, and sends the reply frames on ``tx``. It is the
assembly of its parts, each a component of its own module:
:mod:`~delrec.hw.frame_receiver`, :mod:`~delrec.hw.command_executor`,
:mod:`~delrec.hw.payload_reader`, :mod:`~delrec.hw.spike_collector`,
:mod:`~delrec.hw.reply_body`, :mod:`~delrec.hw.reply_framer`,
:mod:`~delrec.hw.frame_counters` and :mod:`~delrec.hw.link_buffer`.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from delrec.build import CoreBuild
from delrec.wire import encode_ping

from .command_executor import ELEMENT_BYTES, CommandExecutor  # noqa: F401  (ELEMENT_BYTES: re-exported)
from .frame_counters import FrameCounters
from .frame_receiver import COMMAND_COUNT, FrameReceiver  # noqa: F401  (COMMAND_COUNT: re-exported)
from .link_buffer import BUFFER_BYTES, COUNTER_BYTES, STATS_BASE, LinkBuffer  # noqa: F401  (re-exported)
from .payload_reader import PayloadReader
from .ports import input_layout, read_data_layout, read_layout, spike_layout, write_layout
from .reply_body import ReplyBody
from .reply_framer import ReplyFramer
from .spike_collector import SpikeCollector

__all__ = ["HostLink"]

class HostLink(wiring.Component):
    """Request frames on ``rx`` -> core streams -> reply frames on ``tx``.

    An assembly of parts that take turns, so that the link does one thing
    at a time: a :class:`~delrec.hw.frame_receiver.FrameReceiver` decodes
    and checks a request frame; a
    :class:`~delrec.hw.command_executor.CommandExecutor` runs it on the
    core and starts its reply, with a
    :class:`~delrec.hw.payload_reader.PayloadReader` fetching its payload's
    elements, a :class:`~delrec.hw.spike_collector.SpikeCollector` taking a
    step's spikes and a :class:`~delrec.hw.reply_body.ReplyBody` sending the
    reply's body; a :class:`~delrec.hw.reply_framer.ReplyFramer` frames the
    reply and :class:`~delrec.hw.frame_counters.FrameCounters` counts the
    frame. A :class:`~delrec.hw.link_buffer.LinkBuffer` (one block RAM)
    holds the payload, the spike bitmap and the counters.

    The receiver is the state machine of
    :class:`delrec.firmware.protocol.FrameDecoder`: it skips bytes until
    ``0xA5``, then takes the command, the length, ``length`` payload bytes
    (into the first 256 bytes of a 512-byte :class:`~amaranth.lib.memory.Memory`,
    one iCE40 block RAM, which also holds the spike bitmap and the frame
    counters) and the CRC. A
    frame that stays idle for ``byte_timeout`` consecutive cycles between two
    of its bytes is dropped as ``TRUNCATED``; a frame whose CRC does not match
    as ``BAD_CRC``; one with a good CRC but an unknown command or a length that
    breaks :func:`~delrec.firmware.protocol.check_request` as ``BAD_COMMAND``
    or ``BAD_LENGTH``. Each of those is counted, answered with a NAK frame
    (command ``0xFF``, payload the status byte) and never reaches the core;
    the receiver then waits for the next ``0xA5``.

    A good request is counted in ``frames_ok`` and executed:

    ``PING``
        reply ``C, N, K`` (u16), ``P, delay_bits, queue, delay_kind,
        version`` (u8): :func:`delrec.wire.encode_ping` of the build.
    ``WRITE``
        one ``write`` beat per element. An element whose target is not a
        :class:`~delrec.hw.ports.WriteTarget` or whose address does not fit
        the core's address field is dropped (an address the field holds but
        the target does not is the core's to drop).
    ``CLEAR``
        a ``write`` beat with target ``CLEAR``.
    ``EVENTS``
        one ``inputs`` beat (``last=0``) per channel; a channel that does not
        fit the core's channel field is dropped (one that fits but is ``>= C``
        is the core's to drop). The step is then open.
    ``STEP``
        the events, then the ``last=1`` beat; the ``spikes`` stream is taken
        (never stalled, so the core's ``CYCLES`` counter sees no host delay)
        into a bitmap of ``ceil(N/8)`` bytes, the reply.
    ``READ``
        per element a ``read`` request and its ``read_data`` response, sent
        as u32 (the low 32 bits); an element whose target is not a
        :class:`~delrec.hw.ports.ReadTarget` or whose address does not fit
        the core's field reads 0 without touching the core.
    ``STATS``
        ``frames_ok, frames_bad, bad_crc, truncated, bad_command,
        bad_length`` (u32, wrapping) of the frames before this request;
        ``frames_bad`` is the sum of the other four. The counters live in
        the buffer's block RAM (zeroed after reset).

    While a step is open (after a good ``EVENTS`` frame, up to the next
    ``STEP``) the core takes no writes and no reads, so a ``WRITE``,
    ``CLEAR`` or ``READ`` then is refused with a NAK of
    :attr:`~delrec.wire.Status.STEP_OPEN` (counted as a bad command)
    rather than left waiting. ``PING``, ``STATS``, ``EVENTS`` and ``STEP`` work at any time.

    Requests and replies alternate: ``rx`` is not ready from the end of a
    request until its reply has been sent. Every OK reply's header leaves
    as soon as the request is checked (its length depends only on the
    request), and payload bytes follow as they are produced; the status-only
    replies of CLEAR, WRITE and EVENTS leave when the command is done, so a
    host that sends its next request on the reply always finds the link
    listening (behind a UART, an earlier reply let the next request overrun
    the receiver while events were still being fed to the core). ``tx`` and the
    core's streams assert ``valid`` without waiting for ``ready``.

    Cycles (``tests/test_host_link.py::test_cycle_costs`` checks them), with
    ``tx`` always ready and not counting cycles the core holds a stream not
    ready (after an input event the core fans it out for ``B + 1`` cycles
    before it takes the next; a ``CLEAR`` keeps it busy a while). A request
    is taken at one byte per cycle. Counted from the clock edge that takes
    its last byte to the edge that sends the reply's last byte (*reply*) and
    to the edge that can take the next request's first byte (*next*); ``E``
    is the number of elements:

    ========================  =================================  ========================
    request                   reply                              next
    ========================  =================================  ========================
    PING                      18                                 23
    STATS                     54                                 59
    CLEAR                     9 (once the core took it)          11
    WRITE                     ``10 E + 8`` (after the last beat)  reply + 2
    EVENTS                    ``4 E + 8`` (after the last beat)   reply + 2
    READ                      ``12 E + 3`` (``9 E + 3`` when     reply + 5
                              no element reaches the core)
    STEP                      ``4 E + 3 ceil(N/8) + 4 + CYCLES``  reply + 5
                              (``CYCLES``: the core's counter)
    NAK: bad CRC              6                                  12
    NAK: bad command, length  7                                  13
    NAK: truncated            ``byte_timeout + 6`` after the     reply + 6
                              last byte
    ========================  =================================  ========================

    Per element: ``size + 1`` cycles to fetch it from the buffer (``size``
    8, 2 or 3 bytes), 1 for its beat; a READ adds the core's 3-cycle
    response and 4 reply bytes. A STEP zeroes the bitmap (``ceil(N/8)``),
    sends the ``last=1`` beat (1), takes the spikes as they come and sends
    the bitmap at 2 cycles per byte (so do STATS' counters). After every
    frame its counters are incremented in the buffer, a byte per cycle
    (5 cycles per counter, while the reply's tail leaves). Behind a UART
    every reply byte takes ``10 * clocks_per_bit`` cycles, which hides all
    of this except the core's own work.

    Parameters
    ----------
    build : CoreBuild
        The core build (:class:`~delrec.hw.core.InferenceCore`'s): it sizes
        the link's streams and is what ``PING`` reports. Its counts, lanes,
        delay bits and field widths must fit the protocol's fields, its
        spike bitmap a frame.
    byte_timeout : int
        Consecutive idle cycles inside a frame that drop it as ``TRUNCATED``.

    Attributes
    ----------
    rx : In(stream.Signature(8))
        Request bytes.
    tx : Out(stream.Signature(8))
        Reply bytes.
    inputs, spikes, write, read, read_data
        The core's streams, flipped (connect each with ``wiring.connect``
        to the core's member of the same name).
    """

    def __init__(self, build: CoreBuild, *, byte_timeout: int):
        # the parts check what they are given: the build (and what of it the protocol carries),
        # the byte timeout; built here so that those errors come at construction
        self.executor = CommandExecutor(build)
        self.receiver = FrameReceiver(byte_timeout=byte_timeout)
        self.collector = SpikeCollector(build)
        self.build = build
        self.geometry = geometry = self.executor.geometry
        self.byte_timeout = byte_timeout
        self.bitmap_bytes = self.executor.bitmap_bytes
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "inputs": Out(stream.Signature(input_layout(geometry))),
            "spikes": In(stream.Signature(spike_layout(geometry))),
            "write": Out(stream.Signature(write_layout(geometry))),
            "read": Out(stream.Signature(read_layout(geometry))),
            "read_data": In(stream.Signature(read_data_layout(geometry))),
        })

    def ping_payload(self) -> bytes:
        """What ``PING`` replies after its status byte (:func:`delrec.wire.encode_ping`)."""
        return encode_ping(self.build)

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = receiver = self.receiver
        m.submodules.executor = executor = self.executor
        m.submodules.framer = framer = ReplyFramer()
        m.submodules.counters = counters = FrameCounters()
        m.submodules.reader = reader = PayloadReader()
        m.submodules.collector = collector = self.collector
        m.submodules.body = body = ReplyBody(self.ping_payload())
        m.submodules.buffer = buffer = LinkBuffer(writers=3, readers=3)

        wiring.connect(m, wiring.flipped(self.rx), receiver.rx)
        wiring.connect(m, receiver.frame, executor.request)
        wiring.connect(m, executor.payload_start, reader.start)
        wiring.connect(m, reader.element, executor.element)
        wiring.connect(m, executor.reply, framer.header)
        for name in ("send_buffer", "send_ping", "send_value"):
            wiring.connect(m, getattr(executor, name), getattr(body, name))
        wiring.connect(m, body.body, framer.body)
        wiring.connect(m, framer.tx, wiring.flipped(self.tx))
        wiring.connect(m, executor.collect, collector.start)
        wiring.connect(m, collector.close, executor.close)
        for name in ("inputs", "write", "read", "read_data"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(executor, name))
        wiring.connect(m, wiring.flipped(self.spikes), collector.spikes)
        for port, user in zip(buffer.write, (receiver.payload, collector.buffer, counters.buffer_write)):
            wiring.connect(m, user, port)
        for port, user in zip(buffer.read, (reader.buffer, body.buffer, counters.buffer_read)):
            wiring.connect(m, user, port)

        # one thing at a time: a frame is received and checked, executed (the buffer is the
        # executor's), its counters are incremented (the buffer is theirs) while its reply leaves;
        # the receiver listens again once all of that is done
        m.d.comb += [
            counters.frame.valid.eq(receiver.frame.valid),
            counters.frame.payload.eq(receiver.frame.payload.status),
            counters.enable.eq(~executor.executing),
            executor.body_done.eq(body.done),
            executor.collect_done.eq(collector.done),
            receiver.step_open.eq(executor.step_open),
            receiver.listen.eq(counters.idle & ~executor.executing & ~executor.reply_pending
                               & framer.header.ready),
        ]
        return m
