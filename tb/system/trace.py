"""Per-instruction timing of an ``hw.system.Accelerator`` run, and its diff with ``sim.perf``.

The RTL side (:func:`record`, a cocotb coroutine): every cycle it samples the accelerator's
``q<i>_pc`` registers (instructions taken from queue ``i`` by its unit: the dispatcher FIFO's
``valid & ready``) and the ``cyc`` register (the ``CYCLES`` counter), and records for each
instruction the counter value in the cycle its unit took it. A unit takes a core
instruction when it fetches it, a WAIT when it is satisfied, a LOAD / STORE when its DMA engine
accepts the descriptor, a HOST_LN when the CPU acknowledges it.

The model side (:func:`model_takes`): ``sim.perf.simulate(..., trace=...)`` gives the same event
per instruction (its ``start``: the fetch, or the cycle a WAIT is consumed, or a LOAD / STORE is
accepted), plus what it charges before it (a HOST_LN: the cycle it is issued, its ``start``; the
take is ``start`` + its busy time).

:func:`diff` walks both per queue and reports, per queue, the instruction after which the gap
between the RTL's and the model's time grows (the *first divergence*), and the growth of the
gap over each instruction kind (where the cycles go).
"""

from __future__ import annotations

from collections import defaultdict

__all__ = ["record", "host_service", "model_takes", "diff", "format_diff"]


async def host_service(dut, out: list) -> None:
    """Append to ``out`` the cycles each host request stayed open (``STATUS.HOST_REQ`` high:
    from the HOST_LN reaching the HOST unit to the CPU's ``HOST_ACK``), the testbench CPU's
    service time that ``sim.perf`` is given in place of the board CPU's (cocotb; cheap: it
    wakes on the request's edges only)."""
    from cocotb.triggers import FallingEdge, RisingEdge
    try:
        req, cyc = dut.status_host_req, dut.cyc
    except AttributeError:          # not this design's names: nothing measured
        return
    while True:
        await RisingEdge(req)
        rise = int(cyc.value)
        await FallingEdge(req)
        out.append(int(cyc.value) - rise)


async def record(dut, queues: int, out: list, bursts: list | None = None) -> None:
    """Append ``(queue, index, cycle)`` to ``out`` for every instruction taken (cocotb).
    ``bursts`` (a list): also append ``(AR cycle, arid, araddr, beats, first beat cycle, last
    beat cycle)`` of every read burst on ``m_axi`` (``arid``: the read arbiter's manager, 0
    the dispatcher, 1 the LD engine), in the order of their AR handshakes (the memory answers
    in order): what the dispatcher and the LD engine asked for and when the data came."""
    from cocotb.triggers import ReadOnly, RisingEdge
    pcs = [getattr(dut, f"q{i}_pc") for i in range(queues)]
    cyc = dut.cyc
    prev = [0] * queues
    if bursts is not None:
        ar = [getattr(dut, f"m_axi__ar{n}") for n in ("valid", "ready", "id", "addr", "len")]
        rv, rr, rl = dut.m_axi__rvalid, dut.m_axi__rready, dut.m_axi__rlast
        pending = []                        # bursts whose data have not all come
    while True:
        await RisingEdge(dut.clk)
        await ReadOnly()
        for i, h in enumerate(pcs):
            v = int(h.value)
            if v != prev[i]:
                if v < prev[i]:             # a new run (START resets the counters)
                    prev[i] = 0
                now = int(cyc.value) - 1    # both registers moved at this edge
                out.extend((i, k, now) for k in range(prev[i], v))
                prev[i] = v
        if bursts is not None:
            now = int(cyc.value)            # this cycle's handshakes
            if int(rv.value) and int(rr.value) and pending:
                b = pending[0]
                if b[4] is None:
                    b[4] = now
                if int(rl.value):
                    b[5] = now
                    bursts.append(tuple(pending.pop(0)))
            if int(ar[0].value) and int(ar[1].value):
                pending.append([now, int(ar[2].value), int(ar[3].value), int(ar[4].value) + 1,
                                None, None])


def model_takes(binary, env) -> dict:
    """``{queue: [(op, tag, take, start), ...]}`` of ``sim.perf`` for ``binary`` under ``env``:
    ``take`` the cycle the unit takes the instruction as the RTL's counter sees it (see the
    module doc), ``start`` the model's trace start."""
    from sim import perf
    from sim.image import queue_names
    tr = []
    perf.simulate(binary, env=env, trace=tr)
    idx = {k: i for i, k in enumerate(queue_names(binary.cfg.L))}
    out = defaultdict(list)
    for stream, unit, op, tag, start, nxt in tr:
        take = nxt if op == "HOST_LN" else start
        out[idx[(stream, unit)]].append((op, tag, int(take), int(start)))
    return dict(out)


def diff(binary, rtl: list, model: dict) -> dict:
    """Per queue: ``first`` (index, op, rtl, model, gap) of the first instruction whose gap
    (RTL take - model take) differs from the first instruction's, ``growth`` {op: cycles the
    gap grew over instructions of that op}, ``final`` gap; and the same growth summed over
    queues."""
    from sim.funcsim import build_queues
    from sim.image import queue_names
    q = build_queues(binary)
    names = queue_names(binary.cfg.L)
    by_q = defaultdict(dict)
    for i, k, c in rtl:
        by_q[i][k] = c
    res = {}
    for qi, key in enumerate(names):
        ins = q[key]
        m = model.get(qi, [])
        r = by_q.get(qi, {})
        rows = []
        for k, (instr, _tag) in enumerate(ins):
            if k in r and k < len(m):
                rows.append((k, instr.op, r[k], m[k][2], r[k] - m[k][2]))
        if not rows:
            continue
        growth = defaultdict(int)
        first = None
        for a, b in zip(rows, rows[1:]):
            d = b[4] - a[4]
            if d:
                growth[f"{a[1]}->{b[1]}"] += d
                if first is None:
                    first = (a, b)
        res[f"{qi}:{key[0]}/{key[1]}"] = {"n": len(ins), "recorded": len(r),
                                          "offset": rows[0][4], "final": rows[-1][4],
                                          "first": first, "growth": dict(growth)}
    return res


def format_diff(d: dict, top: int = 8) -> str:
    lines = []
    for q, v in d.items():
        lines.append(f"{q}: {v['recorded']}/{v['n']} taken, gap RTL - model {v['offset']:+d} at "
                     f"the first, {v['final']:+d} at the last instruction")
        if v["first"]:
            a, b = v["first"]
            lines.append(f"    first divergence: #{a[0]} {a[1]} (rtl {a[2]}, model {a[3]}) -> "
                         f"#{b[0]} {b[1]} (rtl {b[2]}, model {b[3]}): {b[4] - a[4]:+d}")
        g = sorted(v["growth"].items(), key=lambda kv: -abs(kv[1]))[:top]
        lines.append("    gap growth by transition: " + ", ".join(f"{k} {n:+d}" for k, n in g))
    return "\n".join(lines)
