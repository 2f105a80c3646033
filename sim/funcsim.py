"""Instruction-level functional simulator of a :class:`sim.compile.Binary`.

It models the DRAM image, the global buffers B, C, OUT and each core's AUX, DIV and A buffers as
byte arrays and executes the instructions: LOAD/STORE really copy bytes between DRAM and the
buffers (a LOAD into A names its core), and every compute instruction reads its operands from the
buffer addresses it names (so a wrong address, stride, tile or synchronisation shows up as a wrong
result or an error). The arithmetic is the golden model's: :func:`sim.golden.conv_acc`,
:func:`sim.golden.linear_acc`, the attention steps :func:`sim.golden.attention_kv`,
``attention_ksum``, ``attention_div``, ``attention_out``, :func:`sim.golden.layernorm_host` and
:meth:`sim.intprogram.Epilogue.apply` (which calls :mod:`sim.numerics`).

Activations of every compute instruction (CONV_MAT / CONV_RDF / DW_RSA, POOL and the attention
steps' K, Q, V and output) are addressed by the ``BLOCK`` register (0, the default, planar;
``b > 0`` channel-blocked, :meth:`_Machine.index`, ``sim.isa.REG_LIMITS``, docs/isa.md),
refused where the core units stop with their error flag.

Attention: each of the four per-head instructions runs its step on the operands it names: K from
``XBUF`` (buffer A, or B), V and Q from B, and the intermediates of the earlier steps read back
from the AUX/DIV addresses where those steps wrote them (S, ksum8, the log2 codes with the zero
flag in bit 4, as the RTL keeps them), so the on-chip data flow and its addresses are what is
verified: a wrong one gives a wrong output.

Execution order: the units of all streams run as independent in-order queues synchronised only by
the SIGNAL/WAIT events; ``order="ld_first"`` lets the DMA units run as far ahead as the events
allow (exposes missing "slot free" waits), ``order="ld_last"`` runs the cores first (exposes
missing "data ready" waits: a core would read a buffer before its LOAD). A deadlock (no unit can
proceed) raises :class:`FuncSimError`.
"""

from __future__ import annotations

import numpy as np

from . import golden, timing
from . import numerics as nx
from .intprogram import Epilogue
from .isa import (ACT_NAMES, ACTS, ATT_BLOCK_OPS, BLOCK_OPS, BUF_NAMES, BUFS, DW_HOLD_EXTRA, REG_LIMITS,
                  REG_NAMES, WIDTHS, LimitError, att_s_bytes, att_s_line, att_s_offsets,
                  block_unit_ok, check_limit, conv_weight_bytes, dw_kernel_ok, dw_weight_bytes,
                  engine_shape, unpack_conv_weights, unpack_dw_weights, wait_passes)

__all__ = ["FuncSimError", "run", "run_frames", "build_queues", "host_ln", "GLOBAL_UNITS", "CORE_UNITS"]

GLOBAL_UNITS = ("LD", "ST", "HOST")
CORE_UNITS = ("RMAC", "MAT", "AUX")


class FuncSimError(RuntimeError):
    """The binary did something illegal (out-of-buffer access, deadlock, inconsistent data)."""


def build_queues(binary):
    """``{(stream, unit): [(Instr, tag), ...]}`` in program order (the dispatcher's split) of a
    per-core Binary (a group Binary: expand it first, ``sim.lockstep.expand``)."""
    if getattr(binary, "groups", 1) != 1:
        raise FuncSimError(f"a lock-step group Binary (groups = {binary.groups}): its queues are "
                           "those of sim.lockstep.expand(binary)")
    q = {}
    for s, ins in binary.streams.items():
        units = GLOBAL_UNITS if s == "global" else CORE_UNITS
        for u in units:
            q[(s, u)] = []
        for i, tag in zip(ins, binary.tags[s]):
            u = i.unit
            if (s, u) not in q:
                raise FuncSimError(f"{s}: instruction {i} targets unit {u}, not in this stream")
            q[(s, u)].append((i, tag))
    return q


def host_ln(f, *, read, write) -> None:
    """Execute a ``HOST_LN`` (fields ``f``: src, dst, param, channels, act) on a DRAM image
    reached through ``read(addr, n) -> uint8 array`` and ``write(addr, uint8 array)``: the
    host CPU's part of a Binary, shared by this simulator, the RTL testbenches (the CPU model
    beside the accelerator) and a board runtime. Addresses are offsets in the data image."""
    c = f["channels"]
    blk = np.frombuffer(bytes(read(f["param"], 8 * (5 + 4 * c))), dtype=np.float64)
    eps, obits, osigned, isigned, ibits = blk[:5]
    gamma, beta, isc, osc = blk[5:].reshape(4, c)
    if ibits > 8:
        x = np.frombuffer(bytes(read(f["src"], 4 * c)), dtype=np.int32).astype(np.int64)
    else:
        raw = np.frombuffer(bytes(read(f["src"], c)), dtype=np.uint8)
        x = (raw.view(np.int8) if isigned else raw).astype(np.int64)
    y = golden.layernorm_host(x, isc, gamma, beta, eps=float(eps),
                              act=("none", "hswish")[f["act"]], out_scale=osc,
                              out_bits=int(obits), signed=bool(osigned))
    write(f["dst"], (y & 0xFF).astype(np.uint8))


class _Machine:
    def __init__(self, binary):
        cfg = binary.cfg
        self.b = binary
        self.dram = binary.dram.copy()
        self.glob = {"B": np.zeros(cfg.buf_b_bytes, np.uint8),
                     "C": np.zeros(cfg.buf_c_bytes, np.uint8),
                     "OUT": np.zeros(cfg.buf_out_bytes, np.uint8)}
        # AUX is two stores over one address range (hw.core.auxbuf): "AUX" written by the
        # engines (S), "AUX_A" by the AUX unit's adder tree (ksum8); each is read back only by
        # the attention step that consumes it
        self.local = {f"core{i}": {"AUX": np.zeros(cfg.buf_aux_bytes, np.uint8),
                                   "AUX_A": np.zeros(cfg.buf_aux_bytes, np.uint8),
                                   "DIV": np.zeros(cfg.buf_div_bytes, np.uint8),
                                   "A": np.zeros(cfg.buf_a_bytes, np.uint8)}
                      for i in range(cfg.L)}
        self.regs = {}
        self.sems = {}          # (frame, sem) -> counter
        self.frame = 0          # the frame of the instruction being executed
        self.io = None          # run_frames: per frame {DRAM start: bytearray} (double buffers)
        self.s_off = {}         # d -> sim.isa.att_s_offsets(d, S, T)

    # memory helpers ----------------------------------------------------------------------------
    def buf(self, stream, bid, store=None):
        name = BUF_NAMES[bid]
        if name in self.glob:
            return self.glob[name], name
        if stream == "global":
            raise FuncSimError(f"global stream cannot address per-core buffer {name}")
        if store is not None:
            name = store
        return self.local[stream][name], name

    @staticmethod
    def index(addr, nch, n, cstride, bpe=1, block=0):
        """Byte addresses ``(nch, n * bpe)`` of channels ``0 .. nch-1``, elements ``0 .. n-1`` of
        a block at ``addr``: planar (``block = 0``) channel ``c`` at ``c * cstride``; blocked
        (``block = b``, the ``BLOCK`` register, 1-byte elements) element ``(c, p)`` at
        ``(c >> b) * cstride + (p << b) + (c & (2**b - 1))`` (sim.isa.REG_LIMITS)."""
        if not block:
            return addr + np.arange(nch)[:, None] * cstride + np.arange(n * bpe)[None, :]
        if bpe != 1:
            raise FuncSimError(f"BLOCK = {block} with {8 * bpe}-bit elements: the blocked "
                               "layout addresses bytes only")
        c = np.arange(nch)[:, None]
        return addr + (c >> block) * cstride + (np.arange(n)[None, :] << block) \
            + (c & ((1 << block) - 1))

    def read(self, stream, bid, addr, nch, n, cstride, signed, bpe=1, store=None, block=0):
        mem, name = self.buf(stream, bid, store)
        idx = self.index(addr, nch, n, cstride, bpe, block)
        if nch and (idx.min() < 0 or idx.max() >= mem.size):
            raise FuncSimError(f"read of {nch}x{n} at {addr} (stride {cstride}) leaves buffer"
                               f" {name} ({mem.size} bytes)")
        raw = mem[idx]
        if bpe == 4:
            return raw.copy().view(np.int32).astype(np.int64)
        return (raw.view(np.int8) if signed else raw).astype(np.int64)

    def write(self, stream, bid, addr, arr, cstride, bpe=1, store=None, block=0):
        mem, name = self.buf(stream, bid, store)
        arr = np.asarray(arr, np.int64).reshape(arr.shape[0], -1)
        nch, n = arr.shape
        idx = self.index(addr, nch, n, cstride, bpe, block)
        if nch and (idx.min() < 0 or idx.max() >= mem.size):
            raise FuncSimError(f"write of {nch}x{n} at {addr} leaves buffer {name}"
                               f" ({mem.size} bytes)")
        data = arr.astype(np.int32).view(np.uint8) if bpe == 4 else \
            (arr & 0xFF).astype(np.uint8)
        mem[idx] = data.reshape(nch, n * bpe)

    def params(self, stream, addr, n):
        mem, _ = self.buf(stream, 1)
        if addr + 32 * n > mem.size:
            raise FuncSimError(f"parameter read at {addr} leaves buffer C")
        return mem[addr:addr + 32 * n].copy().view(np.int32).astype(np.int64).reshape(n, 8)

    def _regions(self):
        """The current frame's private DRAM regions (its input and outputs: run_frames)."""
        return () if self.io is None else self.io[self.frame].items()

    def dram_get(self, idx):
        """DRAM bytes at ``idx`` (an int array), the current frame's own input / outputs
        where ``idx`` falls into them."""
        v = self.dram[idx]
        for lo, buf in self._regions():
            sel = (idx >= lo) & (idx < lo + buf.size)
            if sel.any():
                v[sel] = buf[idx[sel] - lo]
        return v

    def dram_put(self, idx, data):
        data = np.broadcast_to(np.asarray(data, np.uint8), np.shape(idx))
        own = np.zeros(np.shape(idx), bool)
        for lo, buf in self._regions():
            sel = (idx >= lo) & (idx < lo + buf.size)
            buf[idx[sel] - lo] = data[sel]
            own |= sel
        self.dram[idx[~own]] = data[~own]

    # instruction semantics ---------------------------------------------------------------------
    def dma(self, stream, ins, store):
        f = ins.f
        if f["buf"] == BUFS["A"]:
            # buffer A of core ``core``: filled by LOAD only (nothing reads it back to DRAM)
            if store or f.get("core", 0) >= self.b.cfg.L:
                raise FuncSimError(f"{ins}: {'STORE from' if store else 'LOAD into'} buffer A of "
                                   f"core {f.get('core', 0)} (L = {self.b.cfg.L}; A is only loaded)")
            line = timing.a_line_bytes(self.b.cfg.N, self.b.cfg.dram_bytes_per_cycle)
            if f["buf_addr"] % line:
                raise FuncSimError(f"{ins}: a LOAD into buffer A starts on a line boundary "
                                   f"({line} bytes: its write port, sim.timing.a_line_bytes)")
            stream = f"core{f.get('core', 0)}"
        elif f.get("core", 0):
            raise FuncSimError(f"{ins}: core = {f.get('core')} names a core for a global buffer")
        mem, name = self.buf(stream, f["buf"])
        cnt, ln, st = f["count"], f["length"], f["stride"]
        if f["buf_addr"] + cnt * ln > mem.size:
            raise FuncSimError(f"{ins}: buffer {name} overflow")
        didx = f["dram_addr"] + np.arange(cnt)[:, None] * st + np.arange(ln)[None, :]
        if cnt and didx.max() >= self.dram.size:
            raise FuncSimError(f"{ins}: DRAM access beyond the image ({self.dram.size} bytes)")
        bsl = slice(f["buf_addr"], f["buf_addr"] + cnt * ln)
        if self.io is not None:
            if store:
                self.dram_put(didx, mem[bsl].reshape(cnt, ln))
            else:
                mem[bsl] = self.dram_get(didx).reshape(-1)
        elif store:
            self.dram[didx] = mem[bsl].reshape(cnt, ln)
        else:
            mem[bsl] = self.dram[didx].reshape(-1)

    def check_epilogue(self, r, rec):
        """What the requant lanes implement (sim.isa.LIMITS / WIDTHS; the RTL units stop with
        their error flag otherwise): an 8-bit output, a 16-bit Hardswish intermediate, every
        parameter record field within its port."""
        if r["OBITS"] != WIDTHS["activation"]:
            raise FuncSimError(f"OBITS = {r['OBITS']}: the requant lanes write"
                               f" {WIDTHS['activation']}-bit outputs")
        if r["ACT"] not in ACT_NAMES:
            raise FuncSimError(f"ACT = {r['ACT']} is not one of {ACTS}")
        fields = ["mult_b", "mult_c", "offset"]
        if r["RES_ADDR"] >= 0:
            fields += ["res_b", "res_c"]
        if r["ACT"] == ACTS["hswish"]:
            if r["MIDBITS"] != WIDTHS["mid"]:
                raise FuncSimError(f"MIDBITS = {r['MIDBITS']}: the Hardswish intermediate is"
                                   f" {WIDTHS['mid']} bits")
            fields += ["hsw_b", "hsw_c"]
            self.check_limit("three", r["THREE"])
        for name in fields:
            self.check_limit(name, rec[:, ("bias", "mult_b", "mult_c", "offset", "res_b",
                                            "res_c", "hsw_b", "hsw_c").index(name)])

    @staticmethod
    def check_limit(name, value):
        try:
            check_limit(name, value, "parameter")
        except LimitError as e:
            raise FuncSimError(str(e)) from None

    def epilogue(self, r, rec, acc, stream, block=0):
        self.check_epilogue(r, rec)
        act = ACT_NAMES[r["ACT"]]
        res = None
        kw = {}
        if r["RES_ADDR"] >= 0:
            kw = dict(residual="r", res_mult=nx.Dyadic(rec[:, 4], rec[:, 5]))
        if act == "hswish":
            kw.update(hswish_mult=nx.Dyadic(rec[:, 6], rec[:, 7]), three=r["THREE"],
                      mid_bits=r["MIDBITS"])
        epi = Epilogue(mult=nx.Dyadic(rec[:, 1], rec[:, 2]), act=act, offset=rec[:, 3], **kw)
        if r["RES_ADDR"] >= 0:
            res = self.read(stream, 0, r["RES_ADDR"], acc.shape[0], acc[0].size, r["RSTRIDE"],
                            r["RSIGNED"], block=block).reshape(acc.shape)
        return epi.apply(acc, out_bits=r["OBITS"], signed=bool(r["OSIGNED"]), residual=res)

    def compute(self, stream, unit, ins):
        r = self.regs.setdefault((stream, unit), {})
        f = ins.f
        op = ins.op
        if not op.startswith("ATT_") and BUFS["AUX"] in (r.get("XBUF"), f["obuf"]):
            raise FuncSimError(f"{stream}/{unit}: {ins} uses AUX, which holds only the attention's"
                               " S and ksum8 (docs/hw-core.md, AUX buffer)")
        if BUFS["A"] == f["obuf"] or (r.get("XBUF") == BUFS["A"]
                                      and op not in ("ATT_KV_RDF", "ATT_KSUM")):
            raise FuncSimError(f"{stream}/{unit}: {ins} uses buffer A, which only the LD unit "
                               "writes and only ATT_KV_RDF and ATT_KSUM read (docs/hw-core.md)")
        if op not in BLOCK_OPS and r.get("BLOCK", 0) != 0:
            raise FuncSimError(f"{stream}/{unit}: {ins} with BLOCK = {r['BLOCK']}: only "
                               f"{', '.join(BLOCK_OPS)} read the blocked layout (sim.isa)")
        try:
            if op in ("CONV_MAT", "CONV_RDF", "DW_RSA"):
                self.conv(stream, unit, r, f, dw=op == "DW_RSA", block=self.block(r, op))
            elif op.startswith("ATT_"):
                self.att(stream, r, f, op, block=self.block(r, op))
            elif op == "POOL":
                x = self.read(stream, r["XBUF"], f["x_addr"], f["nco"], r["NTOK"], r["XSTRIDE"],
                              r["XSIGNED"], block=self.block(r, op))
                rec = self.params(stream, f["p_addr"], f["nco"])
                acc = x.sum(axis=1)
                y = self.epilogue(r, rec, acc, stream)
                self.write(stream, f["obuf"], f["o_addr"], y.reshape(-1, 1), 1)
            else:
                raise FuncSimError(f"no semantics for {op}")
        except KeyError as e:
            raise FuncSimError(f"{stream}/{unit}: {ins} uses register {e} that was never set")

    def block(self, r, op):
        """``BLOCK`` of a CONV_* / DW_RSA (0 when never set: planar), refused where the core
        units stop with their error flag (sim.isa.REG_LIMITS, sim.isa.block_unit_ok; the blocked
        conv path has one group and 8-bit outputs)."""
        b = r.get("BLOCK", 0)
        lo, hi = REG_LIMITS[op]["BLOCK"]
        if not lo <= b <= hi:
            raise FuncSimError(f"{op} with BLOCK = {b} outside [{lo}, {hi}] (sim.isa.REG_LIMITS)")
        if not block_unit_ok(b, op, self.b.cfg):
            raise FuncSimError(f"{op} with BLOCK = {b}: 2**BLOCK must be a multiple of the "
                               "engine's channel width and lanes (sim.isa.block_unit_ok)")
        if b and op in ("ATT_KV_RDF", "ATT_KSUM") and r.get("XBUF") == BUFS["A"]:
            raise FuncSimError(f"{op} with BLOCK = {b} reads K from buffer A, whose port reads "
                               "lines of consecutive bytes (K blocked has its tokens 2**b "
                               "apart): K must be in B")
        if b and op in ATT_BLOCK_OPS and r.get("DIM", 0) % (1 << b):
            raise FuncSimError(f"{op} with BLOCK = {b}: DIM = {r.get('DIM')} is not a multiple "
                               f"of 2**BLOCK (a head's channels are whole blocks)")
        if b and op in ("CONV_MAT", "CONV_RDF") and (r.get("GROUPS", 1) != 1
                                                     or r.get("NOEPI", 0)
                                                     or r.get("OBITS", 8) != 8):
            raise FuncSimError(f"{op} with BLOCK = {b}: the blocked conv path has GROUPS = 1"
                               " and 8-bit outputs only")
        return b

    def conv(self, stream, unit, r, f, dw, block=0):
        nco, k = f["nco"], r["KERNEL"]
        if dw and not dw_kernel_ok(k, self.b.cfg.N):
            raise FuncSimError(f"DW_RSA with KERNEL = {k}: the R-MAC's self-accumulation mode"
                               f" needs k*k >= N + {DW_HOLD_EXTRA} = {self.b.cfg.N + DW_HOLD_EXTRA}"
                               " (sim.isa.dw_kernel_ok; the core stops with its error flag)")
        cin = f["nco"] if dw else r["CIN"] * r["GROUPS"]
        x = self.read(stream, r["XBUF"], f["x_addr"], cin, f["hin"] * r["WIN"], r["XSTRIDE"],
                      r["XSIGNED"], block=block).reshape(cin, f["hin"], r["WIN"])
        w = self.weights(stream, unit, r, f, dw).astype(np.int64)
        rec = self.params(stream, f["p_addr"], nco)
        if r.get("LINEAR", 0):
            acc = golden.linear_acc(x.reshape(-1), w.reshape(nco, -1), rec[:, 0]).reshape(nco, 1, 1)
        else:
            xp = np.pad(x, ((0, 0), (f["pad_t"], f["pad_b"]), (r["PAD_L"], r["PAD_R"])))
            acc = golden.conv_acc(xp, w, rec[:, 0], stride=r["STRIDE"], padding=0,
                                  groups=nco if dw else r["GROUPS"])
            acc = acc[:, :, :r["WOUT"]]
        if acc.shape != (nco, f["ho"], r["WOUT"]):
            raise FuncSimError(f"tile output {acc.shape} != ({nco}, {f['ho']}, {r['WOUT']})")
        if r["NOEPI"]:
            if r["OBITS"] != WIDTHS["logits"]:
                raise FuncSimError(f"NOEPI with OBITS = {r['OBITS']}: raw accumulators are"
                                   f" {WIDTHS['logits']} bits")
            y, bpe = nx.saturate(acc, r["OBITS"], signed=bool(r["OSIGNED"])), 4
        else:
            y, bpe = self.epilogue(r, rec, acc, stream, block), 1 if r["OBITS"] <= 8 else 4
        self.write(stream, f["obuf"], f["o_addr"], y, r["OSTRIDE"], bpe, block=block)

    def weights(self, stream, unit, r, f, dw):
        """The weights of a CONV_* / DW_RSA from buffer C, pre-tiled (sim.isa: a conv step's
        ``lanes x width`` weights one line of the executing engine's shape; a DW tap of N
        channels one word): ``(nco, CIN, k, k)`` or ``(nco, 1, k, k)`` int8."""
        nco, k = f["nco"], r["KERNEL"]
        if dw:
            nw = dw_weight_bytes(nco, k, self.b.cfg.N)
            return unpack_dw_weights(self.cread(f["w_addr"], nw), channels=nco, k=k,
                                     n=self.b.cfg.N)
        lanes, width = engine_shape(self.b.cfg, unit)
        shape = dict(cout=nco, cin_g=r["CIN"], k=k, groups=r["GROUPS"], lanes=lanes,
                     width=width)
        return unpack_conv_weights(self.cread(f["w_addr"], conv_weight_bytes(**shape)), **shape)

    def cread(self, addr, n):
        """``n`` bytes of buffer C at ``addr`` (weights)."""
        wmem, _ = self.buf("global", BUFS["C"])
        if addr + n > wmem.size:
            raise FuncSimError("weight read leaves buffer C")
        return wmem[addr:addr + n]

    def att(self, stream, r, f, op, block=0):
        """One attention step of one head (docs/isa.md): K (ATT_KV_*, ATT_KSUM) or Q (ATT_DIV,
        ATT_OUT) is the ``DIM x NTOK`` block at ``x_addr`` in ``XBUF``, V (ATT_KV_*) the block
        at ``w_addr`` in B; the intermediates are read back from where the earlier steps wrote
        them (AUX: S and ksum8, DIV: codes with the zero flag in bit 4)."""
        d, n = r["DIM"], r["NTOK"]
        x = self.read(stream, r["XBUF"], f["x_addr"], d, n, r["XSTRIDE"], r["XSIGNED"],
                      block=block)[None]
        rec = self.params(stream, f["p_addr"], 1)[0]
        keys = ("s_mult_b", "s_mult_c", "ksum_mult_b", "ksum_mult_c", "log2_offset",
                "log2_emin", "out_mult_b", "out_mult_c")
        prm = {k: rec[i:i + 1] for i, k in enumerate(keys)}
        for k in keys:
            self.check_limit(k, prm[k])
        aux = BUFS["AUX"]
        relu = nx.relu(x)
        if op in ("ATT_KV_RDF", "ATT_KV_MAT"):
            v = self.read(stream, BUFS["B"], f["w_addr"], d, n, r["XSTRIDE"], r["XSIGNED"],
                          block=block)
            _, s8 = golden.attention_kv(relu, v[None], prm)
            if f["obuf"] == aux:    # S in tiles of T x S (sim.isa.att_s_offsets)
                mem = self.att_s(stream, op, f["o_addr"], d)
                mem[f["o_addr"] + self.s_off[d]] = (s8[0] & 0xFF).astype(np.uint8)
            else:
                self.write(stream, f["obuf"], f["o_addr"], s8[0], d)
        elif op == "ATT_KSUM":
            _, ksum8 = golden.attention_ksum(relu, prm)
            self.write(stream, f["obuf"], f["o_addr"], ksum8.reshape(1, d), d,
                       store="AUX_A" if f["obuf"] == aux else None)
        elif op == "ATT_DIV":
            ks = self.read(stream, aux, f["w_addr"], 1, d, d, False, store="AUX_A")
            den, _, code = golden.attention_div(relu, ks, prm)
            self.write(stream, f["obuf"], f["o_addr"], (code | (den == 0) << 4).reshape(1, n), n)
        elif op == "ATT_OUT":
            mem = self.att_s(stream, op, f["w_addr"], d)
            s8 = mem[f["w_addr"] + self.s_off[d]].view(np.int8).astype(np.int64)
            div = self.read(stream, BUFS["DIV"], 0, 1, n, n, False)
            _, out = golden.attention_out(relu, s8[None], div & 15, div >> 4 & 1, prm)
            self.write(stream, f["obuf"], f["o_addr"], out[0], n << block, block=block)

    def att_s(self, stream, op, addr, d):
        """The AUX engine store of ``stream`` after checking that S of a ``d``-channel head at
        ``addr`` is line-aligned and inside it (``sim.isa.att_s_offsets``, the layout the MAT's
        weight port reads one line of per cycle)."""
        cfg = self.b.cfg
        line = att_s_line(cfg.S, cfg.T)
        mem, _ = self.buf(stream, BUFS["AUX"])
        if addr % line:
            raise FuncSimError(f"{stream}: {op} with S at AUX {addr}: S is stored in lines of"
                               f" {line} bytes (T x S tiles, sim.isa.att_s_offsets); its address"
                               " must be a multiple of the line")
        if d not in self.s_off:
            self.s_off[d] = att_s_offsets(d, cfg.S, cfg.T)
        if addr + att_s_bytes(d, cfg.S, cfg.T) > mem.size:
            raise FuncSimError(f"{stream}: {op}: S of a {d}-channel head at AUX {addr}"
                               f" ({att_s_bytes(d, cfg.S, cfg.T)} bytes in T x S tiles) leaves"
                               f" AUX ({mem.size} bytes)")
        return mem

    def host_ln(self, ins):
        host_ln(ins.f, read=self._dram_read, write=self._dram_write)

    def _dram_read(self, addr, n):
        if self.io is None:
            return self.dram[addr:addr + n]
        return self.dram_get(np.arange(addr, addr + n))

    def _dram_write(self, addr, data):
        if self.io is None:
            self.dram[addr:addr + len(data)] = data
        else:
            self.dram_put(np.arange(addr, addr + len(data)), data)

    def step(self, stream, unit, ins):
        """Execute one instruction of frame :attr:`frame`; False if it is a WAIT that cannot
        proceed yet (``sim.isa.wait_passes``: the frame's own counters, or with ``prev`` the
        previous frame's)."""
        op = ins.op
        if op == "WAIT":
            return wait_passes(ins, self.frame, lambda f, sem: self.sems.get((f, sem), 0))
        if op == "SIGNAL":
            key = (self.frame, ins["sem"])
            self.sems[key] = self.sems.get(key, 0) + ins["count"]
        elif op == "SETR":
            self.regs.setdefault((stream, unit), {})[REG_NAMES[ins["reg"]]] = ins["value"]
        elif op in ("NOP", "HALT"):
            pass
        elif op == "SETC":
            raise FuncSimError("SETC (a lock-step group's per-core register) in a per-core "
                               "stream: it belongs to a group Binary (sim.lockstep)")
        elif op == "LOAD":
            self.dma(stream, ins, store=False)
        elif op == "STORE":
            self.dma(stream, ins, store=True)
        elif op == "HOST_LN":
            self.host_ln(ins)
        else:
            self.compute(stream, unit, ins)
        return True


def _step(m, key, pc, ins) -> bool:
    """``m.step`` with every failure of a (damaged) instruction turned into a FuncSimError that
    names the stream, unit, position and instruction."""
    try:
        return m.step(key[0], key[1], ins)
    except FuncSimError as e:
        raise FuncSimError(f"{key[0]}/{key[1]} instruction {pc} ({ins.op}): {e}") from None
    except (KeyError, IndexError, ValueError, TypeError, OverflowError, ArithmeticError) as e:
        what = f"unknown key {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
        raise FuncSimError(f"{key[0]}/{key[1]} instruction {pc}: cannot execute {ins!r}"
                           f" ({what})") from None


def _group_step(m, key, pc, ins, st) -> bool:
    """One instruction of a group stream (``key`` = (``groupN``, unit)) on the machine ``m``,
    ``st`` the group unit's :class:`sim.lockstep.GroupUnit` (the rules: :func:`run`)."""
    from .lockstep import LockstepError
    name, unit = key
    where = f"{name}/{unit} instruction {pc} ({ins.op})"
    G = st.G
    try:
        if ins.op == "SETC":
            st.setc(ins, where)
            return True
        rs = st.cores(ins, where)
        cores = [f"core{int(name[5:]) * G + r}" for r in rs]
        if ins.op in timing.COMPUTE_OPS:
            for r, c in zip(rs, cores):
                own = st.core_instr(ins, r, where)
                _step(m, (c, unit), pc, own)
            return True
    except LockstepError as e:
        raise FuncSimError(str(e)) from None
    if ins.op == "WAIT":
        return _step(m, key, pc, ins)
    if ins.op == "SIGNAL":
        k = (m.frame, ins["sem"])
        m.sems[k] = m.sems.get(k, 0) + ins["count"] * len(cores)
        return True
    for c in cores:
        _step(m, (c, unit), pc, ins)
    return True


def run(binary, x, *, order: str = "ld_first", return_machine: bool = False) -> dict:
    """Run ``binary`` on the integer input ``x``; returns ``{output name: int64 array}``.

    A lock-step group Binary (``groups`` = G > 1, :func:`sim.lockstep.group_binary`) runs as
    its group controllers would: one in-order queue per group and unit kind; a SETC sets the
    mask or a core's offset / bound (:class:`sim.lockstep.GroupUnit`); a WAIT blocks the
    group's unit (the conjunction of its cores' WAITs); a SIGNAL adds its count once per core
    of the mask (what each participant would signal); a SETR writes the registers of the
    cores of the mask; a compute instruction is expanded to each participant's own
    instruction (:meth:`sim.lockstep.GroupUnit.core_instr`) and executed on that core."""
    prog = binary.prog
    x = golden._check_input(prog, x)
    m = _Machine(binary)
    binary.write_input(m.dram, x)
    gstate = None
    if getattr(binary, "groups", 1) != 1:
        from .lockstep import GroupUnit, LockstepError, group_queues
        try:
            queues = group_queues(binary)
        except LockstepError as e:
            raise FuncSimError(f"group Binary: {e}") from None
        gstate = {k: GroupUnit(binary.groups) for k in queues if k[0] != "global"}
    else:
        queues = build_queues(binary)
    keys = list(queues)
    if order == "ld_last":
        keys = [k for k in keys if k[0] != "global"] + [k for k in keys if k[0] == "global"]
    elif order != "ld_first":
        raise ValueError(f"order must be ld_first or ld_last, got {order!r}")
    pc = {k: 0 for k in keys}
    while True:
        progress = False
        for k in keys:
            q = queues[k]
            while pc[k] < len(q):
                if gstate is not None and k in gstate:
                    ok = _group_step(m, k, pc[k], q[pc[k]][0], gstate[k])
                else:
                    ok = _step(m, k, pc[k], q[pc[k]][0])
                if not ok:
                    break
                pc[k] += 1
                progress = True
                if order == "ld_last" and k[0] == "global":
                    break      # let the cores run again after every DMA instruction
        if all(pc[k] == len(queues[k]) for k in keys):
            break
        if not progress:
            stuck = {f"{k[0]}/{k[1]}": repr(queues[k][pc[k]][0]) for k in keys
                     if pc[k] < len(queues[k])}
            raise FuncSimError(f"deadlock: every unit waits: {stuck}")
    out = binary.read_outputs(m.dram)
    if return_machine:
        return out, m
    return out


def run_frames(binary, xs, *, order: str = "oldest", contexts: int = 2,
               fences: bool = True) -> list:
    """Run ``binary`` on the inputs ``xs`` (one per frame) back to back, as the dispatcher's
    ``contexts`` instruction contexts do (streaming mode): every unit queue is replayed once
    per frame, frame f's copies start once frame f - ``contexts`` has completed, and the
    frames then interleave as their semaphores allow. Returns ``[{output name: int64
    array}]``, one dict per frame.

    What keeps the frames apart is in the Binary (``compile(..., stream=True)`` writes it,
    :func:`sim.compile.streaming.insert_fences`): each frame has its own semaphore counters
    and its fence WAITs (``prev`` = 1) read the previous frame's (``sim.isa.wait_passes``).
    The hardware keeps two banks of counters, by frame parity; so that frame f may reuse
    frame f - 2's bank, every queue of frame f - 1 must have passed its fence WAITs before
    frame f signals anything: checked here (:class:`FuncSimError` otherwise). The host
    double-buffers the input image and the outputs (each frame reads its own input and
    writes its own outputs; every other DRAM byte is shared by the frames).

    ``order``: ``"oldest"`` lets the older frame run as far as it can first, ``"youngest"``
    the younger (each exposes other missing fences). ``fences=False`` is a what-if for tests:
    every ``prev`` WAIT passes at once (the fences dropped)."""
    if getattr(binary, "groups", 1) != 1:
        raise FuncSimError("run_frames runs per-core Binaries (a group Binary: "
                           "sim.lockstep.expand it, or run it one frame at a time)")
    if order not in ("oldest", "youngest"):
        raise ValueError(f"order must be oldest or youngest, got {order!r}")
    if not isinstance(contexts, int) or contexts < 1:
        raise ValueError(f"contexts must be a positive integer, got {contexts!r}")
    prog = binary.prog
    xs = [golden._check_input(prog, x) for x in xs]
    if not xs:
        raise ValueError("run_frames needs at least one input")
    m = _Machine(binary)
    sym_in = binary.symbols[f"tensor:{prog.inputs[0]}"]
    outs = []
    for name in prog.outputs:
        t = prog.tensors[name]
        outs.append((binary.symbols[f"tensor:{name}"]["addr"],
                     int(np.prod(t.shape)) * (4 if t.bits > 8 else 1)))
    m.io = {}
    for f, x in enumerate(xs):
        tmp = np.zeros_like(m.dram)
        binary.write_input(tmp, x)
        lo = sym_in["addr"]
        m.io[f] = {lo: tmp[lo:lo + sym_in["nbytes"]].copy(),   # (im2col: the unfolded bytes)
                   **{a: np.zeros(n, np.uint8) for a, n in outs}}
    base = build_queues(binary)
    keys = list(base)
    prevs = {k: [pc for pc, (i, _) in enumerate(q) if i.op == "WAIT" and i.get("prev", 0)]
             for k, q in base.items()}
    last_prev = {k: (p[-1] if p else -1) for k, p in prevs.items()}
    nf = len(xs)
    pc = [{k: 0 for k in keys} for _ in range(nf)]

    def done(f):
        return all(pc[f][k] == len(base[k]) for k in keys)

    def started(f):
        return f < contexts or done(f - contexts)
    frames = list(range(nf)) if order == "oldest" else list(range(nf - 1, -1, -1))
    while not all(done(f) for f in range(nf)):
        progress = False
        for f in frames:
            if not started(f) or done(f):
                continue
            m.frame = f
            for k in keys:
                q = base[k]
                while pc[f][k] < len(q):
                    ins = q[pc[f][k]][0]
                    if fences and ins.op == "SIGNAL" and f >= 2 and any(
                            pc[f - 1][j] <= last_prev[j] for j in keys):
                        raise FuncSimError(
                            f"frame {f} {k[0]}/{k[1]} instruction {pc[f][k]}: SIGNAL into the "
                            f"semaphore bank of frame {f - 2} while frame {f - 1} has not passed"
                            " all its fence WAITs on it (two banks; sim.compile.streaming)")
                    if not fences and ins.op == "WAIT" and ins.get("prev", 0):
                        ok = True
                    else:
                        try:
                            ok = _step(m, k, pc[f][k], ins)
                        except FuncSimError as e:
                            raise FuncSimError(f"frame {f}: {e}") from None
                    if not ok:
                        break
                    pc[f][k] += 1
                    progress = True
        if not progress:
            stuck = {f"frame {f} {k[0]}/{k[1]}": repr(base[k][pc[f][k]][0])
                     for f in range(nf) if started(f) for k in keys if pc[f][k] < len(base[k])}
            raise FuncSimError(f"deadlock: every unit waits: {stuck}")
    res = []
    for f in range(nf):
        img = m.dram.copy()
        for lo, buf in m.io[f].items():
            img[lo:lo + buf.size] = buf
        res.append(binary.read_outputs(img))
    return res
