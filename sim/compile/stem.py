"""Dense stem pass: a generic ``k x k`` conv on the network input run as a pointwise conv over
``C*k*k`` channels of an input the host writes already unfolded (the ``im2col`` input layout of
:mod:`sim.compile.layout`; docs/compiler.md "Dense stem", issue #16).

The generic conv path steps tap-major: ``k*k`` steps per output pixel, each using ``C`` of the
engine's input lanes (3 of ``T = 8`` for an RGB stem). Unfolded, the ``C*k*k`` products of one
output pixel are input channels of one pointwise conv, ``ceil(C*k*k / T)`` steps per pixel.
The cost moves to the host, which already quantises the image: the unfold (numpy) and
``k*k / s^2`` times the input bytes in DRAM.

:func:`unfold_stem` rewrites the program the compiler emits; the Binary keeps the original
program (what :mod:`sim.golden` runs and what callers pass images for) and records the
geometry in the input tensor's symbol, so that :meth:`Binary.write_input` unfolds the image
(:func:`restore_program`). :func:`check_input_symbol` is what :meth:`Binary.load` checks.
"""

from __future__ import annotations

import numpy as np

from ..intprogram import IntProgram, Node, TensorInfo
from .layout import act_elems, check_layout, im2col_shape

__all__ = ["STEMS", "IM2COL_MAX_CHANNELS", "STEM_BLOCK_MAX", "stem_node", "unfold_stem",
           "restore_program", "check_input_symbol", "stem_program", "choose_stem"]

#: the values of ``compile(..., stem=)``: ``auto`` chooses between the other two by the cycle
#: model (:func:`choose_stem`)
STEMS = ("auto", "im2col", "taps")
#: the largest ``C*k*k`` unfolded (the input grows ``k*k/s^2`` times in DRAM; an RGB 3x3 stem
#: has 27)
IM2COL_MAX_CHANNELS = 64


def stem_node(prog: IntProgram) -> Node | None:
    """The program's first node if it is a stem the pass unfolds: a dense (one group) generic
    ``k x k`` conv whose only input is the graph input, which nothing else reads (no other
    node, no residual, not an output), with ``C*k*k <= IM2COL_MAX_CHANNELS``; else ``None``."""
    if len(prog.inputs) != 1 or not prog.nodes:
        return None
    x, n = prog.inputs[0], prog.nodes[0]
    if n.op != "conv" or n.kind != "generic" or int(n.attrs["groups"]) != 1 \
            or n.inputs != [x] or x in prog.outputs:
        return None
    for m in prog.nodes[1:]:
        if x in m.inputs or (m.epilogue is not None and m.epilogue.residual == x):
            return None
    if n.epilogue is not None and n.epilogue.residual == x:
        return None
    t = prog.tensors[x]
    k = int(n.attrs["kernel"])
    if len(t.shape) != 3 or t.shape[0] * k * k > IM2COL_MAX_CHANNELS:
        return None
    if int(n.attrs["padding"]) >= k:
        return None
    return n


def unfold_stem(prog: IntProgram):
    """``(program, geometry)``: ``prog`` with its stem (:func:`stem_node`) a pointwise conv
    over ``C*k*k`` channels of an input tensor of the same name, shape ``(C*k*k, Ho, Wo)``
    (weights ``(Cout, C, k, k)`` reshaped to ``(Cout, C*k*k, 1, 1)``: the channel order of
    :func:`sim.compile.layout.im2col`), and ``{kernel, stride, padding}``; ``None`` when the
    program has no such stem. ``prog`` is not modified."""
    n = stem_node(prog)
    if n is None:
        return None
    x = prog.inputs[0]
    t = prog.tensors[x]
    geom = {a: int(n.attrs[a]) for a in ("kernel", "stride", "padding")}
    k2 = geom["kernel"] ** 2
    shape = im2col_shape(t.shape, **geom)
    scale = t.scale if t.scale.ndim == 0 else np.repeat(t.scale, k2)
    tensors = dict(prog.tensors)
    tensors[x] = TensorInfo(x, shape, bits=t.bits, signed=t.signed, scale=scale)
    w = np.asarray(n.params["weight"])
    pw = Node(n.name, n.op, list(n.inputs), n.output,
              attrs=dict(n.attrs, kernel=1, stride=1, padding=0),
              params=dict(n.params, weight=w.reshape(w.shape[0], -1, 1, 1)),
              epilogue=n.epilogue)
    out = IntProgram(tensors, [pw] + list(prog.nodes[1:]), list(prog.inputs),
                     list(prog.outputs), dict(prog.meta))
    return out, geom


#: the most nodes :func:`stem_program` takes (the stem and the block reading its output)
STEM_BLOCK_MAX = 4


def stem_program(prog: IntProgram) -> IntProgram:
    """``prog``'s stem block: its first node and the nodes after it up to the last one that
    reads the stem's output (EfficientViT: the stem and the DSConv after it, whose pointwise
    conv adds the stem's output as its residual, so that the compiler may fuse all three:
    :func:`sim.compile.fusion.find_chains`), when those are at most :data:`STEM_BLOCK_MAX`
    nodes reading nothing but the graph input and each other's outputs; else the first node
    alone. The last node's output is the program's output."""
    n0 = prog.nodes[0]

    def reads(m):
        return list(m.inputs) + ([m.epilogue.residual] if m.epilogue is not None
                                 and m.epilogue.residual else [])
    last = max(i for i, m in enumerate(prog.nodes) if i == 0 or n0.output in reads(m))
    nodes = list(prog.nodes[:last + 1])
    have = set(prog.inputs)
    for m in nodes:
        if not set(reads(m)) <= have:
            nodes = nodes[:1]
            break
        have.add(m.output)
    if len(nodes) > STEM_BLOCK_MAX:
        nodes = nodes[:1]
    keep = set(prog.inputs) | {m.output for m in nodes}
    return IntProgram({k: v for k, v in prog.tensors.items() if k in keep}, nodes,
                      list(prog.inputs), [nodes[-1].output], dict(prog.meta))


def choose_stem(prog: IntProgram, cfg, *, layout: str = "planar") -> tuple:
    """``(stem, {mapping: cycles})``: ``"im2col"`` if ``prog`` has a stem the pass unfolds
    (:func:`stem_node`) and its stem block (:func:`stem_program`: the stem and the layers that
    read its output, which the unfolded stem may be fused with), compiled both ways for
    ``cfg``, takes fewer cycles in :func:`sim.perf.simulate` with the unfolded input, else
    ``"taps"``. The unfolded input is ``k*k/s^2`` times the image's bytes: at a low DRAM rate
    or with few output channels loading it may take longer than the taps it saves
    (docs/perf.md). ``layout``: the activation layout both are compiled in (``blocked``: the
    unfolded input padded to whole blocks, docs/global-buffers.md section 5)."""
    if stem_node(prog) is None:
        return "taps", {}
    from ..perf import simulate
    from .common import CompileError
    from .pipeline import compile
    one = stem_program(prog)
    cyc = {}
    for s in ("taps", "im2col"):
        try:
            cyc[s] = simulate(compile(one, cfg, stem=s, layout=layout)).cycles
        except CompileError:        # (e.g. a buffer too small for one way): not that one
            cyc[s] = None
    im2col = cyc["im2col"] is not None and (cyc["taps"] is None or cyc["im2col"] < cyc["taps"])
    return ("im2col" if im2col else "taps"), cyc


def restore_program(binary, prog: IntProgram, geom: dict):
    """Give ``binary`` (compiled from ``unfold_stem(prog)``) back the original ``prog`` and
    record the ``im2col`` layout, with ``geom``, in its input tensor's symbol (its bytes stay
    the unfolded tensor's; ``block``: the unfolded tensor's, 1 planar or B blocked)."""
    x = prog.inputs[0]
    sym = binary.symbols[f"tensor:{x}"]
    block = int(sym.get("block", 1)) if sym.get("layout") == "blocked" else 1
    sym.update(shape=list(prog.tensors[x].shape), layout="im2col", block=block, **geom)
    binary.prog = prog
    binary.layers[0]["stem"] = "im2col"
    return binary


def check_input_symbol(prog: IntProgram, name: str, sym: dict):
    """Raise ValueError unless tensor symbol ``sym`` of ``name`` with the ``im2col`` layout is
    consistent with ``prog``: the graph input, read by the program's first node, a generic
    conv of the symbol's ``kernel``/``stride``/``padding``, and ``nbytes`` the unfolded
    image's (blocked, ``block`` > 1: its channels padded to whole blocks)."""
    geom = {a: sym.get(a) for a in ("kernel", "stride", "padding")}
    check_layout("im2col", int(sym.get("block", 1)), **geom)
    if name not in prog.inputs:
        raise ValueError(f"tensor {name!r} has the im2col layout but is not the graph input")
    n = stem_node(prog)
    if n is None or n.inputs != [name]:
        raise ValueError(f"tensor {name!r} has the im2col layout but the program's first node "
                         "is not a stem conv on it")
    want = {a: int(n.attrs[a]) for a in geom}
    if geom != want:
        raise ValueError(f"tensor {name!r}: im2col geometry {geom} is not the stem's {want}")
    if list(sym.get("shape", [])) != list(prog.tensors[name].shape):
        raise ValueError(f"tensor {name!r}: symbol shape {sym.get('shape')} is not the "
                         f"input's {list(prog.tensors[name].shape)}")
    cc, ho, wo = im2col_shape(prog.tensors[name].shape, **geom)
    block = int(sym.get("block", 1))
    nb = act_elems(cc, ho * wo, layout="blocked" if block > 1 else "planar", block=block)
    if int(sym["nbytes"]) != nb:
        raise ValueError(f"tensor {name!r}: {sym['nbytes']} bytes, the im2col input has {nb}")
