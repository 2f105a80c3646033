"""ISA: encode/decode round trips over every opcode, hand-checked bit layout, overflow errors."""
import numpy as np
import pytest

from sim.isa import (FORMATS, OPCODE_BITS, WORD_BITS, Instr, IsaError, decode, decode_stream,
                     encode, encode_stream)


def _ranges(bits, signed):
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


@pytest.mark.parametrize("op", sorted(FORMATS))
def test_round_trip_random_and_extremes(op):
    rng = np.random.default_rng(sum(map(ord, op)))
    fields = FORMATS[op][2]
    cases = []
    for pick in ("min", "max"):
        cases.append({n: _ranges(b, s)[0 if pick == "min" else 1] for n, b, s in fields})
    for _ in range(50):
        cases.append({n: int(rng.integers(_ranges(b, s)[0], _ranges(b, s)[1], endpoint=True))
                      for n, b, s in fields})
    for f in cases:
        w = encode(Instr(op, f))
        assert 0 <= w < (1 << WORD_BITS)
        d = decode(w)
        assert d.op == op and d.f == f


def test_bit_layout_by_hand():
    # SIGNAL = opcode 1 in bits [4:0]; unit in [7:5]; sem in [23:8]; count in [31:24]
    w = encode(Instr("SIGNAL", dict(unit=3, sem=5, count=2)))
    assert w == 1 | (3 << 5) | (5 << 8) | (2 << 24)
    # SETR = opcode 3; unit [7:5]; reg [15:8]; value [47:16] two's complement
    w = encode(Instr("SETR", dict(unit=4, reg=13, value=-1)))
    assert w == 3 | (4 << 5) | (13 << 8) | (0xFFFFFFFF << 16)
    # LOAD = opcode 4; buf [7:5]; dram_addr [39:8]; buf_addr [60:40] (21 bits: C up to 2 MiB);
    # count [76:61]; length [96:77]; stride [121:97]; core [127:122]
    f = dict(buf=1, dram_addr=0xDEADBEEF, buf_addr=0x1F2345, count=7, length=1000,
             stride=(1 << 25) - 3, core=5)
    w = encode(Instr("LOAD", f))
    assert w == (4 | (1 << 5) | (0xDEADBEEF << 8) | (0x1F2345 << 40) | (7 << 61) | (1000 << 77)
                 | (((1 << 25) - 3) << 97) | (5 << 122))
    # CONV_MAT = opcode 6; x_addr [23:5] (19 bits: B/OUT); w_addr [44:24] and p_addr [65:45]
    # (21 bits: C); o_addr [84:66]; nco [96:85]; hin [107:97]; ho [118:108]; pad_t [121:119];
    # pad_b [124:122]; obuf [127:125]
    f = dict(x_addr=(1 << 19) - 1, w_addr=(1 << 21) - 8, p_addr=(1 << 20) + 32,
             o_addr=12345, nco=4095, hin=2047, ho=1000, pad_t=3, pad_b=7, obuf=2)
    w = encode(Instr("CONV_MAT", f))
    assert w == (6 | (((1 << 19) - 1) << 5) | (((1 << 21) - 8) << 24) | (((1 << 20) + 32) << 45)
                 | (12345 << 66) | (4095 << 85) | (2047 << 97) | (1000 << 108) | (3 << 119)
                 | (7 << 122) | (2 << 125))
    assert w >> 127 == 0 and decode(w).f == f


def test_buffer_address_widths():
    """The address fields and the buffer limits: B and OUT through 19-bit x_addr / o_addr, C
    through 21-bit w_addr / p_addr and LOAD/STORE buf_addr; sim.config and hw follow."""
    from hw.core.ports import ADDR_BITS as PORT_BITS
    from hw.system.dma import BUF_ADDR_BITS
    from sim.config import AccelConfig, ConfigError
    from sim.isa import ACT_ADDR_BITS, ADDR_BITS, BUF_MAX_BYTES, C_ADDR_BITS
    bits = {op: {n: b for n, b, _ in FORMATS[op][2]} for op in ("CONV_MAT", "LOAD", "STORE")}
    assert bits["CONV_MAT"]["x_addr"] == bits["CONV_MAT"]["o_addr"] == ACT_ADDR_BITS == 19
    assert bits["CONV_MAT"]["w_addr"] == bits["CONV_MAT"]["p_addr"] == C_ADDR_BITS == 21
    assert bits["LOAD"]["buf_addr"] == bits["STORE"]["buf_addr"] == C_ADDR_BITS
    assert BUF_MAX_BYTES == {"B": 1 << 19, "C": 1 << 21, "OUT": 1 << 19}
    assert ADDR_BITS == PORT_BITS == BUF_ADDR_BITS == 21
    AccelConfig(buf_c_bytes=2 << 20)
    for name, size in (("buf_c_bytes", (2 << 20) + 1024), ("buf_b_bytes", (512 << 10) + 1024),
                       ("buf_out_bytes", (512 << 10) + 1024)):
        with pytest.raises(ConfigError, match=name):
            AccelConfig(**{name: size})


@pytest.mark.parametrize("op", sorted(FORMATS))
def test_every_field_overflow_is_named(op):
    for name, bits, signed in FORMATS[op][2]:
        lo, hi = _ranges(bits, signed)
        for bad in (hi + 1, lo - 1):
            with pytest.raises(IsaError, match=f"{op}.{name}"):
                encode(Instr(op, {name: bad}))


def test_formats_fit_the_word():
    for op, (_, _, fields) in FORMATS.items():
        assert OPCODE_BITS + sum(b for _, b, _ in fields) <= WORD_BITS, op


def test_decode_errors():
    with pytest.raises(IsaError, match="unknown opcode"):
        decode(31)
    with pytest.raises(IsaError, match="non-zero bits"):
        decode(1 << 127)                # NOP has no fields: high bits must be zero
    with pytest.raises(IsaError, match="128-bit"):
        decode(1 << 128)
    with pytest.raises(IsaError, match="unknown opcode"):
        Instr("FROB")
    with pytest.raises(IsaError, match="unknown field"):
        encode(Instr("NOP", dict(x=1)))
    with pytest.raises(IsaError, match="integer expected"):
        encode(Instr("HALT", dict(unit="MAT")))


def test_stream_round_trip():
    ins = [Instr("LOAD", dict(buf=0, dram_addr=64, buf_addr=0, count=3, length=10, stride=100)),
           Instr("WAIT", dict(unit=4, sem=65535, count=4095)),
           Instr("CONV_MAT", dict(x_addr=(1 << 19) - 1, nco=4095, hin=2047, ho=1, obuf=2)),
           Instr("HALT", dict(unit=5))]
    arr = encode_stream(ins)
    assert arr.shape == (4, 2) and arr.dtype == np.uint64
    back = decode_stream(arr)
    assert [(b.op, b.f) for b in back] == [(i.op, decode(encode(i)).f) for i in ins]


# -- the attention's S in AUX (docs/isa.md "S in AUX") ------------------------------------------

@pytest.mark.parametrize("S,T", [(1, 1), (2, 3), (3, 2), (4, 4), (5, 6), (6, 6), (8, 8), (4, 8)])
def test_att_s_layout_serves_every_window_as_one_line(S, T):
    """Exhaustive over d = 1..20: every S[j, i] has its own byte inside ``att_s_bytes``; the
    ATT_OUT window of rows j0..j0+T-1 and columns i0..i0+S-1 (j0 % T == 0, i0 % S == 0) is the
    line at a multiple of ``att_s_line`` (a power of two >= T*S), element (k, l) at ``k*S + l``;
    an ATT_KV write of columns i0.. of one row is consecutive bytes inside one line."""
    from sim.isa import att_s_bytes, att_s_line, att_s_offsets
    line = att_s_line(S, T)
    assert line >= max(2, T * S) and line & (line - 1) == 0 and line < 2 * max(2, T * S)
    for d in range(1, 21):
        off = att_s_offsets(d, S, T)
        assert off.shape == (d, d)
        assert len(np.unique(off)) == d * d
        assert off.min() >= 0 and off.max() < att_s_bytes(d, S, T)
        assert att_s_bytes(d, S, T) == -(-d // S) * -(-d // T) * line       # no other padding
        for j0 in range(0, d, T):
            for i0 in range(0, d, S):
                base = off[j0, i0]
                assert base % line == 0
                for k in range(min(T, d - j0)):
                    for li in range(min(S, d - i0)):
                        assert off[j0 + k, i0 + li] == base + k * S + li
    # the paper's heads (d = 16 at S = T = 8): S fills its 256 bytes exactly
    assert att_s_bytes(16, 8, 8) == 256 and att_s_line(8, 8) == 64
