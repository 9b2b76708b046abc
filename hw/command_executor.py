"""The host link's executor: decoded requests -> the inference core's streams -> replies."""

from __future__ import annotations

from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from delrec.build import CoreBuild
from delrec.wire import (MAX_PAYLOAD, NAK, PING_BYTE_MAX, PING_COUNT_BITS, READ_ADDR_BITS, READ_DATA_BITS,
                         REPLY_FLAG, REQUEST_RULES, STATS_COUNTERS, WRITE_ADDR_BITS, WRITE_DATA_BITS, Command,
                         Status, encode_ping)

from .frame_receiver import DECODED_FRAME, element_count
from .link_buffer import COUNTER_BYTES, STATS_BASE
from .payload_reader import PAYLOAD_ELEMENT, PAYLOAD_START
from .ports import CoreGeometry, ReadTarget, WriteTarget, input_layout, read_data_layout, read_layout, write_layout
from .reply_body import BUFFER_RANGE
from .reply_framer import REPLY_HEADER

__all__ = ["ELEMENT_BYTES", "check_protocol_limits", "CommandExecutor"]

#: Bytes of one element of each request's payload that has elements.
ELEMENT_BYTES = {code: REQUEST_RULES[code][0] for code in (Command.WRITE, Command.EVENTS, Command.STEP,
                                                           Command.READ)}


def check_protocol_limits(build: CoreBuild) -> CoreGeometry:
    """The geometry of ``build`` if the protocol can carry it, else a ``ValueError`` saying why.

    PING's fields hold its counts, lanes and delay bits; a STEP reply's
    bitmap fits a frame; the requests' fields hold the core's.
    """
    geometry = CoreGeometry(build)
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
    return geometry


class CommandExecutor(wiring.Component):
    """Runs decoded requests on an :class:`~delrec.hw.core.InferenceCore` and starts their replies.

    A frame on ``request`` is taken in the cycle it is valid (the executor
    is idle whenever the receiver decodes one). A refused frame (status not
    ``OK``) starts its NAK reply (command ``0xFF``, the status byte) at
    once. A good request starts its OK reply at once if the reply's length
    depends only on the request (PING, STATS, STEP, READ), or once the
    command is done (CLEAR, WRITE, EVENTS: status only; ``reply_pending``
    until it has started), and is executed on the core's streams as
    :class:`~delrec.hw.host_link.HostLink` describes. The executor
    sequences the link's other parts, each started on a stream of its own
    and waited for: a :class:`~delrec.hw.payload_reader.PayloadReader`
    (``payload_start``) fetches the payload's elements onto ``element``, a
    beat to the core for each; a
    :class:`~delrec.hw.spike_collector.SpikeCollector` (``collect``) closes
    a STEP's step (the ``last=1`` beat it asks for on ``close`` goes out on
    ``inputs``) and gathers its spikes into the bitmap; a
    :class:`~delrec.hw.reply_body.ReplyBody` (``send_buffer``,
    ``send_ping``, ``send_value``) sends a reply's body. ``reply`` is
    asserted without waiting for ``ready``, but only when the framer is
    idle.

    Timing: every start is asserted in the cycle the command reaches it,
    and the executor goes on in the cycle a part is done, so a part's
    cycles are the command's. An element's beat is offered in the cycle the
    element arrives, and the next element is asked for in the cycle the
    beat is taken (a READ's: the cycle its u32 is sent). ``executing``
    falls on the edge after the command's last beat or reply byte; a
    pending reply starts in the first cycle after that in which the framer
    is idle.

    Parameters
    ----------
    build : CoreBuild
        The core's build: it sizes the core's streams and is what PING
        reports (:func:`check_protocol_limits` must pass).

    Attributes
    ----------
    request : In(stream.Signature(DECODED_FRAME, always_ready=True))
        Decoded frames.
    reply : Out(stream.Signature(REPLY_HEADER))
        Starts a reply (to the framer; ``ready``: the framer is idle).
    send_buffer, send_ping, send_value : Out(stream.Signature(..., always_ready=True))
        Start a reply's body (:class:`~delrec.hw.reply_body.ReplyBody`'s members).
    body_done : In(1)
        The body's last byte is sent.
    payload_start : Out(stream.Signature(PAYLOAD_START, always_ready=True))
        Starts the payload reader on the request's payload.
    element : In(stream.Signature(PAYLOAD_ELEMENT))
        The payload's elements, from the payload reader.
    collect : Out(stream.Signature(0, always_ready=True))
        Starts the spike collector.
    close : In(stream.Signature(0))
        The collector asks for the step's closing beat.
    collect_done : In(1)
        The collector has the step's bitmap.
    step_open : Out(1)
        After a good EVENTS, until the next good STEP.
    executing : Out(1)
        A command is under way (the buffer is its parts').
    reply_pending : Out(1)
        A status-only reply waits for the framer.
    inputs, write, read, read_data
        The core's streams (but ``spikes``, the collector's), flipped.
    """

    def __init__(self, build: CoreBuild):
        geometry = check_protocol_limits(build)
        self.build = build
        self.geometry = geometry
        self.bitmap_bytes = -(-build.neurons // 8)
        self.ping = encode_ping(build)
        super().__init__({
            "request": In(stream.Signature(DECODED_FRAME, always_ready=True)),
            "reply": Out(stream.Signature(REPLY_HEADER)),
            "send_buffer": Out(stream.Signature(BUFFER_RANGE, always_ready=True)),
            "send_ping": Out(stream.Signature(0, always_ready=True)),
            "send_value": Out(stream.Signature(READ_DATA_BITS, always_ready=True)),
            "body_done": In(1),
            "payload_start": Out(stream.Signature(PAYLOAD_START, always_ready=True)),
            "element": In(stream.Signature(PAYLOAD_ELEMENT)),
            "collect": Out(stream.Signature(0, always_ready=True)),
            "close": In(stream.Signature(0)),
            "collect_done": In(1),
            "step_open": Out(1),
            "executing": Out(1),
            "reply_pending": Out(1),
            "inputs": Out(stream.Signature(input_layout(geometry))),
            "write": Out(stream.Signature(write_layout(geometry))),
            "read": Out(stream.Signature(read_layout(geometry))),
            "read_data": In(stream.Signature(read_data_layout(geometry))),
        })

    def elaborate(self, platform):
        m = Module()
        g = self.geometry
        request = self.request.payload
        element = self.element
        stepping = Signal()                 # the events are a STEP's (else an EVENTS')
        deferred_command = Signal(8)        # of the status-only reply to send once the command is done

        # payload fields of the element, bytes little endian at the top of its data
        data = element.payload.data
        write_target, write_addr, write_data = data[0:8], data[8:32], data[32:64]
        read_target, read_addr = data[40:48], data[48:64]
        channel = data[48:64]
        # a known target, as wide as the core's enumeration
        write_target_bits, read_target_bits = Shape.cast(WriteTarget).width, Shape.cast(ReadTarget).width

        def start_reply(reply_command, reply_length, status=Status.OK):
            m.d.comb += [self.reply.valid.eq(1), self.reply.payload.command.eq(reply_command),
                         self.reply.payload.length.eq(reply_length), self.reply.payload.status.eq(status)]

        def collect_spikes():
            """Close the step, collect its spikes, reply with their bitmap."""
            m.d.comb += self.collect.valid.eq(1)
            m.next = "SPIKES"

        def end_command():
            m.next = "IDLE"

        def start_elements(code, state, on_none=end_command):
            """Go to ``state`` to use the payload's elements (``on_none()`` without any)."""
            with m.If(request.length == 0):
                on_none()
            with m.Else():
                start = self.payload_start
                m.d.comb += [start.valid.eq(1), start.payload.length.eq(request.length),
                             start.payload.size.eq(ELEMENT_BYTES[code])]
                m.next = state

        def next_element(on_last=end_command):
            """Done with this element: on to the next one, or ``on_last()``."""
            m.d.comb += element.ready.eq(1)
            with m.If(element.payload.last):
                on_last()

        def send_from_buffer(first, last):
            """Reply with buffer bytes ``first..last``, then end the command."""
            m.d.comb += [self.send_buffer.valid.eq(1), self.send_buffer.payload.first.eq(first),
                         self.send_buffer.payload.last.eq(last)]
            m.next = "REPLY"

        def send_value(value):
            """Reply with a READ's ``value`` (u32), then go on with the next element."""
            m.d.comb += [self.send_value.valid.eq(1), self.send_value.payload.eq(value)]
            m.next = "READ_REPLY"

        def dispatch(code):
            """Start the OK reply of a good request and its execution."""
            ok = code | REPLY_FLAG
            if code == Command.PING:
                start_reply(ok, 1 + len(self.ping))
                m.d.comb += self.send_ping.valid.eq(1)
                m.next = "REPLY"
            elif code == Command.STATS:
                start_reply(ok, 1 + len(STATS_COUNTERS) * COUNTER_BYTES)
                send_from_buffer(STATS_BASE, STATS_BASE + len(STATS_COUNTERS) * COUNTER_BYTES - 1)
            elif code == Command.STEP:
                start_reply(ok, 1 + self.bitmap_bytes)
                m.d.sync += [stepping.eq(1), self.step_open.eq(0)]     # nothing reads it while the STEP runs
                start_elements(code, "EVENT", on_none=collect_spikes)
            elif code == Command.READ:
                start_reply(ok, 1 + 4 * element_count(request.length, ELEMENT_BYTES[code]))
                start_elements(code, "READ")
            else:
                # status-only replies leave when the command is done: a host that sends its
                # next request on the reply finds the link listening
                m.d.sync += [self.reply_pending.eq(1), deferred_command.eq(ok)]
                if code == Command.CLEAR:
                    m.next = "CLEAR"
                elif code == Command.WRITE:
                    start_elements(code, "WRITE")
                else:
                    m.d.sync += [stepping.eq(0), self.step_open.eq(1)]
                    start_elements(code, "EVENT")

        with m.FSM(name="executor") as executor:
            # -- between commands: take the next frame, send a pending status-only reply ----------
            with m.State("IDLE"):
                with m.If(self.reply_pending):
                    start_reply(deferred_command, 1)
                    with m.If(self.reply.ready):
                        m.d.sync += self.reply_pending.eq(0)
                with m.If(self.request.valid):
                    with m.If(request.status != Status.OK):
                        start_reply(NAK, 1, request.status)
                    with m.Else():
                        with m.Switch(request.command):
                            for code in Command:
                                with m.Case(code):
                                    dispatch(code)

            # -- a beat to the core per element (the payload reader fetches them) --------------
            with m.State("WRITE"):
                fits = (write_target < len(WriteTarget)) & (write_addr >> g.write_addr_bits == 0)
                with m.If(element.valid & fits):
                    m.d.comb += [
                        self.write.valid.eq(1),
                        self.write.payload.target.eq(WriteTarget(write_target[:write_target_bits])),
                        self.write.payload.addr.eq(write_addr),
                        self.write.payload.data.eq(write_data),
                    ]
                with m.If(element.valid & (~fits | self.write.ready)):
                    next_element()

            with m.State("CLEAR"):
                m.d.comb += [self.write.valid.eq(1), self.write.payload.target.eq(WriteTarget.CLEAR)]
                with m.If(self.write.ready):
                    m.next = "IDLE"

            with m.State("EVENT"):
                channel_fits = channel >> g.channel_bits == 0
                with m.If(element.valid & channel_fits):
                    m.d.comb += [self.inputs.valid.eq(1), self.inputs.payload.channel.eq(channel),
                                 self.inputs.payload.last.eq(0)]
                with m.If(element.valid & (~channel_fits | self.inputs.ready)):
                    with m.If(stepping):
                        next_element(collect_spikes)
                    with m.Else():
                        next_element()

            with m.State("READ"):
                fits = (read_target < len(ReadTarget)) & (read_addr >> g.read_addr_bits == 0)
                with m.If(element.valid & fits):
                    m.d.comb += [
                        self.read.valid.eq(1),
                        self.read.payload.target.eq(ReadTarget(read_target[:read_target_bits])),
                        self.read.payload.addr.eq(read_addr),
                    ]
                    with m.If(self.read.ready):
                        m.next = "READ_RESPONSE"
                with m.Elif(element.valid):
                    send_value(0)

            with m.State("READ_RESPONSE"):
                m.d.comb += self.read_data.ready.eq(1)
                with m.If(self.read_data.valid):
                    send_value(self.read_data.payload.data[:READ_DATA_BITS])

            with m.State("READ_REPLY"):
                with m.If(self.body_done):
                    m.next = "READ"
                    next_element()

            # -- STEP: the collector closes the step (its beat goes out here), sends the bitmap ----
            with m.State("SPIKES"):
                m.d.comb += [self.inputs.valid.eq(self.close.valid), self.inputs.payload.last.eq(1),
                             self.close.ready.eq(self.inputs.ready)]
                with m.If(self.collect_done):
                    send_from_buffer(0, self.bitmap_bytes - 1)

            # -- a reply body that ends the command (PING's, the counters, the bitmap) ---------
            with m.State("REPLY"):
                with m.If(self.body_done):
                    m.next = "IDLE"

        m.d.comb += self.executing.eq(~executor.ongoing("IDLE"))
        return m
