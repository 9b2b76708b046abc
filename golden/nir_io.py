"""Interchange with NIR (the Neuromorphic Intermediate Representation, ``nir`` package).

:func:`to_nir` writes a core network (:class:`delrec.image.FixedNetwork`:
the integer network the golden model :func:`delrec.golden.fixed.run_fixed`
and the model compiler take) as a NIR graph; :func:`from_nir` reads one back.
The round trip is exact: weights, biases, delays, thresholds, leaks, reset
and the arithmetic spec.

The graph (time step ``dt = 1``; every array float64 holding the integers)::

    input --> w_in (Affine: w_in, bias) --> lif (LIF) --> w_out (Affine) --> readout (LI) --> output
                                             ^     |
                                             |     v
                          w_rec (Linear) <-- delay (Delay: 1 + d)

* ``lif``: ``v_threshold = theta``, ``v_reset = 0``, ``v_leak = 0``, ``r =
  1``, ``tau = 1 / (1 - alpha)`` with ``alpha`` the core's decay factor
  (forward Euler with ``dt = 1``: ``v <- alpha v + I``); metadata
  ``reset`` (``hard``/``soft``: NIR's LIF resets to ``v_reset``, a soft
  reset subtracts the threshold) and the exact ``leak_param``;
* ``delay``: one delay per presynaptic neuron (axonal), **including the
  one step every recurrent connection takes** (a spike of step ``t``
  arrives at ``t + 1 + d``), so ``Delay.delay = 1 + d``;
* ``readout``: the leaky readout, ``tau`` from its decay, metadata
  ``readout_leak_param``;
* graph metadata: ``delrec_spec`` (:class:`~delrec.arith.CoreSpec`) and
  the network's ``meta``.

NIR's ``Delay`` delays each element of its input vector, which is the
axonal form; per-connection (synaptic) delays have no NIR node and are
refused on export. A graph from another tool imports if it has this shape
and integer-valued parameters (quantize a float network first: ``delrec
quantize``); without the metadata the default spec and a hard reset are
assumed and leaks are recovered from ``tau``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from delrec.arith import CoreSpec
from delrec.image import FixedNetwork

__all__ = ["to_nir", "from_nir", "write_nir", "read_nir"]


def _tau(spec: CoreSpec, param: int) -> np.float64:
    alpha = spec.alpha(param)
    return np.float64(np.inf) if alpha >= 1.0 else np.float64(1.0 / (1.0 - alpha))


def _param_from_tau(spec: CoreSpec, tau: float, what: str) -> int:
    tau = float(tau)
    if not tau >= 1.0:
        raise ValueError(f"{what} time constant tau = {tau!r} is below one step (dt = 1)")
    alpha = 1.0 if np.isinf(tau) else 1.0 - 1.0 / tau
    param = spec.leak_param(alpha)
    if not np.isclose(spec.alpha(param), alpha, rtol=0, atol=1e-9):
        raise ValueError(f"{what} decay {alpha!r} (tau = {tau!r}) is not a {spec.leak} leak of the "
                         f"core (nearest: {spec.alpha(param)!r})")
    return param


def _uniform(values, what: str) -> float:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0 or not np.all(values == values[0]):
        raise ValueError(f"The core has one {what} for all neurons; the graph has {np.unique(values)[:5]}")
    return float(values[0])


def _integers(values, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)) or not np.array_equal(values, np.round(values)):
        bad = values[~np.isfinite(values) | (values != np.round(values))].reshape(-1)[0]
        raise ValueError(f"{what} value {bad!r} is not an integer: the core's graphs hold "
                         f"quantized values (delrec quantize)")
    return values.astype(np.int64)


def to_nir(net: FixedNetwork):
    """A ``nir.NIRGraph`` of ``net`` (axonal delays)."""
    import nir

    if net.delay_kind != "axonal":
        raise ValueError("NIR's Delay node delays each presynaptic neuron's output (axonal); "
                         "this network has per-connection (synaptic) delays, which NIR cannot hold")
    spec = net.spec
    N, K = net.neurons, net.classes
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    nodes = {
        "input": nir.Input(input_type={"input": np.array([net.inputs])}),
        "w_in": nir.Affine(weight=f64(net.w_in), bias=f64(net.bias)),
        "lif": nir.LIF(tau=np.full(N, _tau(spec, net.leak)), r=np.ones(N), v_leak=np.zeros(N),
                       v_threshold=np.full(N, float(net.theta)), v_reset=np.zeros(N),
                       metadata={"reset": net.reset, "leak_param": net.leak}),
        "delay": nir.Delay(delay=f64(net.delays) + 1.0),
        "w_rec": nir.Linear(weight=f64(net.w_rec)),
        "w_out": nir.Affine(weight=f64(net.w_out), bias=f64(net.bias_out)),
        "readout": nir.LI(tau=np.full(K, _tau(spec, net.readout_leak)), r=np.ones(K), v_leak=np.zeros(K),
                          metadata={"readout_leak_param": net.readout_leak}),
        "output": nir.Output(output_type={"output": np.array([K])}),
    }
    edges = [("input", "w_in"), ("w_in", "lif"), ("lif", "delay"), ("delay", "w_rec"), ("w_rec", "lif"),
             ("lif", "w_out"), ("w_out", "readout"), ("readout", "output")]
    metadata = {"dt": 1.0, "producer": "delrec", "delrec_spec": json.dumps(spec.to_dict()),
                "delrec_meta": json.dumps(net.meta, default=str),
                "delay_convention": "Delay.delay = 1 + d: the recurrent step included"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)


def _node(graph, kind, name_hint: str):
    found = [(name, node) for name, node in graph.nodes.items() if type(node).__name__ == kind]
    if len(found) != 1:
        raise ValueError(f"Expected one {kind} node ({name_hint}) in the NIR graph, found "
                         f"{[n for n, _ in found]}")
    return found[0]


def from_nir(graph) -> FixedNetwork:
    """The core network of a NIR graph of the shape :func:`to_nir` writes."""
    meta = getattr(graph, "metadata", {}) or {}
    spec = CoreSpec(**json.loads(meta["delrec_spec"])) if "delrec_spec" in meta else CoreSpec()
    lif_name, lif = _node(graph, "LIF", "the hidden layer")
    _, li = _node(graph, "LI", "the readout")
    _, delay = _node(graph, "Delay", "the recurrent delays")
    affines = {name: node for name, node in graph.nodes.items() if type(node).__name__ == "Affine"}
    edges = set(map(tuple, graph.edges))
    into_lif = [a for a in affines if (a, lif_name) in edges]
    from_lif = [a for a in affines if (lif_name, a) in edges]
    if len(into_lif) != 1 or len(from_lif) != 1:
        raise ValueError(f"Expected one Affine into and one out of the LIF node, found {into_lif} "
                         f"and {from_lif}")
    w_in_node, w_out_node = affines[into_lif[0]], affines[from_lif[0]]
    _, w_rec_node = _node(graph, "Linear", "the recurrent weights")
    lif_meta, li_meta = getattr(lif, "metadata", {}) or {}, getattr(li, "metadata", {}) or {}
    leak = int(lif_meta["leak_param"]) if "leak_param" in lif_meta else \
        _param_from_tau(spec, _uniform(lif.tau, "membrane tau"), "Membrane")
    readout_leak = int(li_meta["readout_leak_param"]) if "readout_leak_param" in li_meta else \
        _param_from_tau(spec, _uniform(li.tau, "readout tau"), "Readout")
    for name, values, want in (("v_leak", lif.v_leak, 0.0), ("v_reset", lif.v_reset, 0.0), ("r", lif.r, 1.0)):
        if _uniform(values, f"LIF {name}") != want:
            raise ValueError(f"The core's neurons have {name} = {want}, the graph's {_uniform(values, name)}")
    delays = _integers(delay.delay, "Delay") - 1
    if delays.size and delays.min() < 0:
        raise ValueError(f"Recurrent Delay {int(delays.min()) + 1} is below the one step a recurrent "
                         f"connection takes")
    network_meta = json.loads(meta["delrec_meta"]) if "delrec_meta" in meta else {"source": "nir"}
    return FixedNetwork(
        spec=spec, w_in=_integers(w_in_node.weight, "Input weight"),
        w_rec=_integers(w_rec_node.weight, "Recurrent weight"), delays=delays,
        bias=_integers(w_in_node.bias, "Bias"), w_out=_integers(w_out_node.weight, "Readout weight"),
        bias_out=_integers(w_out_node.bias, "Readout bias"),
        theta=int(_integers([_uniform(lif.v_threshold, "threshold")], "Threshold")[0]),
        leak=leak, readout_leak=readout_leak, reset=str(lif_meta.get("reset", "hard")),
        meta=network_meta)


def write_nir(net: FixedNetwork, path) -> Path:
    """Write ``net`` as a NIR file (HDF5)."""
    import nir

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(path, to_nir(net))
    return path


def read_nir(path) -> FixedNetwork:
    """Read a NIR file into a core network (errors name what does not fit the core)."""
    import nir

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NIR file {path} does not exist")
    return from_nir(nir.read(path))
