"""The host link: protocol frames on a byte stream <-> the inference core's streams.

:class:`HostLink` is the device end of the host protocol (:mod:`delrec.wire`;
the host end is :mod:`delrec.firmware.protocol`). It receives request frames
on ``rx``, executes them on an :class:`~delrec.hw.core.InferenceCore` through
the core's five streams, and sends the reply frames on ``tx``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from delrec.build import CoreBuild
from delrec.wire import (CRC16_INIT, MAX_PAYLOAD, NAK, PING_BYTE_MAX, PING_COUNT_BITS, READ_ADDR_BITS,
                         READ_DATA_BITS, REPLY_FLAG, REQUEST_RULES, STATS_COUNTERS, SYNC, WRITE_ADDR_BITS,
                         WRITE_DATA_BITS, Command, Status, encode_ping)

from .crc import crc16_next
from .ports import (CoreGeometry, ReadTarget, WriteTarget, input_layout, read_data_layout, read_layout,
                    spike_layout, write_layout)

__all__ = ["HostLink"]

#: The buffer (one iCE40 block RAM of 512 x 8): request payloads and spike
#: bitmaps at 0..255, the frame counters from STATS_BASE on.
BUFFER_BYTES = 512
STATS_BASE = 256
#: Bytes of each frame counter (u32 little endian, in the order of STATS_COUNTERS).
COUNTER_BYTES = 4
#: Number of request codes: codes at or above it are unknown commands.
COMMAND_COUNT = len(Command)

#: Bytes of one element of each request's payload that has elements.
ELEMENT_BYTES = {code: REQUEST_RULES[code][0] for code in (Command.WRITE, Command.EVENTS, Command.STEP,
                                                           Command.READ)}


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TypeError(f"{name} must be a positive integer, not {value!r}")
    return value


def _check_protocol_limits(build: CoreBuild, geometry: CoreGeometry) -> None:
    """What the protocol can carry of a build: PING's fields, a STEP reply's bitmap, the field widths."""
    for name, value in (("Input count", build.inputs), ("Neuron count", build.neurons),
                        ("Class count", build.classes)):
        if value >= 1 << PING_COUNT_BITS:
            raise ValueError(f"{name} {value} does not fit PING's u{PING_COUNT_BITS}")
    for name, value in (("Lane count", build.lanes), ("Delay bits", build.spec.delay_bits)):
        if value > PING_BYTE_MAX:
            raise ValueError(f"{name} must fit PING's u8, not {value}")
    bitmap_bytes = -(-build.neurons // 8)
    if 1 + bitmap_bytes > MAX_PAYLOAD:
        raise ValueError(f"A STEP reply (status and a {bitmap_bytes}-byte spike bitmap) must fit a "
                         f"frame's {MAX_PAYLOAD} bytes: at most {8 * (MAX_PAYLOAD - 1)} neurons, "
                         f"not {build.neurons}")
    for what, bits, limit in (("write address", geometry.write_addr_bits, WRITE_ADDR_BITS),
                              ("write data", geometry.write_data_bits, WRITE_DATA_BITS),
                              ("read address", geometry.read_addr_bits, READ_ADDR_BITS)):
        if bits > limit:
            raise ValueError(f"The core's {what} is {bits} bits; the protocol carries {limit}")


class HostLink(wiring.Component):
    """Request frames on ``rx`` -> core streams -> reply frames on ``tx``.

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
        geometry = CoreGeometry(build)
        _check_protocol_limits(build, geometry)
        _check_positive("Byte timeout", byte_timeout)
        self.build = build
        self.geometry = geometry
        self.byte_timeout = byte_timeout
        self.bitmap_bytes = -(-build.neurons // 8)
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
        g = self.geometry
        bitmap_bytes = self.bitmap_bytes
        ping = self.ping_payload()

        # -- the buffer: request payload, spike bitmap and the frame counters ---------------------
        m.submodules.buffer = buffer = Memory(shape=8, depth=BUFFER_BYTES, init=[])
        buffer_write = buffer.write_port()
        buffer_read = buffer.read_port()
        read_enable = Signal()
        m.d.comb += buffer_read.en.eq(read_enable)

        # -- reply framer: sync, command, length, status, payload (pushed), CRC ------------------
        reply_start = Signal()
        reply_start_command = Signal(8)
        reply_start_length = Signal(8)
        reply_start_status = Signal(8)
        reply_command = Signal(8)
        reply_length = Signal(8)
        reply_status = Signal(8)
        reply_left = Signal(8)              # payload bytes after the status still to send
        reply_crc = Signal(16)
        push_valid = Signal()               # the executor's payload bytes
        push_data = Signal(8)
        push_ready = Signal()
        framer_idle = Signal()

        tx_fire = Signal()
        tx_crc_next = Signal(16)
        tx_in_crc = Signal()                # the byte offered is covered by the CRC
        m.d.comb += [tx_fire.eq(self.tx.valid & self.tx.ready),
                     tx_crc_next.eq(crc16_next(reply_crc, self.tx.payload))]
        with m.If(tx_fire & tx_in_crc):
            m.d.sync += reply_crc.eq(tx_crc_next)

        def send(byte, next_state, in_crc=True):
            m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(byte), tx_in_crc.eq(in_crc)]
            with m.If(self.tx.ready):
                m.next = next_state

        with m.FSM(name="framer"):
            with m.State("IDLE"):
                m.d.comb += framer_idle.eq(1)
                with m.If(reply_start):
                    m.d.sync += [reply_command.eq(reply_start_command),
                                 reply_length.eq(reply_start_length),
                                 reply_status.eq(reply_start_status),
                                 reply_left.eq(reply_start_length - 1),
                                 reply_crc.eq(CRC16_INIT)]
                    m.next = "SYNC"
            with m.State("SYNC"):
                send(SYNC, "COMMAND", in_crc=False)
            with m.State("COMMAND"):
                send(reply_command, "LENGTH")
            with m.State("LENGTH"):
                send(reply_length, "STATUS")
            with m.State("STATUS"):
                with m.If(reply_left != 0):
                    send(reply_status, "PAYLOAD")
                with m.Else():
                    send(reply_status, "CRC_HIGH")
            with m.State("PAYLOAD"):
                m.d.comb += [self.tx.valid.eq(push_valid), self.tx.payload.eq(push_data),
                             push_ready.eq(self.tx.ready), tx_in_crc.eq(1)]
                with m.If(tx_fire):
                    m.d.sync += reply_left.eq(reply_left - 1)
                    with m.If(reply_left == 1):
                        m.next = "CRC_HIGH"
            with m.State("CRC_HIGH"):
                send(reply_crc[8:], "CRC_LOW", in_crc=False)
            with m.State("CRC_LOW"):
                send(reply_crc[:8], "IDLE", in_crc=False)

        def start_reply(command, length, status):
            m.d.comb += [reply_start.eq(1), reply_start_command.eq(command),
                         reply_start_length.eq(length), reply_start_status.eq(status)]

        # -- receiver and executor -----------------------------------------------------------------
        command = Signal(8)
        length = Signal(8)
        received = Signal(8)                # payload bytes received so far
        frame_crc = Signal(16)
        crc_high = Signal(8)
        idle = Signal(range(self.byte_timeout))
        step_open = Signal()                # after EVENTS, until STEP: the core refuses writes and reads
        rx_fire = Signal()
        m.d.comb += rx_fire.eq(self.rx.valid & self.rx.ready)
        rx_byte = self.rx.payload
        rx_crc_next = Signal(16)
        m.d.comb += rx_crc_next.eq(crc16_next(frame_crc, rx_byte))

        element_bytes = Signal(4)           # of the command being executed
        read_pointer = Signal(9)            # buffer address of the next byte to fetch
        read_last = Signal(9)               # ... and of the last one a buffer reply sends
        fetch_left = Signal(4)              # bytes of the current element not yet fetched
        fetched = Signal()                  # buffer_read.data holds a byte fetched last cycle
        element = Signal(64)                # the element's bytes, the last fetched at the top
        push_index = Signal(range(max(len(ping), 4)))
        value = Signal(READ_DATA_BITS)
        zero_pointer = Signal(9)            # buffer address zeroed next
        bitmap_byte = Signal(8)
        bitmap_index = Signal(range(bitmap_bytes))

        # frame counters: bits of `count_mask` still to add to their counter (FINISH does it)
        count_mask = Signal(len(STATS_COUNTERS))
        count_index = Signal(range(len(STATS_COUNTERS)))      # the lowest bit of count_mask
        count_byte = Signal(range(COUNTER_BYTES + 1))
        count_carry = Signal()
        for index in reversed(range(len(STATS_COUNTERS))):
            with m.If(count_mask[index]):
                m.d.comb += count_index.eq(index)
        counter_base = Signal(9)
        m.d.comb += counter_base.eq(STATS_BASE + count_index * COUNTER_BYTES)

        def count(*names):
            m.d.sync += count_mask.eq(sum(1 << STATS_COUNTERS.index(name) for name in names))

        def reject(status, kind):
            """Count a bad frame of ``kind``, send its NAK and resynchronise afterwards."""
            count("frames_bad", kind)
            start_reply(NAK, 1, status)
            m.next = "FINISH"

        def frame_byte(on_byte):
            """One byte of a frame after its sync byte, or the byte timeout."""
            m.d.comb += self.rx.ready.eq(1)
            with m.If(rx_fire):
                m.d.sync += idle.eq(0)
                on_byte()
            with m.Elif(idle == self.byte_timeout - 1):
                reject(Status.TRUNCATED, "truncated")
            with m.Else():
                m.d.sync += idle.eq(idle + 1)

        def next_element(state_if_done="FINISH"):
            """Fetch the next element of the payload, or end the command."""
            with m.If(read_pointer == length):
                m.next = state_if_done
            with m.Else():
                m.d.sync += fetch_left.eq(element_bytes)
                m.next = "FETCH"

        def start_elements(size, state_if_none="FINISH"):
            m.d.sync += [element_bytes.eq(size), read_pointer.eq(0), fetch_left.eq(size)]
            with m.If(length == 0):
                m.next = state_if_none
            with m.Else():
                m.next = "FETCH"

        def send_from_buffer(first, last):
            """Reply with buffer bytes ``first..last``."""
            m.d.sync += [read_pointer.eq(first), read_last.eq(last)]
            m.next = "BUFFER_FETCH"

        # payload fields of the element, bytes little endian at the top of `element`
        write_target, write_addr, write_data = element[0:8], element[8:32], element[32:64]
        read_target, read_addr = element[40:48], element[48:64]
        channel = element[48:64]
        # a known target, as wide as the core's enumeration
        write_target_bits, read_target_bits = Shape.cast(WriteTarget).width, Shape.cast(ReadTarget).width

        deferred_reply = Signal()          # an OK reply to send once the command is done
        deferred_command = Signal(8)
        read_elements = Signal(8)
        m.d.comb += read_elements.eq((length * 171) >> 9)     # length // 3 for length < 512

        def dispatch(code):
            """Start the OK reply of a good request and its execution."""
            ok = code | REPLY_FLAG
            if code == Command.PING:
                start_reply(ok, 1 + len(ping), Status.OK)
                m.d.sync += push_index.eq(0)
                m.next = "PING"
            elif code == Command.STATS:
                start_reply(ok, 1 + len(STATS_COUNTERS) * COUNTER_BYTES, Status.OK)
                send_from_buffer(STATS_BASE, STATS_BASE + len(STATS_COUNTERS) * COUNTER_BYTES - 1)
            elif code == Command.CLEAR:
                m.d.sync += [deferred_reply.eq(1), deferred_command.eq(ok)]
                m.next = "CLEAR"
            elif code in (Command.WRITE, Command.EVENTS):
                # status-only replies leave when the command is done (FINISH): a host
                # that sends its next request on the reply finds the link listening
                m.d.sync += [deferred_reply.eq(1), deferred_command.eq(ok)]
                if code == Command.EVENTS:
                    m.d.sync += step_open.eq(1)
                start_elements(ELEMENT_BYTES[code])
            elif code == Command.STEP:
                start_reply(ok, 1 + bitmap_bytes, Status.OK)
                start_elements(ELEMENT_BYTES[code], state_if_none="ZERO_BITMAP")
            else:
                start_reply(ok, 1 + 4 * read_elements, Status.OK)
                start_elements(ELEMENT_BYTES[code])

        with m.FSM(name="link", init="ZERO_COUNTERS"):
            with m.State("ZERO_COUNTERS"):          # after reset: the counters start at 0
                m.d.comb += [buffer_write.en.eq(1), buffer_write.addr.eq(STATS_BASE + zero_pointer),
                             buffer_write.data.eq(0)]
                m.d.sync += zero_pointer.eq(zero_pointer + 1)
                with m.If(zero_pointer == len(STATS_COUNTERS) * COUNTER_BYTES - 1):
                    m.d.sync += zero_pointer.eq(0)
                    m.next = "SYNC"

            with m.State("SYNC"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(rx_fire & (rx_byte == SYNC)):
                    m.d.sync += [idle.eq(0), frame_crc.eq(CRC16_INIT)]
                    m.next = "COMMAND"

            with m.State("COMMAND"):
                def on_command():
                    m.d.sync += [command.eq(rx_byte), frame_crc.eq(rx_crc_next)]
                    m.next = "LENGTH"
                frame_byte(on_command)

            with m.State("LENGTH"):
                def on_length():
                    m.d.sync += [length.eq(rx_byte), received.eq(0), frame_crc.eq(rx_crc_next)]
                    m.next = "CRC_HIGH"
                    with m.If(rx_byte != 0):
                        m.next = "PAYLOAD"
                frame_byte(on_length)

            with m.State("PAYLOAD"):
                def on_payload():
                    m.d.comb += [buffer_write.en.eq(1), buffer_write.addr.eq(received),
                                 buffer_write.data.eq(rx_byte)]
                    m.d.sync += [received.eq(received + 1), frame_crc.eq(rx_crc_next)]
                    with m.If(received == length - 1):
                        m.next = "CRC_HIGH"
                frame_byte(on_payload)

            with m.State("CRC_HIGH"):
                def on_crc_high():
                    m.d.sync += crc_high.eq(rx_byte)
                    m.next = "CRC_LOW"
                frame_byte(on_crc_high)

            with m.State("CRC_LOW"):
                def on_crc_low():
                    with m.If(Cat(rx_byte, crc_high) == frame_crc):
                        m.next = "CHECK"
                    with m.Else():
                        reject(Status.BAD_CRC, "bad_crc")
                frame_byte(on_crc_low)

            with m.State("CHECK"):
                rules = {
                    Command.PING: length == 0,
                    Command.CLEAR: length == 0,
                    Command.STATS: length == 0,
                    Command.WRITE: (length[:3] == 0) & (length != 0),            # 1..31 x 8
                    Command.EVENTS: length[0] == 0,                               # 0..127 x 2
                    Command.STEP: length[0] == 0,
                    Command.READ: (length != 0) & (length <= 63 * 3) & (read_elements * 3 == length),
                }
                needs_idle_core = (command == Command.WRITE) | (command == Command.CLEAR) \
                    | (command == Command.READ)
                with m.If(command >= COMMAND_COUNT):
                    reject(Status.BAD_COMMAND, "bad_command")
                with m.Else():
                    with m.Switch(command):
                        for code, rule in rules.items():
                            with m.Case(code):
                                with m.If(~rule):
                                    reject(Status.BAD_LENGTH, "bad_length")
                                with m.Elif(needs_idle_core & step_open):
                                    reject(Status.STEP_OPEN, "bad_command")
                                with m.Else():
                                    count("frames_ok")
                                    dispatch(code)

            # -- element fetch: `element_bytes` buffer bytes, one per cycle, then use them -----
            with m.State("FETCH"):
                m.d.comb += [read_enable.eq(1), buffer_read.addr.eq(read_pointer)]
                m.d.sync += fetched.eq(fetch_left != 0)
                with m.If(fetch_left != 0):
                    m.d.sync += [read_pointer.eq(read_pointer + 1), fetch_left.eq(fetch_left - 1)]
                with m.If(fetched):
                    m.d.sync += element.eq(Cat(element[8:], buffer_read.data))
                    with m.If(fetch_left == 0):
                        with m.Switch(command):
                            with m.Case(Command.WRITE):
                                m.next = "WRITE"
                            with m.Case(Command.EVENTS, Command.STEP):
                                m.next = "EVENT"
                            with m.Case(Command.READ):
                                m.next = "READ"

            with m.State("WRITE"):
                fits = (write_target < len(WriteTarget)) & (write_addr >> g.write_addr_bits == 0)
                with m.If(fits):
                    m.d.comb += [
                        self.write.valid.eq(1),
                        self.write.payload.target.eq(WriteTarget(write_target[:write_target_bits])),
                        self.write.payload.addr.eq(write_addr),
                        self.write.payload.data.eq(write_data),
                    ]
                    with m.If(self.write.ready):
                        next_element()
                with m.Else():
                    next_element()

            with m.State("CLEAR"):
                m.d.comb += [self.write.valid.eq(1), self.write.payload.target.eq(WriteTarget.CLEAR)]
                with m.If(self.write.ready):
                    m.next = "FINISH"

            with m.State("EVENT"):
                channel_fits = channel >> g.channel_bits == 0
                with m.If(channel_fits):
                    m.d.comb += [self.inputs.valid.eq(1), self.inputs.payload.channel.eq(channel),
                                 self.inputs.payload.last.eq(0)]
                with m.If(~channel_fits | self.inputs.ready):
                    with m.If(command == Command.STEP):
                        next_element("ZERO_BITMAP")
                    with m.Else():
                        next_element()

            # -- STEP: clear the bitmap, close the step, collect its spikes, send the bitmap -----
            with m.State("ZERO_BITMAP"):
                m.d.comb += [buffer_write.en.eq(1), buffer_write.addr.eq(zero_pointer),
                             buffer_write.data.eq(0)]
                m.d.sync += zero_pointer.eq(zero_pointer + 1)
                with m.If(zero_pointer == bitmap_bytes - 1):
                    m.d.sync += zero_pointer.eq(0)
                    m.next = "CLOSE_STEP"

            with m.State("CLOSE_STEP"):
                m.d.comb += [self.inputs.valid.eq(1), self.inputs.payload.last.eq(1)]
                with m.If(self.inputs.ready):
                    m.d.sync += [step_open.eq(0), bitmap_byte.eq(0), bitmap_index.eq(0)]
                    m.next = "COLLECT"

            with m.State("COLLECT"):
                spike = self.spikes.payload
                spike_byte = spike.neuron >> 3
                spike_bit = (Const(1, 8) << spike.neuron[:3])[:8]
                m.d.comb += self.spikes.ready.eq(1)
                with m.If(self.spikes.valid):
                    with m.If(spike.last):
                        m.d.comb += [buffer_write.en.eq(1), buffer_write.addr.eq(bitmap_index),
                                     buffer_write.data.eq(bitmap_byte)]
                        send_from_buffer(0, bitmap_bytes - 1)
                    with m.Elif(spike_byte == bitmap_index):
                        m.d.sync += bitmap_byte.eq(bitmap_byte | spike_bit)
                    with m.Else():                       # spikes arrive in increasing order
                        m.d.comb += [buffer_write.en.eq(1), buffer_write.addr.eq(bitmap_index),
                                     buffer_write.data.eq(bitmap_byte)]
                        m.d.sync += [bitmap_byte.eq(spike_bit), bitmap_index.eq(spike_byte)]

            # -- replies from the buffer (bitmap, counters): 2 cycles per byte -------------------
            with m.State("BUFFER_FETCH"):
                m.d.comb += [read_enable.eq(1), buffer_read.addr.eq(read_pointer)]
                m.next = "BUFFER_PUSH"

            with m.State("BUFFER_PUSH"):
                m.d.comb += [push_valid.eq(1), push_data.eq(buffer_read.data)]
                with m.If(push_ready):
                    m.d.sync += read_pointer.eq(read_pointer + 1)
                    m.next = "BUFFER_FETCH"
                    with m.If(read_pointer == read_last):
                        m.next = "FINISH"

            # -- READ: request, response, four reply bytes per element ---------------------------
            with m.State("READ"):
                fits = (read_target < len(ReadTarget)) & (read_addr >> g.read_addr_bits == 0)
                m.d.sync += push_index.eq(0)
                with m.If(fits):
                    m.d.comb += [
                        self.read.valid.eq(1),
                        self.read.payload.target.eq(ReadTarget(read_target[:read_target_bits])),
                        self.read.payload.addr.eq(read_addr),
                    ]
                    with m.If(self.read.ready):
                        m.next = "READ_RESPONSE"
                with m.Else():
                    m.d.sync += value.eq(0)
                    m.next = "READ_REPLY"

            with m.State("READ_RESPONSE"):
                m.d.comb += self.read_data.ready.eq(1)
                with m.If(self.read_data.valid):
                    m.d.sync += value.eq(self.read_data.payload.data[:READ_DATA_BITS])
                    m.next = "READ_REPLY"

            with m.State("READ_REPLY"):
                m.d.comb += [push_valid.eq(1), push_data.eq(value.word_select(push_index[:2], 8))]
                with m.If(push_ready):
                    m.d.sync += push_index.eq(push_index + 1)
                    with m.If(push_index == 3):
                        next_element()

            with m.State("PING"):
                m.d.comb += [push_valid.eq(1),
                             push_data.eq(Const(int.from_bytes(ping, "little"), 8 * len(ping))
                                          .word_select(push_index, 8))]
                with m.If(push_ready):
                    m.d.sync += push_index.eq(push_index + 1)
                    with m.If(push_index == len(ping) - 1):
                        m.next = "FINISH"

            # -- the frame's counters, one byte per cycle (ripple carry); the reply leaves ------
            with m.State("FINISH"):
                with m.If(deferred_reply & framer_idle):
                    start_reply(deferred_command, 1, Status.OK)
                    m.d.sync += deferred_reply.eq(0)
                with m.If(count_mask != 0):
                    with m.If(count_byte != COUNTER_BYTES):
                        m.d.comb += [read_enable.eq(1), buffer_read.addr.eq(counter_base + count_byte)]
                    with m.If(count_byte == 0):
                        m.d.sync += count_carry.eq(1)
                    with m.Else():
                        m.d.comb += [buffer_write.en.eq(1),
                                     buffer_write.addr.eq(counter_base + count_byte - 1),
                                     buffer_write.data.eq(buffer_read.data + count_carry)]
                        m.d.sync += count_carry.eq(count_carry & (buffer_read.data == 0xFF))
                    m.d.sync += count_byte.eq(count_byte + 1)
                    with m.If(count_byte == COUNTER_BYTES):
                        done = Const(1, len(STATS_COUNTERS)) << count_index
                        m.d.sync += [count_byte.eq(0), count_mask.eq(count_mask & ~done)]
                with m.Elif(framer_idle & ~deferred_reply):
                    m.next = "SYNC"
        return m
