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
           "SHAPE_LIMITS", "dw_kernel_ok", "DW_HOLD_EXTRA", "MAX_BLOCK", "BLOCK_OPS",
           "ATT_BLOCK_OPS", "SEM_IDS",
           "block_unit_ok", "att_s_line", "att_s_pitch", "att_s_bytes", "att_s_offsets",
           "att_kv_fits", "engine_shape", "conv_weight_dims", "conv_weight_bytes",
           "pack_conv_weights", "unpack_conv_weights", "dw_weight_bytes", "pack_dw_weights",
           "unpack_dw_weights",
           "wait_passes", "FRAME_FENCES", "ACT_ADDR_BITS", "C_ADDR_BITS", "ADDR_BITS",
           "BUF_MAX_BYTES"]

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
    "BLOCK": 24,     # log2 B of the channel-blocked activation layout (0 = planar): see below
}
REG_NAMES = {v: k for k, v in REGS.items()}

_CONV_LIMITS = {"CIN": (0, 65535), "WIN": (1, 32767), "WOUT": (1, 4095), "KERNEL": (1, 15),
                "STRIDE": (1, 15), "PAD_L": (0, 255)}
#: register ranges (inclusive) a compute instruction needs, as the core units implement them
#: (``hw.core.unit``: a unit that executes the instruction with a register outside its range stops
#: with its ``error`` flag); ``sim.compile`` refuses to emit such an instruction. The widths
#: behind them: output columns are 12-bit counters, input columns 16-bit signed, and CIN is
#: the 16-bit operand of the per-instruction product CIN * XSTRIDE (and of CIN * k*k until
#: the weights were pre-tiled).
#: ``BLOCK`` (``b``): the x / r / o ports of CONV_MAT, CONV_RDF and the xr / r / o ports of
#: DW_RSA address channel ``c``, pixel ``p`` (``y * W + x`` of the tile) at
#: ``base + (c >> b) * STRIDE + (p << b) + (c & (2**b - 1))`` (``STRIDE`` = XSTRIDE / RSTRIDE /
#: OSTRIDE, now the stride of a block of ``2**b`` channels): the rule of
#: ``sim.compile.layout.act_offset`` with ``B = 2**b``; ``b = 0`` is the planar ``base + c * STRIDE
#: + p``. ``2**b`` up to 64, the widest engine access (``hw.core.unit.Unit``: lanes, width <= 64).
#: POOL and ATT_KSUM (the AUX unit's x port), the attention steps' K / Q (x, at ``XSTRIDE``), V
#: (``w_addr``, at ``XSTRIDE``) and ATT_OUT's output (at ``NTOK << b`` per block of channels)
#: follow the same rule with channel ``c``, token ``p``; their other operands (S, ksum8, the DIV
#: entries, POOL's one-pixel output) are not activations of more than one pixel and do not
#: change.
MAX_BLOCK = 6
_B = {"BLOCK": (0, MAX_BLOCK)}
REG_LIMITS = {"CONV_MAT": {**_CONV_LIMITS, **_B}, "CONV_RDF": {**_CONV_LIMITS, **_B},
              "DW_RSA": dict(_B), "POOL": dict(_B), "ATT_KSUM": dict(_B),
              "ATT_KV_RDF": dict(_B), "ATT_KV_MAT": dict(_B), "ATT_DIV": dict(_B),
              "ATT_OUT": dict(_B)}
#: the opcodes that read BLOCK (every compute instruction of the cores)
BLOCK_OPS = ("CONV_MAT", "CONV_RDF", "DW_RSA", "POOL", "ATT_KSUM", "ATT_KV_RDF", "ATT_KV_MAT",
             "ATT_DIV", "ATT_OUT")
#: the attention steps (their channel accesses: ``DIM`` must be a multiple of ``2**b``)
ATT_BLOCK_OPS = ("ATT_KSUM", "ATT_KV_RDF", "ATT_KV_MAT", "ATT_DIV", "ATT_OUT")


def block_unit_ok(b: int, op: str, cfg) -> bool:
    """Whether a unit of ``cfg`` (an ``AccelConfig``) runs ``op`` with ``BLOCK = b`` besides the
    range: ``b = 0``, or every channel access of the unit's step lies in one block (``2**b`` a
    multiple of the engine's channel width and lanes: T and S for CONV_MAT, N and M for CONV_RDF,
    N for DW_RSA, whose M lanes are pixels; the L rows of V of ATT_KV_* (L = S or M), the T
    channels of Q of ATT_DIV and ATT_OUT and ATT_OUT's S output rows; POOL and ATT_KSUM read
    tokens of one channel: any ``b``). The blocked conv path has no groups and no 32-bit outputs
    (``GROUPS = 1``, ``OBITS = 8``, ``NOEPI = 0``) and the attention steps need ``DIM % 2**b ==
    0``: checked where the registers are."""
    if b == 0:
        return True
    widths = {"CONV_MAT": (cfg.T, cfg.S), "CONV_RDF": (cfg.N, cfg.M), "DW_RSA": (cfg.N,),
              "ATT_KV_MAT": (cfg.S,), "ATT_KV_RDF": (cfg.M,), "ATT_DIV": (cfg.T,),
              "ATT_OUT": (cfg.T, cfg.S)}.get(op, ())
    return all((1 << b) % w == 0 for w in widths)


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

#: ``divisor``: the attention's divisor ``den[t] = sum_j relu(Q[j, t]) * ksum8[j]``
#: (``sim.golden.attention_steps`` step 4: at most ``SHAPE_LIMITS["dim"]`` terms of a ReLU'd
#: int8, <= 127, times a uint8, <= 255), non-negative and below ``2**27``: the input of the
#: log2 module (``hw.core.attention``), narrower than the accumulator it comes from.
WIDTHS["divisor"] = (SHAPE_LIMITS["dim"][1] * ((1 << (WIDTHS["activation"] - 1)) - 1)
                     * ((1 << WIDTHS["activation"]) - 1)).bit_length()

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


# ---- the attention's S in AUX (docs/isa.md "S in AUX"; docs/hw-core.md "AUX buffer") ----------
# S (``d x d`` int8, written by ATT_KV_*, read by ATT_OUT as the MAT's weight operand: T rows j
# x S columns i per cycle) is stored in **tiles of T rows x S columns**, each at a line of
# ``att_s_line(S, T)`` bytes (the power of two >= T*S): row r of a tile at ``r*S``, column c at
# ``+ c``. The tiles of a column block (S columns) are consecutive lines, ``ceil(d/T)`` of them
# (rows padded up to a multiple of T), and the column blocks follow each other:
#   S[j, i] at  o_addr + (i // S) * att_s_pitch(d, S, T) + (j // T) * line + (j % T) * S + i % S
# so ATT_OUT's window (rows j0.., columns i0.., j0 % T == 0, i0 % S == 0) is one aligned line
# and ATT_KV writes at most S consecutive bytes of one tile row. ``o_addr`` of ATT_KV_* and
# ``w_addr`` of ATT_OUT are multiples of the line.

def att_s_line(S: int, T: int) -> int:
    """Bytes per tile of S in AUX: the power of two >= ``T * S``, at least 2."""
    return max(2, 1 << (T * S - 1).bit_length())


def att_s_pitch(d: int, S: int, T: int) -> int:
    """Bytes per column block of S (``S`` columns, ``ceil(d/T)`` tiles)."""
    return -(-d // T) * att_s_line(S, T)


def att_s_bytes(d: int, S: int, T: int) -> int:
    """Bytes of AUX that one head's S spans (``ceil(d/S)`` column blocks)."""
    return -(-d // S) * att_s_pitch(d, S, T)


def att_kv_fits(S: int, R: int) -> bool:
    """Whether a unit whose requant lanes write ``R`` consecutive columns of S per cycle keeps
    each write inside one tile row (R divides S): the MAT always; an R-MAC only then (else
    ``ATT_KV_RDF`` stops it with its error flag and the compiler puts step i on the MAT)."""
    return S % R == 0


def att_s_offsets(d: int, S: int, T: int) -> np.ndarray:
    """``(d, d)`` int64: the AUX offset of ``S[j, i]`` from the tile base (see above)."""
    j = np.arange(d)[:, None]
    i = np.arange(d)[None, :]
    return ((i // S) * att_s_pitch(d, S, T) + (j // T) * att_s_line(S, T) + (j % T) * S
            + i % S).astype(np.int64)


# ---- weight layouts in buffer C (and in the DRAM image): what the w port reads ------------
#
# A conv step (CONV_MAT / CONV_RDF) reads the ``lanes x width`` weights of one block of output
# channels, one tap and one block of input channels. They are stored *pre-tiled* so that each
# step's weights are one contiguous line of ``lanes * width`` bytes (row stride ``width``,
# element stride 1), and the steps of a block of output channels read consecutive lines:
#
#   [group][output-channel block of `lanes`][tap ky*k + kx][input-channel block of `width`]
#       [lane][element]        (int8; rows past the group's filters and channels past CIN: 0)
#
# ``lanes, width`` are those of the engine that executes the instruction (MAT: S x T, R-MAC:
# M x N; :func:`engine_shape`). The w port of step ``i`` of an output pixel of block ``b`` reads
# line ``W_ADDR + (b * k*k * ceil(CIN/width) + i) * lanes*width``: the address generator is one
# running line counter and the base of the current block (docs/hw-core.md).
# A DW_RSA step reads the tap ``ky*k + kx`` of ``N`` channels through the x port: one ``N``-byte
# word of ``[channel block of N][tap][N]`` at ``W_ADDR + (c0/N * k*k + tap) * N``.


def engine_shape(cfg, unit: str) -> tuple[int, int]:
    """``(lanes, width)`` of ``unit``'s engine in down-forward mode: MAT ``(S, T)``, RMAC
    ``(M, N)`` (``cfg``: an :class:`~sim.config.AccelConfig`)."""
    if unit == "MAT":
        return cfg.S, cfg.T
    if unit == "RMAC":
        return cfg.M, cfg.N
    raise ValueError(f"no conv engine in unit {unit!r}")


def _cdiv(a, b):
    return -(-a // b)


def conv_weight_dims(*, cout: int, cin_g: int, k: int, groups: int, lanes: int,
                     width: int) -> tuple:
    """The dimensions of a pre-tiled conv weight block: ``(groups, output-channel blocks per
    group, k*k, input-channel blocks, lanes, width)``."""
    if cout % groups:
        raise ValueError(f"cout = {cout} is not a multiple of groups = {groups}")
    return (groups, _cdiv(cout // groups, lanes), k * k, _cdiv(cin_g, width), lanes, width)


def conv_weight_bytes(**kw) -> int:
    """Bytes of a pre-tiled conv weight block (keywords of :func:`conv_weight_dims`)."""
    return int(np.prod(conv_weight_dims(**kw)))


def pack_conv_weights(w, *, groups: int, lanes: int, width: int) -> np.ndarray:
    """int8 weights ``(cout, cin_g, k, k)`` in the pre-tiled layout (1-D int8, zero padded)."""
    w = np.asarray(w, dtype=np.int8)
    cout, cin_g, k, _ = w.shape
    g, nb, kk, nc, L, W = conv_weight_dims(cout=cout, cin_g=cin_g, k=k, groups=groups,
                                           lanes=lanes, width=width)
    full = np.zeros((g, nb * L, nc * W, k, k), dtype=np.int8)
    full[:, :cout // g, :cin_g] = w.reshape(g, cout // g, cin_g, k, k)
    # (g, nb, L, nc, W, kk) -> (g, nb, kk, nc, L, W)
    t = full.reshape(g, nb, L, nc, W, kk).transpose(0, 1, 5, 3, 2, 4)
    return np.ascontiguousarray(t).reshape(-1)


def unpack_conv_weights(flat, *, cout: int, cin_g: int, k: int, groups: int, lanes: int,
                        width: int) -> np.ndarray:
    """The inverse of :func:`pack_conv_weights`: ``(cout, cin_g, k, k)`` int8 from the first
    :func:`conv_weight_bytes` bytes of ``flat``."""
    dims = conv_weight_dims(cout=cout, cin_g=cin_g, k=k, groups=groups, lanes=lanes,
                            width=width)
    g, nb, kk, nc, L, W = dims
    t = np.asarray(flat).view(np.int8)[:int(np.prod(dims))].reshape(dims)
    full = t.transpose(0, 1, 4, 3, 5, 2).reshape(g, nb * L, nc * W, k, k)
    return np.ascontiguousarray(full[:, :cout // g, :cin_g]).reshape(cout, cin_g, k, k)


def dw_weight_bytes(channels: int, k: int, n: int) -> int:
    """Bytes of a depthwise weight block of ``channels`` channels (``[C/n][k*k][n]``)."""
    return _cdiv(channels, n) * k * k * n


def pack_dw_weights(w, *, n: int) -> np.ndarray:
    """int8 depthwise weights ``(C, 1, k, k)`` (or ``(C, k, k)``) as ``[C/n][k*k][n]`` (1-D
    int8; channels past ``C`` zero)."""
    w = np.asarray(w, dtype=np.int8)
    c, k = w.shape[0], w.shape[-1]
    nb = _cdiv(c, n)
    full = np.zeros((nb * n, k * k), dtype=np.int8)
    full[:c] = w.reshape(c, k * k)
    return np.ascontiguousarray(full.reshape(nb, n, k * k).transpose(0, 2, 1)).reshape(-1)


def unpack_dw_weights(flat, *, channels: int, k: int, n: int) -> np.ndarray:
    """The inverse of :func:`pack_dw_weights`: ``(channels, 1, k, k)`` int8."""
    nb = _cdiv(channels, n)
    t = np.asarray(flat).view(np.int8)[:nb * k * k * n].reshape(nb, k * k, n)
    return np.ascontiguousarray(t.transpose(0, 2, 1).reshape(nb * n, k, k)[:channels]
                                ).reshape(channels, 1, k, k)


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

# ---- buffer addresses (docs/isa.md "Buffer addresses") -----------------------------------------
# Every address in an instruction or a register is a *byte* address inside one buffer. Buffer C
# (weights and parameter records) is read through ``w_addr`` (conv weights; the depthwise
# weights, read through the x port) and ``p_addr`` (records) and filled by LOAD's ``buf_addr``:
# those fields have ``C_ADDR_BITS``. B and OUT are read and written through ``x_addr``,
# ``o_addr`` and the RES_ADDR register: ``ACT_ADDR_BITS``. The word has no room for more: the
# tile format is full (128 bits), as is the DMA format (``stride`` gave one bit to
# ``buf_addr``, ``hin``/``ho`` one each to ``w_addr``/``p_addr``, with the 2 spare bits).
ACT_ADDR_BITS = 19      #: x_addr, o_addr: B, OUT (and AUX, DIV, A) up to 512 KiB
C_ADDR_BITS = 21        #: w_addr, p_addr, LOAD/STORE buf_addr: C up to 2 MiB
#: the widest buffer byte address: the width of the cores' buffer ports and of the address
#: arithmetic behind them (``hw.core.ports.ADDR_BITS``, ``hw.system.dma.BUF_ADDR_BITS``)
ADDR_BITS = max(ACT_ADDR_BITS, C_ADDR_BITS)
#: the largest size of each global buffer the instructions can address (``sim.config`` and
#: ``hw.system.buffers`` bound the sizes by it)
BUF_MAX_BYTES = {"B": 1 << ACT_ADDR_BITS, "C": 1 << C_ADDR_BITS, "OUT": 1 << ACT_ADDR_BITS}

# opcode -> (code, unit or None (unit field), [(field, bits, signed)])
_TILE = [("x_addr", ACT_ADDR_BITS, False), ("w_addr", C_ADDR_BITS, False),
         ("p_addr", C_ADDR_BITS, False), ("o_addr", ACT_ADDR_BITS, False), ("nco", 12, False),
         ("hin", 11, False), ("ho", 11, False),
         ("pad_t", 3, False), ("pad_b", 3, False), ("obuf", 3, False)]
#: ``core``: the core whose buffer A a LOAD fills (0 for the global buffers)
_DMA = [("buf", 3, False), ("dram_addr", 32, False), ("buf_addr", C_ADDR_BITS, False),
        ("count", 16, False), ("length", 20, False), ("stride", 25, False), ("core", 6, False)]
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
    # lock-step groups only (a Binary with ``groups`` > 1, sim.lockstep, docs/isa.md): a
    # per-core register of core ``core`` of the group (``sim.lockstep.CORE_REGS``: the
    # participate mask, address / pad offsets, share bounds); never in a per-core stream
    "SETC":    (17, "*", [("unit", 3, False), ("core", 6, False), ("reg", 8, False),
                          ("value", 32, True)]),
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


#: semaphore ids (event counters per frame bank) of the accelerator's semaphore file as built
#: by default (``hw.system.Accelerator(sems=...)``, ``python -m hw build --sems``; the register
#: ``CONFIG_SEMS`` reports the built count). The ISA's 16-bit ``sem`` field allows 65,536; a
#: Binary whose largest id is at or above the file's count stops with error ``SEM_RANGE``, so the
#: runtime refuses it before START (``Binary.sem_ids``). 8,192: compiled for ``zcu102``, B3-R224
#: uses ids up to 4,118 and B2-R224 up to 2,329 (B0 603, B1 1,311), more than the 2,048 the file
#: had before (docs/system.md "How many semaphore ids").
SEM_IDS = 8192

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
