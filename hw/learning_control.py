"""The learning unit's sequence within a step of the core, and its answers to the trace unit.

Functions that add the learning passes to :class:`~delrec.hw.core.InferenceCore`'s
control FSM (they are called inside it, with the core's parts and registers):
the trace pass, and from ``LOSS_START`` on the readout's errors and broadcast,
the readout weights of every neuron that fired, and one weight column per
learning delay streamed through :class:`~delrec.hw.delay_update.DelayUpdate`.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal

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
    # one weight column per learning delay: S_p, then d_p
    channel = Signal(range(b.channels + 1))
    first = Signal(range(b.channels + 1))
    first_enabled = Mux(r.learn[1] & (b.input_delays is not None), 0, C)
    last_enabled = Mux(r.learn[2], b.channels, C)
    recurrent = channel >= C
    index = Mux(recurrent, channel - C, channel)
    m.d.comb += first.eq(first_enabled)
    with m.State("LEARN_COLUMN"):
        with m.If(p.readout.ready & ~p.readout.busy):
            m.d.sync += channel.eq(first)
            m.next = "LEARN_COLUMN_START"
    with m.State("LEARN_COLUMN_START"):
        with m.If(channel >= last_enabled):
            m.next = "LEARN_DONE"
        with m.Else():
            m.d.comb += [delay_pass.eq(1), p.update.clear.eq(1), p.fan.start.eq(1),
                         p.fan.start_base.eq(index * B), p.fan.start_recurrent.eq(recurrent)]
            m.next = "LEARN_COLUMN_ROWS"
    wait = Signal(range(p.update.ROW_LATENCY + 2))
    with m.State("LEARN_COLUMN_ROWS"):          # the column streams into the back-projection
        m.d.comb += delay_pass.eq(1)
        with m.If(p.fan.done):
            m.d.sync += wait.eq(p.update.ROW_LATENCY)
            m.next = "LEARN_COLUMN_READ"
    with m.State("LEARN_COLUMN_READ"):          # S_p complete: read eps_p and d_p
        m.d.comb += delay_pass.eq(1)
        with m.If(wait != 0):
            m.d.sync += wait.eq(wait - 1)
        with m.Else():
            m.d.comb += [p.traces.read_en.eq(1), p.traces.read_addr.eq(channel),
                         p.delays.read_en.eq(1), p.delays.read_input.eq(~recurrent),
                         p.delays.read_addr.eq(index)]
            m.next = "LEARN_COLUMN_FINISH"
    with m.State("LEARN_COLUMN_FINISH"):
        m.d.comb += [delay_pass.eq(1), p.update.finish_en.eq(1), p.update.trace.eq(p.traces.read_data),
                     p.update.delay.eq(p.delays.read_data)]
        m.next = "LEARN_COLUMN_WRITE"
    with m.State("LEARN_COLUMN_WRITE"):
        m.d.comb += delay_pass.eq(1)
        with m.If(p.update.result_valid):
            m.d.comb += [p.delays.write_en.eq(1), p.delays.write_input.eq(~recurrent),
                         p.delays.write_addr.eq(index), p.delays.write_data.eq(p.update.result_delay)]
            m.d.sync += channel.eq(channel + 1)
            m.next = "LEARN_COLUMN_START"
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

    Returns the age of the sample asked on the previous cycle: the spike
    history's probe takes it one cycle after the row.
    """
    b = core.build
    C, lane_bits = b.inputs, core.geometry.lane_bits
    t = p.traces
    delay_1 = Signal.like(t.delay_data)
    m.d.sync += delay_1.eq(p.delays.read_data)
    m.d.comb += t.delay_data.eq(delay_1)
    sample_age = Signal.like(t.sample_age)
    lane_1, lane_2 = (Signal(max(1, lane_bits), name=f"sample_lane_{n}") for n in (1, 2))
    input_1, input_2 = Signal(), Signal()
    count_2 = Signal.like(t.sample_data)
    m.d.sync += [sample_age.eq(t.sample_age), input_1.eq(t.sample_channel < C), input_2.eq(input_1),
                 lane_1.eq((t.sample_channel - C)[:lane_bits] if lane_bits else 0), lane_2.eq(lane_1)]
    if p.inputs is not None:
        m.d.sync += count_2.eq(p.inputs.read_data)
    spike = p.queue.probe_spikes.bit_select(lane_2, 1) if lane_bits else p.queue.probe_spikes[0]
    m.d.comb += t.sample_data.eq(Mux(input_2, count_2, spike))
    return sample_age
