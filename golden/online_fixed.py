r"""The three-factor rule in fixed point: the bit-exact reference of the delay-update unit.

Integer arithmetic only (``torch.int64`` tensors holding the chip's narrower
values), in the order of :class:`delrec.arith.FixedSpec`, which the RTL is
written from too. The network is that of :mod:`delrec.golden.online` in its
hard forward mode (integer delays, as the chip runs), one LIF layer with
optional recurrence and a readout.

Stored values and their meaning in the float model's units (threshold 1):

=================  ===========================  ==================================
value              width                         float equivalent
=================  ===========================  ==================================
membrane ``v``     ``v_bits`` signed, saturated  ``v / theta``
weight ``w``       ``weight_bits + weight_frac`` ``(w >> weight_frac) / theta``
                   signed (learning copy)        (the forward uses the top bits)
bias ``b``         ``v_bits + weight_frac``      ``(b >> weight_frac) / theta``
delay ``d``        ``delay_int + delay_frac``    ``d / 2^delay_frac`` steps
                   unsigned
weight trace       ``trace_bits`` signed         ``eps / 2^trace_frac``
delay trace        ``trace_bits`` signed         ``eps * c_lut`` with ``c_lut`` the
                                                 LUT's scale (:attr:`lut_scale`)
surrogate ``psi``  ``psi_bits + 1`` unsigned     triangle of half-width
                                                 ``2^psi_bits / theta``
learning signal    ``signal_bits`` signed        ``err * (2^(signal_bits-1) - 1)``
=================  ===========================  ==================================

Rounding: every right shift is ``rshift_round`` (half up) unless
``spec.stochastic``, where updates add the low bits of a 16-bit Galois LFSR
(:class:`delrec.arith.Lfsr16`, one draw per updated parameter in row-major
order, weights before delays, input before recurrent) before the shift.
Saturation: membrane, traces and signals saturate to their widths; weights to
their learning width; delays clip to ``[0, (D - 1) 2^f]``. Accumulators
(eligibility sums, updates) are 64-bit here; :meth:`FixedOnlineNetwork.run`
records their largest magnitude so the RTL's widths can be checked against it.

Error against the float rule (documented bound, tested on random networks):
with the float network holding the dequantised weights, integer delays and
``tau = 2^leak_shift``, the spike trains agree on >= 97 % of neuron-steps and
the updates' cosine similarity with the float rule's is >= 0.9 for weights and
delays (the differences come from the floor in the shift leak, the 8-bit
Gaussian LUT and the quantised learning signal).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from delrec.arith import FixedSpec, Lfsr16, gaussian_derivative_lut, signed_range

from .online import OnlineConfig, OnlineNetwork, accumulate_eligibility

__all__ = ["FixedOnlineNetwork"]

i64 = torch.int64


def _sat(x: torch.Tensor, bits: int) -> torch.Tensor:
    lo, hi = signed_range(bits)
    return x.clamp(lo, hi)


def _rshift_round(x: torch.Tensor, k: int) -> torch.Tensor:
    return x if k == 0 else (x + (1 << (k - 1))) >> k


def _leak(x: torch.Tensor, shift: int) -> torch.Tensor:
    return x - (x >> shift)


class FixedOnlineNetwork:
    """Integer twin of :class:`~delrec.golden.online.OnlineNetwork` (hard forward).

    Parameters
    ----------
    config : OnlineConfig
        Network shape, delay kinds, reset, signal mode, what is learned.
        ``tau``, ``threshold``, ``surrogate`` and the learning rates are
        replaced by the spec's leak shift, threshold, triangle and shifts.
    spec : FixedSpec
    seed : int
        Initial parameters (uniform, as the float network's) and LFSR seed.
    """

    def __init__(self, config: OnlineConfig, spec: FixedSpec = FixedSpec(), seed: int = 0):
        if config.max_delay > spec.depth - 1:
            raise ValueError(f"Maximum delay {config.max_delay} exceeds the chip's D - 1 = "
                             f"{spec.depth - 1}")
        if config.readout_decay:
            raise ValueError("The fixed-point readout has no leak (readout_decay must be 0), "
                             f"not {config.readout_decay!r}")
        self.config, self.spec = config, spec
        self.lut = torch.tensor(gaussian_derivative_lut(config.sigma, config.radius,
                                                        spec.delay_frac_bits, spec.lut_bits), dtype=i64)
        self.reach = (len(self.lut) - 1) // 2  # in 2^-f steps
        self.lfsr = Lfsr16(1 + seed % 65535)
        self.load_float(OnlineNetwork(config, seed=seed))

    # -- parameters ------------------------------------------------------------------
    @staticmethod
    def equivalent_shifts(config: OnlineConfig, spec: FixedSpec, batch: int = 1) -> dict:
        """Learning-rate shifts that make the integer updates match the float rule's.

        :meth:`exact_shifts` rounded to the nearest integer (and at least 0).
        """
        return {k: max(0, int(round(v)))
                for k, v in FixedOnlineNetwork.exact_shifts(config, spec, batch).items()}

    @staticmethod
    def chip_rate_factors(config: OnlineConfig, spec: FixedSpec, batch: int = 1) -> dict:
        """The rates ``spec``'s shifts apply, as multiples of ``config``'s float rates.

        A shift ``k`` where :meth:`exact_shifts` gives ``x`` applies
        ``2^(x - k)`` times the float rate: between ``1/sqrt(2)`` and
        ``sqrt(2)`` for the shifts of :meth:`equivalent_shifts`. Keys are
        ``lr_weight``, ``lr_delay`` and ``lr_readout``.
        """
        exact = FixedOnlineNetwork.exact_shifts(config, spec, batch)
        return {name.removesuffix("_shift"): 2.0 ** (x - getattr(spec, name)) for name, x in exact.items()}

    @staticmethod
    def exact_shifts(config: OnlineConfig, spec: FixedSpec, batch: int = 1) -> dict:
        """The real-valued shifts ``log2(...)`` at which the integer updates equal the float rule's.

        From the scale of each factor (signal ``theta * top / 2^(weight_bits-1)``,
        surrogate ``theta``, traces ``2^trace_frac`` and the LUT's unit) the
        float step ``eta * sum L e / batch`` in stored units is
        ``acc / 2^x``; the chip shifts by an integer ``k``
        (:meth:`equivalent_shifts`: ``x`` rounded, an effective rate within a
        factor of sqrt(2) of the float one).

        Delay traces kept per synapse hold ``w D >> (weight_bits - 1)``;
        factored ones (axonal delays, soft reset) hold ``D`` and the update
        multiplies by the forward weight without that shift, so their
        accumulator is ``2^(weight_bits - 1)`` larger and their shift that
        much more. One shift serves both delay streams: it follows the input
        delays when they are learnable (else the recurrent ones), and a
        network mixing the two layouts learns its recurrent delays at
        ``2^(weight_bits - 1)`` times (or a ``2^(weight_bits - 1)``-th of)
        the float rate.
        """
        top = (1 << (spec.signal_bits - 1)) - 1
        half = 1 << (spec.weight_bits - 1)
        theta = spec.theta
        signal = theta * top / half
        lut_scale = math.exp(-0.5) / (config.sigma ** 2 * math.sqrt(2 * math.pi)) / \
            ((1 << (spec.lut_bits - 1)) - 1)
        w_unit = theta * (1 << spec.weight_frac_bits)
        d_unit = 1 << spec.delay_frac_bits
        trace_w = 1 << spec.trace_frac_bits
        if config.signal == "sample":
            err_unit, out_trace = top, 1.0
            signal = theta * top / half
        else:
            err_unit, out_trace = theta, 1.0
            signal = theta * (theta / (1 << spec.step_error_shift)) / half
        # per-synapse delay traces hold w * D >> (weight_bits-1); factored ones hold D and
        # the update multiplies by w_fwd, without the shift
        kind = config.input_delays if config.input_delays is not None else config.recurrent_delays
        factored = kind == "axonal" and config.reset == "soft"
        trace_d = theta / half / lut_scale * (half if factored else 1)
        ratios = {
            "lr_weight_shift": signal * theta * trace_w / (config.lr_weight * w_unit / batch),
            "lr_delay_shift": signal * theta * trace_d / (config.lr_delay * d_unit / batch),
            "lr_readout_shift": err_unit * out_trace / (config.lr_readout * w_unit / batch),
        }
        return {k: math.log2(v) for k, v in ratios.items()}

    @property
    def lut_scale(self) -> float:
        """Float value of one LUT unit of the delay-derivative kernel."""
        c = self.config
        top = (1 << (self.spec.lut_bits - 1)) - 1
        return math.exp(-0.5) / (c.sigma * c.sigma * math.sqrt(2 * math.pi)) / top

    def load_float(self, net: OnlineNetwork) -> None:
        """Quantise a float network's parameters (round half up, saturate, clip)."""
        s = self.spec
        wscale = s.theta * (1 << s.weight_frac_bits)
        wbits = s.weight_bits + s.weight_frac_bits

        def weight(w):
            return None if w is None else _sat(torch.floor(w.detach() * wscale + 0.5).to(i64), wbits)

        def delay(d):
            if d is None:
                return None
            q = torch.floor(d.detach() * (1 << s.delay_frac_bits) + 0.5).to(i64)
            return q.clamp(0, s.delay_max)

        self.w_in, self.w_rec, self.w_out = weight(net.w_in), weight(net.w_rec), weight(net.w_out)
        self.d_in, self.d_rec = delay(net.d_in), delay(net.d_rec)
        bbits = s.v_bits + s.weight_frac_bits
        self.bias = _sat(torch.floor(net.bias.detach() * wscale + 0.5).to(i64), bbits)
        self.b_out = _sat(torch.floor(net.b_out.detach() * wscale + 0.5).to(i64), bbits)
        self.feedback = weight(net.feedback)

    def to_float(self) -> OnlineNetwork:
        """A float network holding exactly the values this one computes with."""
        s = self.spec
        net = OnlineNetwork(self.config)
        fwd = lambda w: (w >> s.weight_frac_bits).to(torch.float64) / s.theta  # noqa: E731
        net.w_in.copy_(fwd(self.w_in))
        net.w_out.copy_(fwd(self.w_out))
        net.feedback.copy_(fwd(self.feedback))
        if self.w_rec is not None:
            net.w_rec.copy_(fwd(self.w_rec))
        for name in ("d_in", "d_rec"):
            if getattr(self, name) is not None:
                getattr(net, name).copy_(getattr(self, name).to(torch.float64)
                                         / (1 << s.delay_frac_bits))
        net.bias.copy_(fwd(self.bias))
        net.b_out.copy_(fwd(self.b_out))
        return net

    def set_sigma(self, sigma: float) -> None:
        """A new surrogate width: the host reloads the LUT (and, in training, the delay shift)."""
        self.config.sigma = float(sigma)
        self.lut = torch.tensor(gaussian_derivative_lut(sigma, self.config.radius,
                                                        self.spec.delay_frac_bits, self.spec.lut_bits),
                                dtype=i64)
        self.reach = (len(self.lut) - 1) // 2

    def state_dict(self) -> dict:
        state = {n: p.clone() for n, p in self.parameters().items()}
        state["feedback"] = self.feedback.clone()
        state["lfsr"] = self.lfsr.state
        return state

    def load_state_dict(self, state: dict) -> None:
        for n, p in self.parameters().items():
            if tuple(state[n].shape) != tuple(p.shape):
                raise ValueError(f"Stored {n} has shape {list(state[n].shape)}, expected {list(p.shape)}")
            setattr(self, n, state[n].clone().to(i64))
        self.feedback = state["feedback"].clone()
        self.lfsr.state = int(state["lfsr"])

    def forward_weight(self, w: torch.Tensor) -> torch.Tensor:
        return w >> self.spec.weight_frac_bits

    def parameters(self) -> dict:
        names = ("w_in", "d_in", "bias", "w_rec", "d_rec", "w_out", "b_out")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    @property
    def history(self) -> int:
        return self.spec.depth + 1 + (self.reach >> self.spec.delay_frac_bits) + 2

    # -- delayed reads ---------------------------------------------------------------
    def _gather(self, hist, lags, kind, t):
        L, B, P = hist.shape
        ring = hist.permute(1, 0, 2)
        valid = (lags >= 0) & (lags <= t) & (lags < L)
        pos = torch.remainder(t - lags.clamp(0, L - 1), L)
        if kind == "synaptic":
            out = ring.gather(1, pos.unsqueeze(0).expand(B, -1, -1))
        else:
            out = ring.gather(1, pos.view(1, 1, P).expand(B, 1, P)).squeeze(1)
        return torch.where(valid, out, torch.zeros_like(out))

    def _read(self, hist, d, kind, offset, t, derivative: bool):
        s = self.spec
        f = s.delay_frac_bits
        if kind is None:
            lag = torch.tensor(offset)
            return self._gather(hist, lag.expand(hist.shape[2]), "axonal", t), None
        value = self._gather(hist, ((d + (1 << (f - 1))) >> f if f else d) + offset, kind, t)
        if not derivative:
            return value, None
        # D = sum_m lut[m 2^f - d] x[t - m] over |m 2^f - d| <= reach
        base = d >> f
        total = torch.zeros_like(value)
        steps = (self.reach >> f) + 1
        for r in range(-steps, steps + 2):
            m = base + r
            x = (m << f) - d
            ok = x.abs() <= self.reach
            weight = torch.where(ok, self.lut[(x + self.reach).clamp(0, 2 * self.reach)],
                                 torch.zeros_like(x))
            total = total + weight * self._gather(hist, m + offset, kind, t)
        return value, total

    # -- one batch -------------------------------------------------------------------
    def run(self, x: torch.Tensor, labels: torch.Tensor | None = None, learn: bool = False,
            signal: torch.Tensor | None = None, record: bool = False) -> dict:
        """Run ``x [T, B, C]`` (integer spike counts); learn if asked.

        The learning signal comes from ``labels`` (per step: ``err = u - target``
        on chip; per sample: the host's softmax error, quantised to
        ``signal_bits``) or is given as ``signal`` ``[T, B, N]`` / ``[B, N]``
        integers (a host stream), checked against ``signal_bits``.
        Returns ``outputs [T, B, K]`` (readout potentials), ``scores [B, K]``,
        ``spikes``/``membrane`` (the charge ``h``) with ``record``, and
        ``peaks`` (largest accumulator magnitudes) when learning. With
        ``record`` and a per-sample signal, ``learning`` holds the state at
        the end of the sample, before the update: ``traces``,
        ``eligibility`` sums and the ``signal`` applied; with a per-step
        signal, ``learning_steps`` holds per step, after that step's update
        (if any), the ``traces``, the last ``signal`` computed (zeros before
        ``loss_start``) and every parameter (``parameters``).
        """
        c, s = self.config, self.spec
        if x.dim() != 3 or x.shape[2] != c.inputs:
            raise ValueError(f"Input must have shape [T, B, {c.inputs}], not {tuple(x.shape)}")
        if x.dtype.is_floating_point and not torch.equal(x, torch.floor(x)):
            raise ValueError("Fixed-point input must be integer spike counts")
        x = x.to(i64)
        if int(x.min()) < 0:
            raise ValueError(f"Spike counts must be non-negative, not {int(x.min())}")
        T, B, _ = x.shape
        N = c.hidden
        if signal is not None:
            lo, hi = signed_range(s.signal_bits)
            if int(signal.min()) < lo or int(signal.max()) > hi:
                raise ValueError(f"Learning signal {int(signal.min())}..{int(signal.max())} outside "
                                 f"the {s.signal_bits}-bit range {lo}..{hi}")
            want = (T, B, N) if c.signal == "step" else (B, N)
            if tuple(signal.shape) != want:
                raise ValueError(f"Learning signal must have shape {list(want)}, not "
                                 f"{list(signal.shape)}")
        if learn and labels is None and signal is None:
            raise ValueError("Learning needs labels or a learning signal")
        L = self.history
        hist_in = torch.zeros(L, B, c.inputs, dtype=i64)
        hist_rec = torch.zeros(L, B, N, dtype=i64) if c.recurrent else None
        v = torch.zeros(B, N, dtype=i64)
        s_prev = torch.zeros(B, N, dtype=i64)
        traces, elig = {}, {}
        acc = {n: torch.zeros_like(p) for n, p in self.parameters().items()} if learn else None
        peaks = {}
        outputs, spikes_rec, mem_rec, step_learning = [], [], [], []
        last_signal = torch.zeros(B, N, dtype=i64)
        w_out = self.forward_weight(self.w_out)
        for t in range(T):
            hist_in[t % L] = x[t]
            if c.recurrent:
                hist_rec[t % L] = 0
            current = self.forward_weight(self.bias).expand(B, N).clone()
            streams = [("in", hist_in, self.w_in, self.d_in, c.input_delays, 0)]
            if c.recurrent:
                streams.append(("rec", hist_rec, self.w_rec, self.d_rec, c.recurrent_delays, 1))
            reads = []
            for name, hist, w, d, kind, offset in streams:
                need_d = learn and c.learn_delays and kind is not None
                pre, deriv = self._read(hist, d, kind, offset, t, need_d)
                wf = self.forward_weight(w)
                current = current + ((wf * pre).sum(-1) if kind == "synaptic" else pre @ wf.T)
                reads.append((name, kind, pre, deriv, wf))
            h = _sat(_leak(v, s.leak_shift) + current, s.v_bits)
            spike = (h >= s.theta).to(i64)
            psi = ((1 << s.psi_bits) - (h - s.theta).abs()).clamp(min=0)
            v = h * (1 - spike) if c.reset == "hard" else _sat(h - s.theta * spike, s.v_bits)
            if learn:
                for name, kind, pre, deriv, wf in reads:
                    self._traces(traces, name, kind, pre, deriv, wf, s_prev)
            if c.recurrent:
                hist_rec[t % L] = spike
            u = spike @ w_out.T + self.forward_weight(self.b_out)
            outputs.append(u)
            if record:
                spikes_rec.append(spike)
                mem_rec.append(h)
            if learn and t >= c.loss_start:
                if c.signal == "sample":
                    accumulate_eligibility(c, elig, traces, psi, spike)
                else:
                    sig = signal[t] if signal is not None else self._step_signal(u, labels)
                    last_signal = sig
                    self._step_accumulate(acc, traces, sig, psi, spike, u, labels)
            if learn and c.update_every and (t + 1) % c.update_every == 0:
                self._apply_and_clear(acc, peaks)
                w_out = self.forward_weight(self.w_out)
            if record and learn and c.signal == "step":  # what the chip holds after this step
                step_learning.append({"traces": {k: v.clone() for k, v in traces.items()},
                                      "signal": last_signal.clone(),
                                      "parameters": {n: p.clone() for n, p in self.parameters().items()}})
            s_prev = spike
        outputs = torch.stack(outputs)
        scores = outputs[c.loss_start:].sum(0)
        if learn:
            if c.signal == "sample":
                sig = signal if signal is not None else self.sample_signal(scores, labels)
                self._sample_accumulate(acc, elig, sig, scores, labels, T - min(c.loss_start, T))
                if record:  # the learning state the chip holds when the signal arrives
                    result_learning = {"traces": {k: v.clone() for k, v in traces.items()},
                                       "eligibility": {k: v.clone() for k, v in elig.items()},
                                       "signal": sig.clone()}
            if not (c.update_every and T % c.update_every == 0):
                self._apply_and_clear(acc, peaks)
        result = {"outputs": outputs, "scores": scores}
        if labels is not None:  # the host's view: cross-entropy of the scores in threshold units
            result["loss"] = F.cross_entropy(scores.to(torch.float64) / s.theta, labels)
        if learn:
            result["peaks"] = peaks
        if record:
            result["spikes"] = torch.stack(spikes_rec)
            result["membrane"] = torch.stack(mem_rec)
            if learn and c.signal == "sample":
                result["learning"] = result_learning
            elif learn:
                result["learning_steps"] = step_learning
        return result

    # -- learning signal ---------------------------------------------------------------
    def output_error(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The host's per-sample error: ``round((softmax(scores / theta) - onehot) * top)``."""
        s = self.spec
        top = (1 << (s.signal_bits - 1)) - 1
        p = F.softmax(scores.to(torch.float64) / s.theta, dim=-1)
        err = p - F.one_hot(labels, self.config.classes).to(torch.float64)
        return torch.floor(err * top + 0.5).to(i64)

    def _broadcast(self, err: torch.Tensor) -> torch.Tensor:
        """``L_i = sat(round(sum_k B_ik err_k >> (weight_bits - 1 + x)))``, ``x = feedback_frac_bits``.

        ``B`` holds the feedback weights' top ``weight_bits + x`` bits (the
        forward bits and ``x`` bits of the learning copy's fraction).
        """
        s, c = self.spec, self.config
        x = s.feedback_frac_bits
        weights = self.w_out.T if c.feedback == "symmetric" else self.feedback
        fb = weights >> (s.weight_frac_bits - x)
        return _sat(_rshift_round(err @ fb.T, s.weight_bits - 1 + x), s.signal_bits)

    def sample_signal(self, scores, labels):
        return self._broadcast(self.output_error(scores, labels))

    def _step_signal(self, u, labels):
        """On-chip per-step signal: ``err = sat((u - theta onehot) >> shift)``, then broadcast."""
        s = self.spec
        target = F.one_hot(labels, self.config.classes).to(i64) * s.theta
        top = (1 << (s.signal_bits - 1)) - 1
        err = _rshift_round(u - target, s.step_error_shift).clamp(-top, top)
        return self._broadcast(err)

    # -- traces and accumulators ---------------------------------------------------------
    def _traces(self, traces, name, kind, pre, deriv, wf, s_prev):
        c, s = self.config, self.spec
        per_synapse = kind == "synaptic" or c.reset == "hard"

        def decay(old):
            out = _leak(old, s.leak_shift)
            if c.reset == "hard":
                gate = (1 - s_prev).unsqueeze(-1)
                out = out * gate
            return out

        if c.learn_weights:
            value = pre << s.trace_frac_bits
            if per_synapse and kind != "synaptic":
                value = value.unsqueeze(1).expand(-1, c.hidden, -1)
            old = traces.get(f"w_{name}")
            traces[f"w_{name}"] = value if old is None else _sat(decay(old) + value, s.trace_bits)
        if deriv is not None:
            if kind == "synaptic":
                value = _rshift_round(wf * deriv, s.weight_bits - 1)
            elif per_synapse:
                value = _rshift_round(wf * deriv.unsqueeze(1), s.weight_bits - 1)
            else:
                value = deriv
            old = traces.get(f"d_{name}")
            traces[f"d_{name}"] = _sat(value, s.trace_bits) if old is None else \
                _sat(decay(old) + value, s.trace_bits)
        if c.learn_weights and name == "in":
            one = torch.full((s_prev.shape[0], c.hidden), 1 << s.trace_frac_bits, dtype=i64)
            old = traces.get("bias")
            if old is None:
                traces["bias"] = one
            else:
                out = _leak(old, s.leak_shift)
                if c.reset == "hard":
                    out = out * (1 - s_prev)
                traces["bias"] = _sat(out + one, s.trace_bits)

    def _sample_accumulate(self, acc, el, sig, scores, labels, steps):
        c = self.config
        for name, kind in (("in", c.input_delays), ("rec", c.recurrent_delays)):
            w = self.w_in if name == "in" else self.w_rec
            if f"w_{name}" in el:
                acc[f"w_{name}"] += torch.einsum("bi,bij->ij", sig, el[f"w_{name}"])
            if f"d_{name}" in el:
                if kind == "synaptic" or c.reset == "hard":
                    dims = "bi,bij->ij" if kind == "synaptic" else "bi,bij->j"
                    acc[f"d_{name}"] += torch.einsum(dims, sig, el[f"d_{name}"])
                else:
                    acc[f"d_{name}"] += torch.einsum("bi,ij,bij->j", sig, self.forward_weight(w),
                                                     el[f"d_{name}"])
        if "bias" in el:
            acc["bias"] += (sig * el["bias"]).sum(0)
        err = self.output_error(scores, labels) if labels is not None else None
        if err is not None:
            acc["w_out"] += err.T @ el["spikes"]
            if c.readout_bias:
                acc["b_out"] += err.sum(0) * steps

    def _step_accumulate(self, acc, traces, sig, psi, spike, u, labels):
        c = self.config
        lp = sig * psi
        for name, kind in (("in", c.input_delays), ("rec", c.recurrent_delays)):
            w = self.w_in if name == "in" else self.w_rec
            tw, td = traces.get(f"w_{name}"), traces.get(f"d_{name}")
            if c.learn_weights and tw is not None:
                acc[f"w_{name}"] += torch.einsum("bi,bij->ij", lp, tw) if tw.dim() == 3 else lp.T @ tw
            if c.learn_delays and td is not None:
                if kind == "synaptic":
                    acc[f"d_{name}"] += torch.einsum("bi,bij->ij", lp, td)
                elif td.dim() == 3:
                    acc[f"d_{name}"] += torch.einsum("bi,bij->j", lp, td)
                else:
                    acc[f"d_{name}"] += ((lp @ self.forward_weight(w)) * td).sum(0)
        if c.learn_weights:
            acc["bias"] += (lp * traces["bias"]).sum(0)
        if labels is not None:
            s = self.spec
            target = F.one_hot(labels, c.classes).to(i64) * s.theta
            err = u - target
            acc["w_out"] += err.T @ spike
            if c.readout_bias:
                acc["b_out"] += err.sum(0)

    def accumulators(self, x, labels=None, signal=None) -> dict:
        """The integer accumulators of one batch (before the learning-rate shifts), not applied."""
        self._capture = {}
        try:
            self.run(x, labels, learn=True, signal=signal)
            return self._capture
        finally:
            del self._capture

    def _apply_and_clear(self, acc, peaks):
        """Apply the accumulated updates, record their peaks, and zero them."""
        for n, a in acc.items():
            peaks[n] = max(peaks.get(n, 0), int(a.abs().max()) if a.numel() else 0)
        self._apply(acc)
        for a in acc.values():
            a.zero_()

    def _apply(self, acc):
        if hasattr(self, "_capture"):   # not applied: the chunks of update_every add up
            for n, a in acc.items():
                self._capture[n] = self._capture[n] + a if n in self._capture else a.clone()
            return
        c, s = self.config, self.spec
        shifts = {"w_in": s.lr_weight_shift, "bias": s.lr_weight_shift, "w_rec": s.lr_weight_shift,
                  "d_in": s.lr_delay_shift, "d_rec": s.lr_delay_shift,
                  "w_out": s.lr_readout_shift, "b_out": s.lr_readout_shift}
        order = ["w_in", "bias", "w_rec", "w_out", "b_out", "d_in", "d_rec"]
        wbits = s.weight_bits + s.weight_frac_bits
        for n in order:
            if n not in acc:
                continue
            if n.startswith("d_") and not c.learn_delays:
                continue
            if n in ("w_in", "bias", "w_rec") and not c.learn_weights:
                continue
            k = shifts[n]
            a = acc[n]
            if s.stochastic and k:
                flat = a.flatten()
                noise = torch.tensor([self.lfsr.draw(k) for _ in range(flat.numel())], dtype=i64)
                step = ((flat + noise) >> k).view_as(a)
            else:
                step = _rshift_round(a, k)
            p = getattr(self, n)
            if n.startswith("d_"):
                setattr(self, n, (p - step).clamp(0, s.delay_max))
            elif n in ("bias", "b_out"):
                setattr(self, n, _sat(p - step, s.v_bits + s.weight_frac_bits))
            else:
                setattr(self, n, _sat(p - step, wbits))
