"""The Trio-ViT accelerator instruction set: 128-bit words, one table defines everything.

See ``docs/isa.md`` for the prose. Every instruction is one 128-bit little-endian word: the opcode
in bits [4:0], then the fields of :data:`FORMATS` packed upwards from bit 5 in the order listed.
Signed fields are two's complement. :func:`encode` raises :class:`IsaError` naming the field when a
value does not fit; :func:`decode` inverts it exactly.

Streams and units
-----------------
A :class:`sim.compile.Binary` holds one *global* stream (units LD, ST, HOST: the DMA engines of
the global buffers and the host CPU) and one stream per computing core (units RMAC, MAT, AUX).
Each stream is split at dispatch into per-unit in-order queues; units run concurrently and
synchronise only through counting semaphores (SIGNAL / WAIT), which are global (shared by all
streams; one set per frame when frames run back to back, see :func:`wait_passes`), so the inter-layer pipeline (R-MAC DW feeding MAT PW through the auxiliary buffer) and
the attention pipeline (Fig. 9) are expressed as SIGNAL/WAIT pairs between units.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .numerics import ACC_BITS, LOG2_CODE_BITS, MAX_SHIFT, MULT_BITS

__all__ = ["IsaError", "Instr", "FORMATS", "OPCODES", "UNITS", "BUFS", "REGS", "ACTS",
           "encode", "decode", "encode_stream", "decode_stream", "WORD_BITS", "unit_of",
           "REG_LIMITS", "Limit", "LIMITS", "LimitError", "check_limit", "WIDTHS",
           "SHAPE_LIMITS", "dw_kernel_ok", "DW_HOLD_EXTRA", "wait_passes",
           "FRAME_FENCES"]

WORD_BITS = 128
OPCODE_BITS = 5

UNITS = {"LD": 0, "ST": 1, "HOST": 2, "RMAC": 3, "MAT": 4, "AUX": 5}
UNIT_NAMES = {v: k for k, v in UNITS.items()}
#: on-chip buffers: B (global, activations), C (global, weights + params), OUT (global output
#: buffer), AUX (per core, between R-MAC and MAT), DIV (per core, divisors), A (per core, the
#: broadcast operand of the R-MAC engine and the adder tree: the attention's ReLU(K))
BUFS = {"B": 0, "C": 1, "OUT": 2, "AUX": 3, "DIV": 4, "A": 5}
BUF_NAMES = {v: k for k, v in BUFS.items()}
ACTS = {"none": 0, "relu": 1, "hswish": 2}
ACT_NAMES = {v: k for k, v in ACTS.items()}

#: per-unit layer registers written by SETR (value field is 32 bit signed)
REGS = {
    "CIN": 0,        # input channels of the block in the B buffer (per group for DW: = nch)
    "WIN": 1,        # input width (columns) of the block
    "WOUT": 2,       # output width
    "KERNEL": 3,     # kernel size k (1 for pointwise / linear)
    "STRIDE": 4,     # stride
    "GROUPS": 5,     # groups of the conv tile (1 = dense)
    "PAD_L": 6,      # zero columns on the left  (the engine's address generator inserts them)
    "PAD_R": 7,      # zero columns on the right
    "ACT": 8,        # epilogue activation (ACTS)
    "OBITS": 9,      # output width in bits (8; 32 = raw accumulators of the logits)
    "OSIGNED": 10,   # output signed (1) or unsigned (0)
    "MIDBITS": 11,   # hswish intermediate width
    "THREE": 12,     # hswish 3.0 in intermediate LSBs
    "RES_ADDR": 13,  # residual block address in B, -1 = no residual
    "LINEAR": 14,    # 1: the tile is a linear layer (matrix-vector), 0: a convolution
    "DIM": 15,       # attention head dimension d
    "NTOK": 16,      # attention tokens (H*W)
    "NOEPI": 17,     # 1: no epilogue, write int32 accumulators (logits)
    "OSTRIDE": 18,   # output block channel stride in bytes
    "XSTRIDE": 19,   # input block channel stride in bytes
    "RSTRIDE": 20,   # residual block channel stride in bytes
    "XSIGNED": 21,   # input int8 (1) or uint8 (0)
    "RSIGNED": 22,   # residual int8 (1) or uint8 (0)
    "XBUF": 23,      # buffer the input block is read from (BUFS: B, or A for the attention's K)
}
REG_NAMES = {v: k for k, v in REGS.items()}

_CONV_LIMITS = {"CIN": (0, 65535), "WIN": (1, 32767), "WOUT": (1, 4095), "KERNEL": (1, 15),
                "STRIDE": (1, 15), "PAD_L": (0, 255)}
#: register ranges (inclusive) a compute instruction needs, as the core units implement them
#: (``hw.core.unit``: a unit that executes the instruction with a register outside its range stops
#: with its ``error`` flag); ``sim.compile`` refuses to emit such an instruction. The widths
#: behind them: output columns are 12-bit counters, input columns 16-bit signed, and CIN is
#: the 16-bit operand of the per-instruction products CIN * k*k and CIN * XSTRIDE.
REG_LIMITS = {"CONV_MAT": _CONV_LIMITS, "CONV_RDF": _CONV_LIMITS}


class LimitError(ValueError):
    """A value outside the range the hardware implements (:data:`LIMITS`)."""


@dataclass(frozen=True)
class Limit:
    """One quantity the accelerator implements: a ``bits``-wide two's complement (``signed``) or
    unsigned field, possibly used over a narrower inclusive range ``[lo, hi]`` (``None``: the
    field's full range). ``where`` names the RTL that holds it (``tests/test_contract.py`` reads
    that port's width from the ``hw`` object and checks it equals ``bits``)."""
    bits: int
    signed: bool
    where: str
    lo: int | None = None
    hi: int | None = None

    @property
    def range(self) -> tuple[int, int]:
        flo, fhi = ((-(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1) if self.signed
                    else (0, (1 << self.bits) - 1))
        return (flo if self.lo is None else self.lo, fhi if self.hi is None else self.hi)


_SHIFT = (0, MAX_SHIFT)
#: The ranges the hardware implements, one table: the IntProgram validator
#: (``sim.intprogram``), the compiler (``sim.compile``) and the functional simulator
#: (``sim.funcsim``) check against it, and ``tests/test_contract.py`` checks that the RTL's port
#: widths equal it. Keys are the IntProgram's names (epilogue fields ``mult_b`` ... as in the
#: 32-byte parameter record of ``sim.compile``; attention ``{s,ksum,out}_mult_{b,c}``,
#: ``log2_*``); values are :class:`Limit`. Widths: ``WIDTHS``; shapes: ``SHAPE_LIMITS``.
LIMITS = {
    # the per-channel parameter record -> one hw.units.Requant lane of hw.core.unit.Unit
    "bias": Limit(ACC_BITS, True, "Requant.acc"),
    "mult_b": Limit(MULT_BITS, False, "Requant.b"),
    "mult_c": Limit(6, False, "Requant.c", *_SHIFT),
    "offset": Limit(17, True, "Requant.offset"),
    "res_b": Limit(MULT_BITS, False, "Requant.rb"),
    "res_c": Limit(6, False, "Requant.rc", *_SHIFT),
    "hsw_b": Limit(MULT_BITS, False, "Requant.hb"),
    "hsw_c": Limit(6, False, "Requant.hc", *_SHIFT),
    # Hardswish 3.0 in intermediate LSBs: 0 < three < 2**(mid_bits - 1) (sim.numerics)
    "three": Limit(16, False, "Requant.three", 1, (1 << 15) - 1),
    # the attention's per-head record: requant of S and ksum on the lanes, the log2 module
    "s_mult_b": Limit(MULT_BITS, False, "Requant.b"),
    "s_mult_c": Limit(6, False, "Requant.c", *_SHIFT),
    "ksum_mult_b": Limit(MULT_BITS, False, "Requant.b"),
    "ksum_mult_c": Limit(6, False, "Requant.c", *_SHIFT),
    "out_mult_b": Limit(MULT_BITS, False, "Requant.b"),
    "out_mult_c": Limit(6, False, "Requant.c", *_SHIFT),
    "log2_offset": Limit(8, True, "Log2Quantizer.offset"),
    # emin + 2**LOG2_CODE_BITS - 1 must fit the exponent (hw.units.Log2Quantizer)
    "log2_emin": Limit(8, True, "Log2Quantizer.emin", None, 127 - ((1 << LOG2_CODE_BITS) - 1)),
}

#: data widths in bits: ``activation`` every tensor a core reads or writes (int8 or uint8, one
#: byte; the engines take it sign- or zero-extended as a 9-bit ``operand``, the requant lanes a
#: residual of the same 9 bits), ``weight`` int8, ``logits`` the raw int32 accumulators of a
#: linear without epilogue (``NOEPI``), ``mid`` the Hardswish intermediate (``MIDBITS``).
WIDTHS = {"activation": 8, "operand": 9, "weight": 8, "logits": ACC_BITS, "accumulator": ACC_BITS,
          "mid": 16}

#: shapes, kernels, strides and padding (inclusive ranges) the compiler can map and the core
#: units run: ``cin_per_group`` is the CIN register, ``win`` / ``wout`` WIN / WOUT (conv and
#: depthwise), ``kernel`` / ``stride`` KERNEL / STRIDE, ``padding`` the 3-bit pad_t / pad_b
#: fields of a tile (PAD_L is wider), ``dw_kernel`` / ``dw_stride`` the depthwise conv of the
#: R-MAC's self-accumulation mode (``hw.core.unit.MAX_KERNEL``), ``dim`` the attention's head
#: dimension (the DIM register's 12 bits).
SHAPE_LIMITS = {
    "cin_per_group": _CONV_LIMITS["CIN"],
    "win": _CONV_LIMITS["WIN"],
    "wout": _CONV_LIMITS["WOUT"],
    "kernel": _CONV_LIMITS["KERNEL"],
    "stride": _CONV_LIMITS["STRIDE"],
    "padding": (0, 7),
    "dw_kernel": (1, 5),
    "dw_stride": (1, 2),
    "dim": (1, 4095),
    # H*W of a global_avgpool (the POOL's NTOK) and of an attention (ATT_*'s NTOK): the token
    # counters of the AUX unit's adder tree and of hw.core.attention (CNT = 24 bits)
    "pool_tokens": (1, (1 << 24) - 1),
    "att_tokens": (1, (1 << 24) - 1),
}

#: the R-MAC's self-accumulation mode holds a tile's N x M results and requantizes them one
#: channel per cycle while the next tile's k*k steps run, so a depthwise tile needs
#: ``k*k >= N + DW_HOLD_EXTRA`` steps (``hw.core.unit.Unit._depthwise``: ``kk >= N + 1``; a
#: DW_RSA outside it stops the unit with its ``error`` flag).
DW_HOLD_EXTRA = 1


def dw_kernel_ok(k: int, n: int) -> bool:
    """Whether a ``k x k`` depthwise conv runs on an R-MAC engine of ``n`` R-MACs per lane:
    ``k`` in ``SHAPE_LIMITS["dw_kernel"]`` and ``k*k >= n + DW_HOLD_EXTRA``."""
    lo, hi = SHAPE_LIMITS["dw_kernel"]
    return lo <= k <= hi and k * k >= n + DW_HOLD_EXTRA


def check_limit(name: str, value, where: str = "") -> None:
    """Raise :class:`LimitError` naming ``where``, ``name`` and the offending value when any
    element of ``value`` (an integer scalar or array) leaves ``LIMITS[name]``. A non-integer
    array is refused too (the hardware has no fractions)."""
    lim = LIMITS[name]
    lo, hi = lim.range
    a = np.asarray(value)
    pre = f"{where}: " if where else ""
    if a.dtype.kind not in "iub":
        raise LimitError(f"{pre}{name} must be integer, got dtype {a.dtype}"
                         + (f" (e.g. {a.reshape(-1)[0]!r})" if a.size else ""))
    if a.size:
        bad = a[(a < lo) | (a > hi)]
        if bad.size:
            raise LimitError(f"{pre}{name} = {int(bad.reshape(-1)[0])} outside [{lo}, {hi}], "
                             f"the range of the hardware's {lim.where} "
                             f"({lim.bits}-bit {'signed' if lim.signed else 'unsigned'})")

# opcode -> (code, unit or None (unit field), [(field, bits, signed)])
_TILE = [("x_addr", 19, False), ("w_addr", 19, False), ("p_addr", 19, False),
         ("o_addr", 19, False), ("nco", 12, False), ("hin", 12, False), ("ho", 12, False),
         ("pad_t", 3, False), ("pad_b", 3, False), ("obuf", 3, False)]
#: ``core``: the core whose buffer A a LOAD fills (0 for the global buffers)
_DMA = [("buf", 3, False), ("dram_addr", 32, False), ("buf_addr", 20, False),
        ("count", 16, False), ("length", 20, False), ("stride", 26, False), ("core", 6, False)]
FORMATS = {
    "NOP":     (0, None, []),
    # semaphores are event counters: SIGNAL adds count, WAIT blocks until the counter >= count
    # (it does not decrement), so any number of units can wait for the same event. Counters
    # are per frame (streaming: a bank per frame in flight); ``prev`` = 1: the WAIT reads the
    # *previous* frame's counter (a frame fence, FRAME_FENCES), and frame 0 passes it at once
    "SIGNAL":  (1, "*", [("unit", 3, False), ("sem", 16, False), ("count", 8, False)]),
    "WAIT":    (2, "*", [("unit", 3, False), ("sem", 16, False), ("count", 12, False),
                         ("prev", 1, False)]),
    "SETR":    (3, "*", [("unit", 3, False), ("reg", 8, False), ("value", 32, True)]),
    "LOAD":    (4, "LD", _DMA),                 # DRAM -> buf: count chunks of length bytes
    "STORE":   (5, "ST", _DMA),                 # buf -> DRAM, same shape
    "CONV_MAT": (6, "MAT", _TILE),              # generic/PW/grouped conv or linear on the MAT
    "CONV_RDF": (7, "RMAC", _TILE),             # same on the R-MAC, down-forward accumulation
    "DW_RSA":  (8, "RMAC", _TILE),              # depthwise conv, R-MAC self-accumulation mode
    # attention of one head (Eq. 4, five steps); x_addr: q|k|v block of the head in B
    "ATT_KV_MAT":  (9, "MAT", _TILE),           # step i on the MAT: S = requant(ReLU(K)^T V) -> AUX
    "ATT_KV_RDF":  (10, "RMAC", _TILE),         # step i on the R-MAC
    "ATT_KSUM":    (11, "AUX", _TILE),          # step ii: adder tree row sums of ReLU(K) -> AUX
    "ATT_DIV":     (12, "MAT", _TILE),          # step iv: divisors ReLU(Q) ksum -> DIV, log2 module
    "ATT_OUT":     (13, "MAT", _TILE),          # step iii + v: dividends, requant, shifter -> OUT
    "POOL":    (14, "AUX", _TILE),              # adder tree: sum over H*W per channel + epilogue
    "HOST_LN": (15, "HOST", [("src", 32, False), ("dst", 32, False), ("param", 32, False),
                             ("channels", 16, False), ("act", 2, False)]),
    "HALT":    (16, "*", [("unit", 3, False)]),
}
OPCODES = {v[0]: k for k, v in FORMATS.items()}


def wait_passes(ins: "Instr", frame: int, counter) -> bool:
    """Whether ``WAIT`` ``ins`` of frame ``frame`` passes, ``counter(f, sem)`` being frame
    ``f``'s counter ``sem`` (the one definition of WAIT for the executors, ``sim.funcsim`` and
    ``sim.perf``). Frames run back to back (streaming) each have their own counters (a bank
    of the semaphore file per frame in flight, chosen by the frame's parity); a WAIT with
    ``prev`` = 1 compares the *previous* frame's counter instead, and frame 0 has no previous
    frame: it passes at once. That is how a frame fence is written (``sim.stream``: the
    compiler's ``stream=True`` emits them, :data:`FRAME_FENCES` per queue and frame)."""
    f = frame - ins.get("prev", 0)
    if f < 0:
        return True
    return counter(f, ins["sem"]) >= ins["count"]


#: frame-fence instructions ``compile(..., stream=True)`` adds to every unit queue
#: (``sim.compile.streaming.insert_fences``): a SIGNAL where the queue's front and middle end
#: and one at its end, and two WAITs with ``prev`` = 1 (before its front, before the rest)
FRAME_FENCES = 4

for _name, (_code, _unit, _fields) in FORMATS.items():
    assert OPCODE_BITS + sum(b for _, b, _ in _fields) <= WORD_BITS, _name


class IsaError(ValueError):
    """An instruction that cannot be encoded or decoded (names the opcode and field)."""


@dataclass
class Instr:
    """One decoded instruction: ``op`` (a key of :data:`FORMATS`) and its fields."""
    op: str
    f: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.op not in FORMATS:
            raise IsaError(f"unknown opcode {self.op!r}")

    @property
    def unit(self) -> str:
        u = FORMATS[self.op][1]
        if u == "*":
            return UNIT_NAMES[self.f.get("unit", 0)]
        return u or "LD"

    def __getitem__(self, k):
        return self.f[k]

    def get(self, k, d=None):
        return self.f.get(k, d)

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.f.items())
        return f"{self.op}({args})"


def unit_of(ins: Instr) -> str:
    return ins.unit


def encode(ins: Instr) -> int:
    """The 128-bit word of ``ins`` as a Python int."""
    code, _, fields = FORMATS[ins.op]
    word, pos = code, OPCODE_BITS
    extra = set(ins.f) - {n for n, _, _ in fields}
    if extra:
        raise IsaError(f"{ins.op}: unknown field(s) {sorted(extra)}")
    for name, bits, signed in fields:
        v = ins.f.get(name, 0)
        if isinstance(v, (bool, np.bool_)):
            v = int(v)
        if not isinstance(v, (int, np.integer)):
            raise IsaError(f"{ins.op}.{name}: integer expected, got {v!r}")
        v = int(v)
        lo, hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1))
        if not lo <= v <= hi:
            raise IsaError(f"{ins.op}.{name} = {v} does not fit {bits} "
                           f"{'signed' if signed else 'unsigned'} bits [{lo}, {hi}]")
        word |= (v & ((1 << bits) - 1)) << pos
        pos += bits
    return word


def decode(word: int) -> Instr:
    word = int(word)
    if word < 0 or word >> WORD_BITS:
        raise IsaError(f"not a {WORD_BITS}-bit word: {word:#x}")
    code = word & ((1 << OPCODE_BITS) - 1)
    if code not in OPCODES:
        raise IsaError(f"unknown opcode {code} in word {word:#034x}")
    op = OPCODES[code]
    _, _, fields = FORMATS[op]
    pos, f = OPCODE_BITS, {}
    for name, bits, signed in fields:
        v = (word >> pos) & ((1 << bits) - 1)
        if signed and v >> (bits - 1):
            v -= 1 << bits
        f[name] = v
        pos += bits
    if word >> pos:
        raise IsaError(f"{op}: non-zero bits above bit {pos} in word {word:#034x}")
    return Instr(op, f)


def encode_stream(instrs) -> np.ndarray:
    """Encode a list of :class:`Instr` to an ``(n, 2)`` uint64 array (low word first)."""
    out = np.zeros((len(instrs), 2), dtype=np.uint64)
    for i, ins in enumerate(instrs):
        w = encode(ins)
        out[i, 0] = w & 0xFFFFFFFFFFFFFFFF
        out[i, 1] = w >> 64
    return out


def decode_stream(arr) -> list:
    arr = np.asarray(arr, dtype=np.uint64).reshape(-1, 2)
    return [decode(int(lo) | (int(hi) << 64)) for lo, hi in arr]


def fields_table() -> str:
    """Markdown table of every opcode and its field layout (used to write docs/isa.md)."""
    lines = ["| opcode | code | unit | fields (bit offset:width, s = signed) |", "|---|---|---|---|"]
    for name, (code, unit, fields) in FORMATS.items():
        pos, parts = OPCODE_BITS, []
        for fn, bits, signed in fields:
            parts.append(f"{fn} [{pos}:{bits}{'s' if signed else ''}]")
            pos += bits
        lines.append(f"| {name} | {code} | {unit or '-'} | {', '.join(parts) or '-'} |")
    return "\n".join(lines)
