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
    # LOAD = opcode 4; buf [7:5]; dram_addr [39:8]; buf_addr [59:40]; count [75:60];
    # length [95:76]; stride [123:96]
    f = dict(buf=1, dram_addr=0xDEADBEEF, buf_addr=0x12345, count=7, length=1000, stride=99)
    w = encode(Instr("LOAD", f))
    assert w == (4 | (1 << 5) | (0xDEADBEEF << 8) | (0x12345 << 40) | (7 << 60) | (1000 << 76)
                 | (99 << 96))


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
           Instr("CONV_MAT", dict(x_addr=(1 << 19) - 1, nco=4095, hin=4095, ho=1, obuf=2)),
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
