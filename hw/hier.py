"""Hierarchical Verilog: a part repeated L times converted **once** and instantiated L times.

Amaranth's ``verilog.convert`` writes every submodule out in full, so the ``paper``
accelerator's 16 identical :class:`hw.core.Core`\\ s were 16 copies of the same Verilog (146 MB,
~10 CPU minutes, 8 GB; docs/board.md). Here a component that declares ``modules`` (a dict
``{Verilog module name: wiring.Component}``, e.g. :class:`hw.system.Accelerator` built with
``hierarchy=True``) elaborates :class:`ModuleInstance`\\ s in place of those parts: each one an
``amaranth.hdl.Instance`` of the named module whose ports are the part's ``wiring`` signature
flattened by name exactly as ``verilog.convert`` names a component's ports (``path`` joined
with ``__``: ``mat_instr__payload``, ``a_load__data``, ...), plus ``clk`` and ``rst``.
:func:`convert` converts the top and each module once and returns one Verilog text.

Reset: ``ResetInserter`` does not reach into an ``Instance``, so a part that its parent resets
with an extra signal (the accelerator's per-run reset) gets it as ``ModuleInstance(reset=...)``
and its ``rst`` port is ``ResetSignal() | reset``: the same synchronous reset of every
non-``reset_less`` signal that ``ResetInserter`` adds in the flat design.

A :class:`ModuleInstance` cannot run in ``amaranth.sim`` (it is a black box there); the flat
design (``hierarchy=False``) is for that.
"""

from __future__ import annotations

import re

from amaranth import ClockSignal, Module, ResetSignal, Value
from amaranth.hdl import Instance
from amaranth.lib import wiring

__all__ = ["ModuleInstance", "convert", "convert_modules", "compact_zero_init", "blackbox",
           "module_ports", "port_map",
           "output_bits", "MAX_INSTANCE_OUTPUT_BITS", "SplitBlackbox"]


def port_map(component) -> dict:
    """``{port name: (value, flow)}`` of ``component``'s signature, named as
    ``amaranth.back.verilog.convert`` names the ports of a component converted alone."""
    ports = {}
    for path, member, value in component.signature.flatten(component):
        ports["__".join(map(str, path))] = (Value.cast(value), member.flow)
    return ports


#: Amaranth numbers an Instance's output bits with 16 bits (``hdl._nir.Net``): a part whose
#: outputs are wider cannot be an instance (e.g. the behavioural global buffers at ``paper``,
#: 103,556 bits towards 16 cores)
MAX_INSTANCE_OUTPUT_BITS = 1 << 16


def output_bits(component) -> int:
    """The total width of ``component``'s output ports."""
    return sum(len(v) for v, flow in port_map(component).values() if flow == wiring.Out)


def _check_module_params(part, module, clocked) -> None:
    """The parameters :class:`ModuleInstance` and :class:`SplitBlackbox` share."""
    if not isinstance(part, wiring.Component):
        raise TypeError(f"part must be a wiring.Component, got {part!r}")
    if not isinstance(module, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", module):
        raise ValueError(f"module must be a Verilog identifier, got {module!r}")
    if not isinstance(clocked, bool):
        raise TypeError(f"clocked must be a bool, got {clocked!r}")


class ModuleInstance(wiring.Component):
    """An instance of Verilog module ``module`` converted from ``part`` (a ``wiring.Component``).

    Parameters (keyword-only)
    -------------------------
    part : wiring.Component
        The component whose Verilog is module ``module`` (converted once, by :func:`convert`);
        this instance has its signature, and any other attribute is read from ``part``
        (e.g. the core's ``a_line``).
    module : str
        The Verilog module's name.
    reset : Value or None
        An extra synchronous reset (1 bit) or'ed into the module's ``rst``.
    clocked : bool
        Whether the module has ``clk`` / ``rst`` ports (:func:`convert` tells).

    Ports: those of ``part.signature`` (same names, widths and directions).
    """

    def __init__(self, *, part, module: str, reset=None, clocked: bool = True):
        _check_module_params(part, module, clocked)
        self.part = part
        self.module = module
        self.reset = None if reset is None else Value.cast(reset)
        if self.reset is not None and len(self.reset) != 1:
            raise ValueError(f"reset must be 1 bit wide, got {len(self.reset)} bits")
        self.clocked = clocked
        out_bits = output_bits(part)
        if out_bits > MAX_INSTANCE_OUTPUT_BITS:
            raise ValueError(f"module {module}: {out_bits} output bits, more than an Amaranth "
                             f"Instance takes ({MAX_INSTANCE_OUTPUT_BITS})")
        super().__init__(part.signature)

    def __getattr__(self, name):
        # only reached for attributes this instance lacks: the part's parameters
        part = self.__dict__.get("part")
        if part is None or name.startswith("_") or name in part.signature.members:
            raise AttributeError(name)      # the ports are this instance's own
        return getattr(part, name)

    def elaborate(self, platform):
        m = Module()
        kw = {}
        for name, (value, flow) in port_map(self).items():
            kw[("i_" if flow == wiring.In else "o_") + name] = value
        if self.clocked:
            rst = ResetSignal() if self.reset is None else ResetSignal() | self.reset
            kw.update(i_clk=ClockSignal(), i_rst=rst)
        m.submodules.u = Instance(self.module, **kw)
        return m


class SplitBlackbox(wiring.Component):
    """``part``'s ports and no logic, as black-box instances of modules ``{module}_0``,
    ``{module}_1``, ...: each takes a share of the ports (in signature order) with at most
    :data:`MAX_INSTANCE_OUTPUT_BITS` output bits, as many as an Amaranth ``Instance`` (or a
    top module's inputs) can have. What a synthesis of the parent alone reads in place of a
    part too wide for one :class:`ModuleInstance` (the behavioural global buffers at
    ``paper``); :meth:`stubs` gives the modules' black-box Verilog. Other attributes are read
    from ``part``.

    Parameters (keyword-only): ``part`` (wiring.Component), ``module`` (the modules' name
    prefix, a Verilog identifier), ``clocked`` (the modules get ``clk`` / ``rst``)."""

    def __init__(self, *, part, module: str, clocked: bool = True):
        _check_module_params(part, module, clocked)
        self.part, self.module, self.clocked = part, module, clocked
        part._MustUse__silence = True       # stands in for it: never elaborated
        groups, cur, bits = [], [], 0
        for name, (value, flow) in port_map(part).items():
            w = len(value) if flow == wiring.Out else 0
            if w > MAX_INSTANCE_OUTPUT_BITS:
                raise ValueError(f"port {name} of {module}: {w} output bits, more than an "
                                 f"Amaranth Instance takes ({MAX_INSTANCE_OUTPUT_BITS})")
            if cur and bits + w > MAX_INSTANCE_OUTPUT_BITS:
                groups.append(cur)
                cur, bits = [], 0
            cur.append(name)
            bits += w
        groups.append(cur)
        #: the port names of each module ``{module}_i``
        self.groups = groups
        super().__init__(part.signature)

    __getattr__ = ModuleInstance.__getattr__

    def stubs(self) -> str:
        """The black-box Verilog of modules ``{module}_0`` ... (see :func:`blackbox`)."""
        pm = port_map(self.part)
        return "".join(_stub(f"{self.module}_{i}", [(n, *pm[n]) for n in g], self.clocked)
                       for i, g in enumerate(self.groups))

    def elaborate(self, platform):
        m = Module()
        pm = port_map(self)
        for i, g in enumerate(self.groups):
            kw = {("i_" if pm[n][1] == wiring.In else "o_") + n: pm[n][0] for n in g}
            if self.clocked:
                kw.update(i_clk=ClockSignal(), i_rst=ResetSignal())
            m.submodules[f"part{i}"] = Instance(f"{self.module}_{i}", **kw)
        return m


_HEADER = re.compile(r"^module\s+(\S+?)\s*\((.*?)\);", re.S | re.M)


def module_ports(text: str, module: str) -> set[str]:
    """The port names in module ``module``'s header of Verilog ``text`` (Amaranth's output)."""
    for mod in _HEADER.finditer(text):
        if mod.group(1) == module:
            return {p.strip() for p in mod.group(2).split(",") if p.strip()}
    raise ValueError(f"module {module!r} not found in the Verilog")


def _check_ports(text: str, module: str, part) -> bool:
    """Every signature port of ``part`` is in module ``module``'s header; returns whether it
    has ``clk`` and ``rst`` (it must have both or neither)."""
    have = module_ports(text, module)
    want = set(port_map(part))
    missing = want - have
    if missing:
        raise RuntimeError(f"module {module}: ports {sorted(missing)[:5]} of its signature are "
                           f"not in its Verilog")
    clocked = {"clk", "rst"} & have
    if clocked not in (set(), {"clk", "rst"}):
        raise RuntimeError(f"module {module} has {sorted(clocked)} but not both clk and rst")
    return bool(clocked)


_INIT_BLOCK = re.compile(r"^  initial begin\n((?:    [^\n]*\n)+?)  end\n", re.M)
_ZERO_WORD = re.compile(r"    (\\\S+ |[A-Za-z_][A-Za-z0-9_$]*)\[(\d+)\] = (\d+)'[bdh]0+;")


def compact_zero_init(text: str) -> str:
    """``text`` (Yosys' Verilog, as ``verilog.convert`` writes it) with each memory
    initialisation that sets words ``0 .. n-1`` to zero one word per line (``initial begin
    mem[0] = 8'h00; ... end``: Amaranth gives every ``lib.memory.Memory`` an init, all zeros
    for ``init=[]``) replaced by a loop over the same words: the same initial contents in a
    few lines (the global buffers' byte memory at ``paper`` is 655,361 such lines, 16 MB).
    Any other initial block is left as it is."""
    count = 0

    def repl(mo):
        nonlocal count
        body = mo.group(1)
        first = _ZERO_WORD.match(body)
        if first is None or first.group(2) != "0":
            return mo.group(0)
        mem, width = first.group(1), first.group(3)
        n = body.count("\n")
        words = _ZERO_WORD.findall(body)
        if len(words) != n or any(w[0] != mem or w[1] != str(i) or w[2] != width
                                  for i, w in enumerate(words)):
            return mo.group(0)
        count += 1
        return (f"  initial begin : zero_init_{count}\n    integer i;\n"
                f"    for (i = 0; i < {n}; i = i + 1)\n      {mem}[i] = {width}'h0;\n  end\n")
    return _INIT_BLOCK.sub(repl, text)


_LOOP_INIT = re.compile(r"^  initial begin : zero_init_\d+\n    integer i;\n    for \(i = 0; i < \d+; "
                        r"i = i \+ 1\)\n      (?:\\\S+ |[A-Za-z_][A-Za-z0-9_$]*)\[i\] = \d+'h0;\n  end\n",
                        re.M)


def drop_zero_init(text: str) -> str:
    """``text`` without the all-zero memory initialisations :func:`compact_zero_init` would
    compact (and without the loops it writes): for synthesis onto Xilinx parts only, where a
    block RAM, LUT RAM or flip-flop without an initial value starts at zero (their INIT
    attributes default to 0), so the hardware is the same. Yosys expands such an
    initialisation into one cell per word before it maps the memory, which at the ZCU102's
    buffer sizes (8 banks of 43,008 words) costs far more time than the synthesis of the
    logic; a non-zero initialisation and every other initial block are kept."""
    text = compact_zero_init(text)
    return _LOOP_INIT.sub("", text)


def convert_modules(top, *, name: str, emit_src: bool = False, progress=None,
                    include_top: bool = True, compact_init: bool = False) -> dict:
    """``{module name: Verilog text}``: ``top`` as module ``name`` (first) and, once each, the
    modules in ``top.modules`` (``{module name: component}``; absent for a flat component, then
    only ``name``). The modules are converted first and their ports checked against their
    signatures; ``top.clocked(module, bool)`` is told whether a module has ``clk``/``rst``.
    A module whose component has a method ``verilog_text(name)`` (e.g.
    :class:`hw.system.cluster.CoreCluster`) gives its text itself (which may hold further
    modules it instantiates) instead of being converted by Amaranth.
    ``progress``: optional callable wrapping the list of ``(module name, component)`` to
    convert (e.g. a tqdm); ``include_top=False``: the modules only; ``compact_init``: each
    text's all-zero memory initialisations as loops (:func:`compact_zero_init`)."""
    from amaranth.back import verilog
    modules = dict(getattr(top, "modules", None) or {})
    if name in modules:
        raise ValueError(f"top module name {name!r} is also the name of one of its modules")
    texts = {}
    jobs = [*modules.items()] + ([(name, top)] if include_top else [])
    for mod, comp in (progress(jobs) if progress else jobs):
        if callable(getattr(comp, "verilog_text", None)):
            text = comp.verilog_text(mod)       # a part that writes its own Verilog
        else:
            text = verilog.convert(comp, name=mod, emit_src=emit_src)
        if compact_init:
            text = compact_zero_init(text)
        if comp is not top:
            top.clocked(mod, _check_ports(text, mod, comp))
        texts[mod] = text
    return {name: texts.pop(name), **texts} if include_top else texts


def convert(top, *, name: str, emit_src: bool = False, progress=None,
            compact_init: bool = False) -> str:
    """One Verilog text of :func:`convert_modules` (the top first); for a component without
    ``modules`` (and ``compact_init=False``) exactly ``verilog.convert(top, name=name)``."""
    return "\n".join(convert_modules(top, name=name, emit_src=emit_src,
                                      progress=progress,
                                      compact_init=compact_init).values())


def blackbox(module: str, part, *, clocked: bool = True) -> str:
    """A Verilog stub of module ``module`` with ``part``'s ports (and ``clk``/``rst``), marked
    ``(* blackbox *)``: what a synthesis of the top alone reads in place of the module."""
    return _stub(module, [(n, v, f) for n, (v, f) in port_map(part).items()], clocked)


def _stub(module: str, ports, clocked: bool) -> str:
    """``(* blackbox *)`` module ``module`` with ``ports`` (``[(name, value, flow)]``)."""
    decls = [("input", "clk", 1), ("input", "rst", 1)] if clocked else []
    decls += [("input" if flow == wiring.In else "output", n, len(v)) for n, v, flow in ports]
    decl = [f"  {d} {f'[{w - 1}:0] ' if w > 1 else ''}{n};" for d, n, w in decls]
    return "\n".join([f"(* blackbox *)\nmodule {module}({', '.join(n for _, n, _ in decls)});",
                      *decl, "endmodule", ""])
