"""The quantized EfficientViT: a flat graph of quantizable ops lowered from the torch model.

:func:`lower` walks a BN-folded :class:`quant.models.EfficientViTCls` (official module structure)
and produces a :class:`QGraph`: an ``nn.Module`` holding one node per IntProgram node (conv,
concat, linear attention, global average pool, linear, layernorm), with tensor names equal to the
official module paths (the names :mod:`sim.zoo` uses too). The same graph runs

* in **float** (``g.quant_w = g.quant_a = False``): the BN-folded float model, bit-for-bit the
  eval-mode torch model up to float rounding;
* in **fake-quant** mode: weights quantized filter-wise (round-to-nearest or AdaRound), every
  tensor quantized once where it is produced (per tensor; per channel with the migration factors
  on depthwise inputs; centred on the channel midpoints for second-pointwise inputs), the
  attention's ``K^T V`` and ``ksum`` quantized as in :func:`sim.golden.attention_steps` and the
  divisor log2-quantized (or uniform, or float: the Table V rows). Differentiable, for
  calibration and block reconstruction;
* in **integer-exact** mode (:meth:`QGraph.forward_int`): the integer arithmetic of
  :mod:`sim.numerics` with the exported integer parameters, batched in torch float64 (exact for
  these magnitudes). It reproduces :func:`sim.golden.run` bit for bit (tested).

Ownership of the quantization state: every tensor has a :class:`TensorQ` (bits, sign, observer,
LSQ quantizer, migration factors or shift centres); the graph's :class:`QConfig` says which
Trio-ViT techniques are on.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .observers import make_observer
from .quantizers import (AdaRoundWeightQuantizer, FixedWeightQuantizer, LSQActQuantizer,
                         WeightQuantizer, fake_quant)
from .transforms import (choose_emin, log2_offset, log2_round_torch, migration_factors,
                         shift_centers, uniform_divisor_quant)

__all__ = ["QConfig", "TensorQ", "QGraph", "lower", "ATTENTION_MODES", "ALIGN_KINDS"]

ATTENTION_MODES = ("float", "uniform", "log2")

#: what the *aligned* float-scale forward (:attr:`QGraph.align`) can compute in the deployed
#: arithmetic: the input quantization (float64) and the node ops of the IntProgram, with the
#: convolutions split into those with a Hardswish epilogue (``hswish``) and the others (``conv``)
ALIGN_KINDS = ("input", "conv", "hswish", "global_avgpool", "linear_attention", "linear",
               "layernorm")


@dataclass
class QConfig:
    """What to quantize and how (the CLI flags map 1:1 onto these fields)."""
    w_bits: int = 8
    a_bits: int = 8
    channel_wise: bool = True            #: filter-wise weight scales (else one per tensor)
    act_quant: bool = True               #: quantize activations at all
    stem_head_bits: int | None = 8       #: bits of stem/head weights and outputs (None: same)
    observer: str = "minmax"
    migration: bool = True               #: channel-wise migration of DW inputs (Eq. 6-8)
    shifting: bool = True                #: filter-wise shifting of PW2 inputs (Eq. 9-10)
    attention: str = "log2"              #: float | uniform | log2 (the divisor quantization)
    mid_bits: int = 16                   #: hswish intermediate width in the integer epilogue

    def __post_init__(self):
        for k in ("w_bits", "a_bits"):
            v = getattr(self, k)
            if not (2 <= v <= 8):
                raise ValueError(f"{k} must be in [2, 8], got {v}")
        if self.stem_head_bits is not None and not (2 <= self.stem_head_bits <= 8):
            raise ValueError(f"stem_head_bits must be in [2, 8] or None, got {self.stem_head_bits}")
        if self.attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {self.attention!r}")

    def as_dict(self):
        return asdict(self)


@dataclass
class TensorQ:
    """Quantization state of one named tensor."""
    name: str
    channels: int
    bits: int = 8
    signed: bool = True
    role: str = ""               #: "dw_in" (migration candidate), "pw2_in" (shift candidate), ...
    migrate: bool = False
    shift: bool = False
    consumers: list = field(default_factory=list)


def _key(name: str) -> str:
    return name.replace(".", "__")


# ------------------------------------------------------------------------------------------------
# nodes
# ------------------------------------------------------------------------------------------------

class QNode(nn.Module):
    op = "?"

    def __init__(self, name, inputs, output):
        super().__init__()
        self.name, self.inputs, self.output = name, list(inputs), output

    def reads(self):
        return list(self.inputs)


def _act(y, act):
    if act == "hswish":
        return F.hardswish(y)
    if act == "relu":
        return F.relu(y)
    return y


class QConv(QNode):
    op = "conv"

    def __init__(self, name, inp, output, conv: nn.Conv2d, act="none", residual=None):
        super().__init__(name, [inp], output)
        w = conv.weight.detach().clone().float()
        b = (conv.bias.detach().clone().float() if conv.bias is not None
             else torch.zeros(w.shape[0]))
        self.register_buffer("weight", w)
        self.register_buffer("bias", b)
        self.stride, self.padding, self.groups = conv.stride[0], conv.padding[0], conv.groups
        self.kernel = w.shape[-1]
        self.act, self.residual = act, residual
        self.wq = None
        self.w_bits = 8
        self.register_buffer("pre_max", torch.zeros((), dtype=torch.float64))

    def reads(self):
        return self.inputs + ([self.residual] if self.residual else [])

    @property
    def depthwise(self):
        return self.groups > 1 and self.weight.shape[1] == 1 and self.groups == self.weight.shape[0]

    def qweight(self):
        return self.wq(self.weight)

    def fwd(self, env, g):
        w = self.qweight() if (g.quant_w and self.wq is not None) else self.weight
        y = F.conv2d(env[self.inputs[0]], w, self.bias, self.stride, self.padding, 1, self.groups)
        if self.residual is not None:
            y = y + env[self.residual]
        if g.observing:
            self.pre_max = torch.maximum(self.pre_max, y.detach().abs().max().double())
        env[self.output] = g.act_out(self.output, _act(y, self.act))


class QConcat(QNode):
    op = "concat"

    def fwd(self, env, g):
        env[self.output] = torch.cat([env[t] for t in self.inputs], dim=1)


class QPool(QNode):
    op = "global_avgpool"

    def fwd(self, env, g):
        env[self.output] = g.act_out(self.output, env[self.inputs[0]].mean(dim=(2, 3)))


class QLinear(QNode):
    """``y = x W^T + b`` with the raw accumulator as output (no requant): the head's two linears."""
    op = "linear"

    def __init__(self, name, inp, output, lin: nn.Linear):
        super().__init__(name, [inp], output)
        self.register_buffer("weight", lin.weight.detach().clone().float())
        self.register_buffer("bias", lin.bias.detach().clone().float() if lin.bias is not None
                             else torch.zeros(lin.weight.shape[0]))
        self.wq = None
        self.w_bits = 8

    def qweight(self):
        return self.wq(self.weight)

    def fwd(self, env, g):
        w = self.qweight() if (g.quant_w and self.wq is not None) else self.weight
        x = env[self.inputs[0]].flatten(1)
        env[self.output] = F.linear(x, w, self.bias)


class QLayerNorm(QNode):
    op = "layernorm"

    def __init__(self, name, inp, output, ln: nn.LayerNorm, act="none"):
        super().__init__(name, [inp], output)
        self.register_buffer("gamma", ln.weight.detach().clone().double())
        self.register_buffer("beta", ln.bias.detach().clone().double())
        self.eps = float(ln.eps)
        self.act = act

    def fwd(self, env, g):
        x = env[self.inputs[0]]
        y = F.layer_norm(x, x.shape[-1:], self.gamma.to(x.dtype), self.beta.to(x.dtype), self.eps)
        env[self.output] = g.act_out(self.output, _act(y, self.act))


class QAttention(QNode):
    """ReLU linear attention (paper Eq. 4), quantized as :func:`sim.golden.attention_steps`.

    Per head: ``S = ReLU(K)^T V`` -> int8 (scale ``s_S``, per head), ``ksum`` -> uint8 (scale
    ``s_ks``), ``num = ReLU(Q) S``, ``den = ReLU(Q) ksum``; the divisor is log2-quantized
    (exponent ``e = clip(offset + log2_round(den_int), emin, emin + 15)``, ``den ~ 2**(e -
    offset)`` integer units) or uniform 8-bit (the paper's NaN row) or kept in float.
    """
    op = "linear_attention"

    def __init__(self, name, inp, output, dim, heads, eps):
        super().__init__(name, [inp], output)
        self.dim, self.heads, self.eps = dim, heads, eps
        for b in ("s_S", "s_ks", "s_den", "emin", "S_max", "ks_max", "den_max"):
            self.register_buffer(b, torch.zeros(heads, dtype=torch.float64))
        self.zero_divisors = 0      # counted in uniform mode (the NaN's reason)
        self.divisors = 0

    def _split(self, x):
        b, _, h, w = x.shape
        t = x.reshape(b, self.heads, 3 * self.dim, h * w)
        return t[:, :, :self.dim], t[:, :, self.dim:2 * self.dim], t[:, :, 2 * self.dim:]

    def head_scales(self, g):
        sc = g.scale_vector(self.inputs[0]).reshape(self.heads, 3 * self.dim)
        return sc[:, 0], sc[:, self.dim], sc[:, 2 * self.dim]

    def fwd(self, env, g):
        x = env[self.inputs[0]]
        b, _, h, w = x.shape
        q, k, v = self._split(x)
        rq, rk = F.relu(q), F.relu(k)
        S = rk @ v.transpose(-1, -2)                  # (B, heads, dim_k, dim_v)
        ks = rk.sum(-1)                               # (B, heads, dim_k)
        mode = g.cfg.attention if g.quant_a else "float"
        if g.observing:
            self.S_max = torch.maximum(self.S_max, S.detach().abs().amax(dim=(0, 2, 3)).double())
            self.ks_max = torch.maximum(self.ks_max, ks.detach().amax(dim=(0, 2)).double())
        if mode == "float":
            num = S.transpose(-1, -2) @ rq            # (B, heads, dim_v, N)
            den = (ks.unsqueeze(-1) * rq).sum(-2)     # (B, heads, N)
            if g.observing:
                self.den_max = torch.maximum(self.den_max, den.detach().amax(dim=(0, 2)).double())
            out = num / (den.unsqueeze(-2) + self.eps)
        else:
            sS = self.s_S.to(x.dtype).reshape(1, -1, 1, 1)
            sK = self.s_ks.to(x.dtype).reshape(1, -1, 1)
            Sq = fake_quant(S, sS.reshape(-1), 8, True, axis=1)
            ksq = fake_quant(ks, sK.reshape(-1), 8, False, axis=1)
            num = Sq.transpose(-1, -2) @ rq
            den = (ksq.unsqueeze(-1) * rq).sum(-2)
            if mode == "uniform":
                dq = uniform_divisor_quant(den, float(self.s_den.max()), 8)
                self.zero_divisors += int(((dq == 0) & (den > 0)).sum())
                self.divisors += den.numel()
                out = num / dq.unsqueeze(-2)          # 0 divisors -> inf/NaN, as in the paper
            else:
                s_q, _, _ = self.head_scales(g)
                s_den = (s_q.double() * self.s_ks).reshape(1, -1, 1)
                den_int = torch.floor(den.detach().double() / s_den + 0.5).clamp_min(0)
                off = torch.tensor([log2_offset(float(s)) for s in s_den.flatten()],
                                   dtype=torch.int64, device=x.device).reshape(1, -1, 1)
                emin = self.emin.to(torch.int64).reshape(1, -1, 1)
                e = torch.clamp(off + log2_round_torch(den_int), emin, emin + 15)
                den_hat = torch.exp2((e - off).double()) * s_den
                out = torch.where((den_int > 0).unsqueeze(-2),
                                  num / den_hat.to(x.dtype).unsqueeze(-2), torch.zeros_like(num))
        env[self.output] = g.act_out(self.output, out.reshape(b, -1, h, w))

    def finalize(self, g, *, bits=8):
        """Per-head scales of S and ksum from the calibration maxima."""
        self.s_S = torch.clamp(self.S_max, min=1e-9) / 127.0
        self.s_ks = torch.clamp(self.ks_max, min=1e-9) / 255.0
        # the largest real divisor's exponent sets the top of the 4-bit window
        top = torch.ceil(torch.log2(torch.clamp(self.den_max, min=1e-12)))
        self.emin = torch.tensor([choose_emin(int(t)) for t in top], dtype=torch.float64)
        self.s_den = torch.clamp(self.den_max, min=1e-12) / 255.0    # uniform 8-bit baseline


# ------------------------------------------------------------------------------------------------
# the graph
# ------------------------------------------------------------------------------------------------

class QGraph(nn.Module):
    """A lowered, quantizable EfficientViT (see module docstring)."""

    def __init__(self, nodes, tensors, blocks, output, meta):
        super().__init__()
        self.nodes = nn.ModuleList(nodes)
        self.tensors: dict[str, TensorQ] = tensors
        self.blocks = blocks               # [(name, start, end)] node index ranges
        self.output_name = output
        self.meta = dict(meta)
        self.act_q = nn.ModuleDict()
        self.cfg = QConfig()
        self.quant_w = self.quant_a = False
        self.observing = False
        self.observers = {}
        self._scale_cache = None
        #: fake-quant mode computes the deployed integer values (see :meth:`exact_active`)
        self.exact = True
        self._deploy = None
        #: float-scale forward (``exact = False``): which :data:`ALIGN_KINDS` take the deployed
        #: arithmetic's values (see :meth:`align_active`); empty: the plain float-scale forward
        self.align = frozenset()
        self._shapes = None

    # -- deploy-exact fake quant ------------------------------------------------------------------
    def exact_active(self) -> bool:
        """Is the fake-quant forward *deploy-exact*? True in ``fake`` mode when the model can be
        exported (activations quantized, log2 divisor) and :attr:`exact` is set (the default).

        Deploy-exact fake quant: every node's forward *value* is the deployed integer model's
        (the exported IntProgram's integers, computed by :func:`quant.export.run_node` with
        :mod:`sim.numerics`, times the tensor's real scale, float64), its *gradient* the
        float-scale fake-quant node's (straight-through: ``y = y_int + (y_f - y_f.detach())``,
        ``y_f`` the float-scale fake-quant output evaluated at the same, exact, inputs). So the
        model one trains, evaluates and reconstructs is the one that is deployed, bit for bit.
        AdaRound weights still soft contribute their hard decisions (``V >= 0``) to the value and
        their soft form to the gradient. ``exact = False`` gives the float-scale fake quant
        (float requant scales, float bias, no 16-bit Hardswish intermediate), which the Table V
        ablation uses for every row (its other divisor modes have no integer form)."""
        return bool(self.exact and self.quant_w and self.quant_a and self.cfg.act_quant
                    and self.cfg.attention == "log2" and len(self.act_q) > 0
                    and not self.observing)

    def align_active(self) -> bool:
        """Is the float-scale forward *aligned*? True in ``fake`` mode with :attr:`align` set when
        the deploy-exact forward is not active and the tensors have integer forms (activations
        quantized, symmetric observer).

        Aligned float-scale fake quant: the nodes whose op is in :attr:`align` compute their
        *value* in the deployed integer arithmetic with the graph's **current** scales and
        weights (:func:`quant.export.run_node_current`: each node's integer parameters from
        :func:`quant.export.export_node`, nothing cached, so steps learnt by LSQ are picked up at
        once; the input quantization in float64), their gradient straight through the plain
        float-scale node at the same inputs (as the deploy-exact forward). The other nodes (a
        uniform or float divisor, an op not in :attr:`align`) run the plain float-scale node.
        With ``align = ALIGN_KINDS`` and the log2 divisor every value is the integer model's:
        the plain float-scale forward's disagreement with it (sub-LSB differences that chained
        rounding amplifies, docs/quant.md) is gone; with a subset it measures which nodes'
        differences matter. AdaRound weights still soft contribute their hard decisions to the
        value. Unlike the deploy-exact forward it needs no exportable graph: the ablation's
        float / uniform divisor rows can be aligned everywhere but in the attention."""
        if not (self.align and not self.exact_active() and self.quant_w and self.quant_a
                and self.cfg.act_quant and len(self.act_q) > 0 and not self.observing):
            return False
        from .observers import ASYMMETRIC
        return self.cfg.observer not in ASYMMETRIC

    def _aligned_op(self, n) -> bool:
        if n.op == "linear_attention" and self.cfg.attention != "log2":
            return False
        if n.op == "conv" and n.act == "hswish":
            return "hswish" in self.align
        return n.op in self.align

    def _codes(self, name, x, info=None):
        """Stored integers ``round(x / s) - o`` of tensor ``name`` with the current scale (or
        ``info``'s) and filter-wise offset."""
        from .export import _offset_of
        s = (info.channel_scale() if info is not None
             else self.scale_vector(name).numpy())
        shape = (1, -1) + (1,) * (x.dim() - 2)
        st = torch.as_tensor(s, dtype=torch.float64, device=x.device).reshape(shape)
        q = torch.floor(x.detach().double() / st + 0.5).cpu().numpy().astype("int64")
        o = _offset_of(self, name) if info is None or info.bits <= 16 else None
        return q if o is None else q - o.reshape(shape)

    def _fwd_aligned(self, n, env, infos):
        from .export import run_node_current
        if n.op == "concat":
            env[n.output] = torch.cat([env[t].double() for t in n.inputs], dim=1)
            return
        if self._shapes is None:
            self._shapes = self.shapes()
        ints = {t: self._codes(t, env[t], infos.get(t)) for t in n.reads()}
        y, info = run_node_current(self, n, ints, self._shapes, infos)
        infos[n.output] = info
        dev = env[n.inputs[0]].device
        from .export import _offset_of
        o = _offset_of(self, n.output) if info.bits <= 16 else None
        shape = (1, -1) + (1,) * (y.ndim - 2)
        yr = torch.as_tensor(y if o is None else y + o.reshape(shape), dtype=torch.float64, device=dev)
        yr = yr * torch.as_tensor(info.channel_scale(), dtype=torch.float64, device=dev).reshape(shape)
        if torch.is_grad_enabled():
            env_f = {t: env[t].float() for t in n.reads()}
            n.fwd(env_f, self)
            yf = env_f[n.output].double()
            yr = yr + (yf - yf.detach())
        env[n.output] = yr

    def deploy_program(self):
        """The IntProgram the deploy-exact mode executes (exported once, cached; call
        :meth:`invalidate_deploy` after changing weights, scales or rounding decisions)."""
        if self._deploy is None:
            from .export import export
            prog = export(self, check=False)
            self._deploy = (prog, {n.name: n for n in prog.nodes})
        return self._deploy[0]

    def invalidate_deploy(self):
        self._deploy = None
        return self

    def refresh_deploy_weights(self, node_range):
        """Update the cached deploy program after only the *weight rounding* of the nodes in
        ``node_range`` changed (hardening or reverting AdaRound with every scale unchanged):
        re-exports those nodes instead of the whole graph (:func:`quant.export.refresh_weights`).
        Without a cached program this does nothing (the next use exports in full)."""
        if self._deploy is not None:
            from .export import refresh_weights
            for node in refresh_weights(self, self._deploy[0], node_range):
                self._deploy[1][node.name] = node
        return self

    def _scale_offset(self, name, ndim, device):
        prog = self.deploy_program()
        s = torch.as_tensor(prog.tensors[name].channel_scale(), dtype=torch.float64, device=device)
        o = prog.meta["input_offsets"].get(name)
        o = torch.zeros_like(s) if o is None else torch.as_tensor(o, dtype=torch.float64,
                                                                   device=device)
        shape = (1, -1) + (1,) * (ndim - 2)
        return s.reshape(shape), o.reshape(shape)

    def to_int(self, name, x: torch.Tensor):
        """Real values of a deploy-exact tensor -> its stored integers (int64 numpy):
        ``round(x / s) - o`` (exact: ``x`` is ``s (int + o)`` in float64)."""
        s, o = self._scale_offset(name, x.dim(), x.device)
        q = torch.floor(x.detach().double() / s + 0.5) - o
        return q.cpu().numpy().astype("int64")

    def to_real(self, name, q, device="cpu") -> torch.Tensor:
        """Stored integers of tensor ``name`` -> real values ``s (int + o)`` (float64)."""
        q = torch.as_tensor(q, device=device).double()
        s, o = self._scale_offset(name, q.dim(), device)
        return (q + o) * s

    def quant_input(self, x: torch.Tensor) -> torch.Tensor:
        """The quantized network input (deploy-exact: the exported input quantization)."""
        if self.exact_active():
            from .export import quantize_images
            return self.to_real("input", quantize_images(self.deploy_program(), x.detach().cpu()),
                                x.device)
        if self.align_active() and "input" in self.align:
            return self.act_out("input", x.double())
        return self.act_out("input", x)

    def _fwd_exact(self, n, env):
        from .export import run_node
        if n.op == "concat":                  # the concat of exact values is exact
            n.fwd(env, self)
            return
        self.deploy_program()
        node = self._deploy[1][n.name]
        ints = {t: self.to_int(t, env[t]) for t in n.reads()}
        dev = env[n.inputs[0]].device
        y = self.to_real(n.output, run_node(self._deploy[0], node, ints), dev)
        if torch.is_grad_enabled():
            env_f = {t: env[t].float() for t in n.reads()}
            n.fwd(env_f, self)
            yf = env_f[n.output].double()
            y = y + (yf - yf.detach())
        env[n.output] = y

    # -- running -------------------------------------------------------------------------------
    def act_out(self, name, y):
        if self.observing and name in self.observers:
            self.observers[name].update(y)
        if self.quant_a and _key(name) in self.act_q:
            y = self.act_q[_key(name)](y)
        return y

    def run_nodes(self, env, start=0, end=None):
        if self.exact_active():
            for n in self.nodes[start:end]:
                self._fwd_exact(n, env)
            return env
        if self.align_active():
            infos = {}
            for n in self.nodes[start:end]:
                # the host LayerNorm reads raw int32 accumulators: aligned only after an
                # aligned linear (whose output scale is known), else plain
                if n.op == "concat" or (self._aligned_op(n) and (
                        n.op != "layernorm" or n.inputs[0] in infos)):
                    self._fwd_aligned(n, env, infos)
                else:
                    env_f = {t: env[t].float() for t in n.reads()}
                    n.fwd(env_f, self)
                    env[n.output] = env_f[n.output]
            return env
        for n in self.nodes[start:end]:
            n.fwd(env, self)
        return env

    def forward(self, x):
        env = {"input": self.quant_input(x)}
        self.run_nodes(env)
        return env[self.output_name]

    def set_mode(self, mode: str):
        """``float``, ``fake`` (weights and activations as configured) or ``weights`` (only W)."""
        if mode == "float":
            self.quant_w = self.quant_a = False
        elif mode == "fake":
            self.quant_w, self.quant_a = True, self.cfg.act_quant
        elif mode == "weights":
            self.quant_w, self.quant_a = True, False
        else:
            raise ValueError(f"mode must be float, fake or weights, got {mode!r}")
        return self

    def scale_vector(self, name) -> torch.Tensor:
        """Per-channel real scale of a quantized tensor (concat: its inputs' scales)."""
        n = self.producer(name)
        if n is not None and n.op == "concat":
            return torch.cat([self.scale_vector(t) for t in n.inputs])
        q = self.act_q[_key(name)]
        s = q.effective_scale().detach().double()
        return s.expand(self.tensors[name].channels).clone() if s.dim() == 0 else s.clone()

    def producer(self, name):
        for n in self.nodes:
            if n.output == name:
                return n
        return None

    # -- preparation -------------------------------------------------------------------------------
    def is_stem_head(self, name: str) -> bool:
        return name == "input" or name.startswith("head.") or name == self.meta.get("stem")

    def prepare(self, cfg: QConfig):
        """Set the configuration: bit widths, which tensors migrate/shift, fresh observers."""
        self.cfg = cfg
        sh = cfg.stem_head_bits
        for name, t in self.tensors.items():
            t.bits = sh if (sh is not None and self.is_stem_head(name)) else cfg.a_bits
            t.migrate = cfg.migration and t.role == "dw_in" and self._migratable(name)
            t.shift = cfg.shifting and t.role == "pw2_in"
        for n in self.nodes:
            if isinstance(n, (QConv, QLinear)):
                n.w_bits = sh if (sh is not None and self.is_stem_head(n.name)) else cfg.w_bits
                n.wq = WeightQuantizer(n.weight, n.w_bits, cfg.channel_wise)
        self.act_q = nn.ModuleDict()
        self._deploy = None
        return self

    def _migratable(self, name):
        """Migration needs every consumer to be a depthwise conv or a residual add."""
        for n in self.nodes:
            if name in n.inputs and not (isinstance(n, QConv) and n.depthwise):
                return False
        return True

    def quantized_tensors(self):
        """Tensors that get an activation quantizer: every produced tensor except concat
        outputs (their inputs are quantized) and the raw linear outputs (int32 accumulators)."""
        out = ["input"]
        for n in self.nodes:
            if n.op in ("conv", "global_avgpool", "linear_attention", "layernorm"):
                out.append(n.output)
        return out

    @torch.no_grad()
    def calibrate(self, batches, *, progress=None):
        """Two passes over the calibration batches (float model): per-channel statistics (for
        the migration factors and shift centres), then the observers on the transformed
        tensors; finally the LSQ quantizers are initialised from the observers."""
        cfg = self.cfg
        names = self.quantized_tensors()
        mk = lambda n: make_observer(cfg.observer, self.tensors[n].bits, self.tensors[n].signed)  # noqa: E731
        self.set_mode("float")
        self._deploy = None
        self.observers = {n: mk(n) for n in names}
        need_pass1 = any(self.tensors[n].migrate or self.tensors[n].shift for n in names)
        for a in self._attn():
            for b in ("S_max", "ks_max", "den_max"):
                getattr(a, b).zero_()
        for n in self.nodes:
            if isinstance(n, QConv):
                n.pre_max.zero_()
        self.observing = True
        try:
            if need_pass1:
                for x in _it(batches, progress, "calibration (channel stats)"):
                    self(x)
                stats = {n: (o.ch_min.clone(), o.ch_max.clone()) for n, o in self.observers.items()}
                self.observers = {n: mk(n) for n in names}
                for n in names:
                    t, o = self.tensors[n], self.observers[n]
                    lo, hi = stats[n]
                    if t.migrate:
                        o.channel_factor = migration_factors(torch.maximum(lo.abs(), hi.abs())).float()
                    if t.shift:
                        o.center = shift_centers(lo, hi).float()
            for x in _it(batches, progress, "calibration (observers)"):
                self(x)
        finally:
            self.observing = False
        self.act_q = nn.ModuleDict()
        for n in names:
            t, o = self.tensors[n], self.observers[n]
            self.act_q[_key(n)] = LSQActQuantizer(o.scale(), t.bits, t.signed,
                                                  channel_factor=o.channel_factor,
                                                  center=o.center, enabled=cfg.act_quant)
        from .export import attention_fake_emin
        for a in self._attn():
            a.finalize(self)
            # the exported emin (clipped to legal output shifts) is the one the fake model uses
            a.emin = attention_fake_emin(self, a)
        self._deploy = None
        return self

    def _attn(self):
        return [n for n in self.nodes if isinstance(n, QAttention)]

    # -- AdaRound ------------------------------------------------------------------------------
    def use_adaround(self, node_range=None):
        for n in list(self.nodes)[slice(*(node_range or (None, None)))]:
            if isinstance(n, (QConv, QLinear)) and not isinstance(n.wq, AdaRoundWeightQuantizer):
                n.wq = AdaRoundWeightQuantizer(n.weight, n.wq.scale, n.w_bits)

    def harden_adaround(self, node_range=None, *, scales_unchanged: bool = False):
        """Freeze every AdaRound quantizer (in ``node_range``) to its hard decisions, stored as
        int8 codes (:class:`FixedWeightQuantizer`). ``scales_unchanged``: no activation step
        changed since the deploy program was cached, so only the range's weight nodes are
        re-exported (:meth:`refresh_deploy_weights`) instead of invalidating the cache."""
        for n in list(self.nodes)[slice(*(node_range or (None, None)))]:
            if isinstance(getattr(n, "wq", None), AdaRoundWeightQuantizer):
                n.wq = FixedWeightQuantizer.from_adaround(n.wq).to(n.weight.device)
        if scales_unchanged and node_range is not None:
            self.refresh_deploy_weights(node_range)
        else:
            self._deploy = None

    # -- integer-exact mode ----------------------------------------------------------------------
    def forward_int(self, x_int, prog=None):
        """Run the integer graph (exported parameters) on integer images ``(B, C, H, W)``;
        returns the int64 logits ``(B, classes)`` as a numpy array. See :mod:`quant.export`."""
        from .export import export, run_int
        prog = prog if prog is not None else export(self)
        return run_int(prog, x_int)

    @torch.no_grad()
    def shapes(self) -> dict:
        """Batch-free shapes of every tensor at the graph's resolution (one float forward)."""
        r = int(self.meta["resolution"])
        qa, qw, ob = self.quant_a, self.quant_w, self.observing
        self.quant_a = self.quant_w = self.observing = False
        try:
            dev = next(iter(self.buffers())).device
            env = {"input": torch.zeros(1, self.tensors["input"].channels, r, r, device=dev)}
            self.run_nodes(env)
        finally:
            self.quant_a, self.quant_w, self.observing = qa, qw, ob
        return {k: tuple(v.shape[1:]) for k, v in env.items()}

    def summary(self) -> str:
        lines = [f"QGraph {self.meta.get('model', '')}: {len(self.nodes)} nodes, "
                 f"{len(self.blocks)} reconstruction blocks"]
        for n in self.nodes:
            t = self.tensors.get(n.output)
            tag = "" if t is None else (" migrate" if t.migrate else "") + (" shift" if t.shift else "")
            lines.append(f"  {n.name:58s} {n.op:17s}{tag}")
        return "\n".join(lines)


def _it(batches, progress, desc):
    if progress:
        from tqdm import tqdm
        return tqdm(batches, desc=desc, unit="batch", leave=False)
    return batches


# ------------------------------------------------------------------------------------------------
# lowering
# ------------------------------------------------------------------------------------------------

def _act_name(act) -> str:
    if act is None:
        return "none"
    if isinstance(act, nn.Hardswish):
        return "hswish"
    if isinstance(act, nn.ReLU):
        return "relu"
    raise ValueError(f"activation {type(act).__name__} is not supported by the integer graph"
                     " (hswish, relu or none)")


class _Lowerer:
    def __init__(self):
        self.nodes, self.tensors, self.blocks = [], {"input": None}, []

    def _add(self, node, channels, role=""):
        self.nodes.append(node)
        if node.op != "linear":
            self.tensors[node.output] = TensorQ(node.output, channels, role=role)
        else:
            self.tensors[node.output] = TensorQ(node.output, channels, bits=32, role="raw")
        for t in node.reads():
            if self.tensors.get(t) is not None:
                self.tensors[t].consumers.append(node.name)
        return node.output

    def conv_layer(self, name, layer, x, residual=None, role=""):
        if getattr(layer, "norm", None) is not None:
            raise ValueError(f"{name}: fold BatchNorm first (quant.fold.fold_bn)")
        conv = layer.conv if hasattr(layer, "conv") else layer
        act = _act_name(getattr(layer, "act", None))
        return self._add(QConv(name, x, name, conv, act, residual), conv.out_channels, role)

    def block(self, name, fn):
        start = len(self.nodes)
        out = fn()
        self.blocks.append((name, start, len(self.nodes)))
        return out

    def residual_block(self, name, rb, x):
        from .models.efficientvit import DSConv, LiteMLA, MBConv
        main, res = rb.main, (x if rb.shortcut is not None else None)
        p = f"{name}.main"
        if isinstance(main, DSConv):
            self._role(x, "dw_in")
            y = self.conv_layer(f"{p}.depth_conv", main.depth_conv, x)
            self._role(y, "pw2_in")
            return self.conv_layer(f"{p}.point_conv", main.point_conv, y, res)
        if isinstance(main, MBConv):
            y = self.conv_layer(f"{p}.inverted_conv", main.inverted_conv, x, role="dw_in")
            y = self.conv_layer(f"{p}.depth_conv", main.depth_conv, y, role="pw2_in")
            return self.conv_layer(f"{p}.point_conv", main.point_conv, y, res)
        if isinstance(main, LiteMLA):
            qkv = self.conv_layer(f"{p}.qkv", main.qkv, x)
            outs = [qkv]
            for i, ag in enumerate(main.aggreg):
                a = self._add(QConv(f"{p}.aggreg.{i}.0", qkv, f"{p}.aggreg.{i}.0", ag[0]),
                              ag[0].out_channels)
                a = self._add(QConv(f"{p}.aggreg.{i}.1", a, f"{p}.aggreg.{i}.1", ag[1]),
                              ag[1].out_channels)
                outs.append(a)
            cat = self._add(QConcat(f"{p}.multi_scale_qkv", outs, f"{p}.multi_scale_qkv"),
                            sum(self.tensors[o].channels for o in outs))
            heads = self.tensors[cat].channels // (3 * main.dim)
            att = self._add(QAttention(f"{p}.relu_linear_att", cat, f"{p}.relu_linear_att",
                                       main.dim, heads, main.eps), heads * main.dim)
            return self.conv_layer(f"{p}.proj", main.proj, att, res)
        raise ValueError(f"{name}: unsupported block {type(main).__name__}")

    def _role(self, t, role):
        if self.tensors.get(t) is not None:
            self.tensors[t].role = role


def lower(model: nn.Module, *, resolution: int | None = None) -> QGraph:
    """Lower a BN-folded EfficientViT classifier (:func:`quant.fold.fold_bn`) to a :class:`QGraph`.

    Blocks for reconstruction (BRECQ): the stem conv, every residual block (DSConv / MBConv /
    LiteMLA), and the head.
    """
    from .models.efficientvit import EfficientViTBlock, ResidualBlock
    L = _Lowerer()
    bb = model.backbone
    x = "input"
    ops = list(bb.input_stem.op_list)
    stem = "backbone.input_stem.op_list.0"
    x = L.block(stem, lambda: L.conv_layer(stem, ops[0], "input"))
    for i, op in enumerate(ops[1:], 1):
        nm = f"backbone.input_stem.op_list.{i}"
        x = L.block(nm, lambda nm=nm, op=op, x=x: L.residual_block(nm, op, x))
    for s, stage in enumerate(bb.stages):
        for i, op in enumerate(stage.op_list):
            nm = f"backbone.stages.{s}.op_list.{i}"
            if isinstance(op, EfficientViTBlock):
                x = L.block(f"{nm}.context_module", lambda nm=nm, op=op, x=x:
                            L.residual_block(f"{nm}.context_module", op.context_module, x))
                x = L.block(f"{nm}.local_module", lambda nm=nm, op=op, x=x:
                            L.residual_block(f"{nm}.local_module", op.local_module, x))
            elif isinstance(op, ResidualBlock):
                x = L.block(nm, lambda nm=nm, op=op, x=x: L.residual_block(nm, op, x))
            else:
                raise ValueError(f"{nm}: unsupported op {type(op).__name__}")
    h = list(model.head.op_list)

    def head(x=x):
        x = L.conv_layer("head.op_list.0", h[0], x)
        x = L._add(QPool("head.op_list.1", [x], "head.op_list.1"), L.tensors[x].channels)
        lin = h[2]
        x = L._add(QLinear("head.op_list.2.linear", x, "head.op_list.2.linear", lin.linear),
                   lin.linear.out_features)
        x = L._add(QLayerNorm("head.op_list.2.norm", x, "head.op_list.2.norm", lin.norm,
                              _act_name(lin.act)), lin.linear.out_features)
        return L._add(QLinear("head.op_list.3.linear", x, "head.op_list.3.linear", h[3].linear),
                      h[3].linear.out_features)
    out = L.block("head", head)
    L.tensors["input"] = TensorQ("input", ops[0].conv.in_channels, role="input")
    res = resolution or getattr(model, "resolution", 224)
    meta = dict(model=getattr(model, "variant", ""), resolution=int(res), stem=stem,
                num_classes=L.tensors[out].channels)
    return QGraph(L.nodes, L.tensors, L.blocks, out, meta)


def clone(g: QGraph) -> QGraph:
    """A deep copy (quantizers, observers and all)."""
    return copy.deepcopy(g)


def sqnr_db(ref: torch.Tensor, test: torch.Tensor) -> float:
    """``10 log10(|ref|^2 / |ref - test|^2)`` in dB; NaN if ``test`` has non-finite values."""
    ref, test = ref.double(), test.double()
    if not torch.isfinite(test).all():
        return float("nan")
    err = float(((ref - test) ** 2).sum())
    sig = float((ref ** 2).sum())
    if err == 0:
        return float("inf")
    return 10 * math.log10(sig / err)
