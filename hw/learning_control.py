"""The learning unit's sequence within a step of the core, and its answers to the trace unit.

Functions that add the learning passes to :class:`~delrec.hw.core.InferenceCore`'s
control FSM (they are called inside it, with the core's parts and registers):
the trace pass, and from ``LOSS_START`` on the readout's errors and broadcast,
the readout weights of every neuron that fired, and one weight column per
learning delay streamed through :class:`~delrec.hw.delay_update.DelayUpdate`.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal

from .fixed import delay_line
from .ports import PROBE_LATENCY

__all__ = ["learning_states", "answer_trace_requests", "trace_answers"]


def learning_states(core, m: Module, p, r, delay_pass, slot_free, spike_valid, spike_last) -> None:
    """The learning passes of a step: traces; from ``LOSS_START`` on errors, broadcast, readout and delays.

    The trace unit's requests are answered here: its delays from the
    delay memories, its samples from the input history or the spike
    history (both registered to the unit's two-cycle latency).
    """
    b = core.build
    C, B = b.inputs, b.rows
    with m.State("LEARN_TRACES"):
        answer_trace_requests(core, m, p)
        with m.If(~p.traces.busy):
            with m.If(r.steps >= r.loss_start):
                m.d.comb += p.readout.errors.eq(1)
                m.next = "LEARN_ERRORS"
            with m.Else():
                m.next = "LEARN_DONE"
    with m.State("LEARN_ERRORS"):
        with m.If(p.readout.ready):
            m.d.comb += p.readout.broadcast.eq(1)
            m.next = "LEARN_BROADCAST"
    with m.State("LEARN_BROADCAST"):            # L_i into the neurons' signal memories
        with m.If(p.readout.ready):
            m.d.comb += p.scan.start.eq(1)
            m.next = "LEARN_READOUT"
    with m.State("LEARN_READOUT"):              # the readout weights of every neuron that fired
        with m.If(p.scan.pending):
            with m.If(p.readout.ready):
                m.d.comb += [p.readout.learn.eq(1), p.scan.pick.eq(1)]
        with m.Elif(p.scan.done & p.readout.ready):
            with m.If(r.learn[3]):
                m.d.comb += p.readout.learn_bias.eq(1)
            m.next = "LEARN_COLUMN"
    # one weight column per learning delay: S_p, then d_p. A column's finish (its delay's
    # update, serial in the delay unit) runs while the next column streams; the delay is
    # written whenever its result comes.
    channel = Signal(range(b.channels + 1))
    first = Signal(range(b.channels + 1))
    first_enabled = Mux(r.learn[1] & (b.input_delays is not None), 0, C)
    last_enabled = Mux(r.learn[2], b.channels, C)
    recurrent = channel >= C
    index = Mux(recurrent, channel - C, channel)
    m.d.comb += first.eq(first_enabled)
    pending, pending_input = Signal(), Signal()       # a column's finish is running
    pending_index = Signal.like(index)

    def write_result():   # in every column state: the finished column's delay, whenever it comes
        m.d.comb += delay_pass.eq(1)
        with m.If(p.update.result_valid & pending):
            m.d.comb += [p.delays.write_en.eq(1), p.delays.write_input.eq(pending_input),
                         p.delays.write_addr.eq(pending_index), p.delays.write_data.eq(p.update.result_delay)]
            m.d.sync += pending.eq(0)
    with m.State("LEARN_COLUMN"):
        with m.If(p.readout.ready & ~p.readout.busy):
            m.d.sync += channel.eq(first)
            m.next = "LEARN_COLUMN_START"
    with m.State("LEARN_COLUMN_START"):
        write_result()
        with m.If(channel >= last_enabled):
            m.next = "LEARN_COLUMN_DRAIN"
        with m.Else():
            m.d.comb += [p.update.clear.eq(1), p.fan.start.eq(1), p.fan.start_base.eq(index * B),
                         p.fan.start_recurrent.eq(recurrent)]
            m.next = "LEARN_COLUMN_ROWS"
    wait = Signal(range(p.update.ROW_LATENCY + 2))
    with m.State("LEARN_COLUMN_ROWS"):
        write_result()          # the column streams into the back-projection
        m.d.comb += delay_pass.eq(1)
        with m.If(p.fan.done):
            m.d.sync += wait.eq(p.update.ROW_LATENCY)
            m.next = "LEARN_COLUMN_READ"
    with m.State("LEARN_COLUMN_READ"):
        write_result()          # S_p complete: read eps_p and d_p
        m.d.comb += delay_pass.eq(1)
        with m.If(wait != 0):
            m.d.sync += wait.eq(wait - 1)
        with m.Elif(~pending | p.update.result_valid):   # the last column's finish is done
            m.d.comb += [p.traces.read_en.eq(1), p.traces.read_addr.eq(channel),
                         p.delays.read_en.eq(1), p.delays.read_input.eq(~recurrent),
                         p.delays.read_addr.eq(index)]
            m.next = "LEARN_COLUMN_FINISH"
    with m.State("LEARN_COLUMN_FINISH"):
        m.d.comb += [delay_pass.eq(1), p.update.finish_en.eq(1), p.update.trace.eq(p.traces.read_data),
                     p.update.delay.eq(p.delays.read_data)]
        m.d.sync += [pending.eq(1), pending_index.eq(index), pending_input.eq(~recurrent),
                     channel.eq(channel + 1)]
        m.next = "LEARN_COLUMN_START"
    with m.State("LEARN_COLUMN_DRAIN"):
        write_result()
        with m.If(~pending | p.update.result_valid):
            m.next = "LEARN_DONE"
    with m.State("LEARN_DONE"):
        with m.If(slot_free):
            m.d.sync += [spike_valid.eq(1), spike_last.eq(1)]
            m.next = "FINISH"

def answer_trace_requests(core, m: Module, p) -> None:
    """The trace unit's delay and sample requests, answered two cycles later.

    A delay from the delay memories (registered once more); a sample of
    an input channel from the input history (registered once more), of a
    neuron from the spike history's probe (its age given the next cycle,
    :func:`trace_answers`' age, its bit the cycle after).
    """
    b = core.build
    C, lane_bits = b.inputs, core.geometry.lane_bits
    t = p.traces
    delay_input = t.delay_channel < C
    m.d.comb += [p.delays.read_en.eq(t.delay_en), p.delays.read_input.eq(delay_input),
                 p.delays.read_addr.eq(Mux(delay_input, t.delay_channel, t.delay_channel - C))]
    sample_input = t.sample_channel < C
    neuron = Signal(range(b.neurons))
    m.d.comb += neuron.eq(t.sample_channel - C)
    if p.inputs is not None:
        m.d.comb += [p.inputs.read_en.eq(t.sample_en & sample_input),
                     p.inputs.read_channel.eq(t.sample_channel), p.inputs.read_age.eq(t.sample_age)]
    with m.If(t.sample_en & ~sample_input):
        m.d.comb += [p.queue.probe_en.eq(1), p.queue.probe_row.eq(neuron[lane_bits:])]

def trace_answers(core, m: Module, p):
    """Registers that bring the trace unit's answers to its latencies (always running).

    A delay comes from the delay memories and is registered once more (2
    cycles); a sample takes the spike history's probe latency ``L``
    (:data:`~delrec.hw.ports.PROBE_LATENCY`): a neuron's bit from the probe,
    an input count from the input history delayed to match. Returns the age
    of the sample asked on the previous cycle: the probe takes it one cycle
    after the row.
    """
    b = core.build
    C, lane_bits = b.inputs, core.geometry.lane_bits
    latency = PROBE_LATENCY["history"]
    t = p.traces
    delay_1 = Signal.like(t.delay_data)
    m.d.sync += delay_1.eq(p.delays.read_data)
    m.d.comb += t.delay_data.eq(delay_1)
    sample_age = Signal.like(t.sample_age)
    m.d.sync += sample_age.eq(t.sample_age)
    is_input = delay_line(m, t.sample_channel < C, latency, "sample_input")[-1]
    lane = delay_line(m, (t.sample_channel - C)[:lane_bits] if lane_bits else 0, latency, "sample_lane")[-1]
    count = 0
    if p.inputs is not None:   # the input history answers in its own latency: delay it to the probe's
        extra = latency - p.inputs.latency
        count = delay_line(m, p.inputs.read_data, extra, "sample_count")[-1] if extra else p.inputs.read_data
    spike = p.queue.probe_spikes.bit_select(lane, 1) if lane_bits else p.queue.probe_spikes[0]
    m.d.comb += t.sample_data.eq(Mux(is_input, count, spike))
    return sample_age
