"""What-ifs of weight loading (not executable Binaries: the weights never arrive): how much of a
frame the weight LOADs cost, as upper estimates of what any weight prefetch could win.

``python -m tb.whatif_weights --model b1-r224 --config paper [--prefetch]`` compiles the model,
then times (sim.perf) the Binary with, in turn, each layer's first weight group, every weight
group but the head's linears, and every weight group made free: their LOADs and WAITs removed
and their SIGNAL moved to the front of the LD queue. Prints cycles and FPS per variant and the
layers whose first group alone costs more than 50 cycles.
"""

from __future__ import annotations

import argparse
import json
import sys

from sim import zoo
from sim.compile import compile as compile_
from sim.compile.prefetch import weight_groups
from sim.config import AccelConfig
from sim.perf import simulate


def free_groups(binary, keep):
    """``binary`` with the weight groups whose index is not kept (``keep(i, layer)`` False)
    made free. Returns a copy of the streams: ``(global, tags)``."""
    g, tg = binary.streams["global"], binary.tags["global"]
    drop, front = set(), []
    for i, (j, k) in enumerate(weight_groups(g)):
        if not keep(i, tg[k]):
            drop.update(range(j, k + 1))
            front.append((g[k], tg[k]))
    rest = [(g[x], tg[x]) for x in range(len(g)) if x not in drop]
    new = front + rest
    return [x[0] for x in new], [x[1] for x in new]


def _cycles(binary, streams):
    saved = binary.streams["global"], binary.tags["global"]
    binary.streams["global"], binary.tags["global"] = streams
    try:
        return simulate(binary).cycles
    finally:
        binary.streams["global"], binary.tags["global"] = saved


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="b1-r224", help="sim.zoo model: tiny or an "
                    "EfficientViT name like b1-r224 (default b1-r224)")
    ap.add_argument("--config", default="paper", help="accelerator config (default paper)")
    ap.add_argument("--prefetch", action="store_true", help="compile with the weight prefetch")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    try:
        cfg = AccelConfig.from_string(a.config)
        prog = zoo.tiny() if a.model == "tiny" else zoo.build(a.model, seed=0)
        b = compile_(prog, cfg, prefetch=a.prefetch)
    except ValueError as e:         # a bad model or config name, a network that does not map
        print(f"error: {e}", file=sys.stderr)
        return 2
    g, tg = b.streams["global"], b.tags["global"]
    groups = weight_groups(g)
    first = {}
    for i, (_, k) in enumerate(groups):
        first.setdefault(tg[k], i)
    linears = {li for li, n in enumerate(prog.nodes) if n.op == "linear"}
    base = simulate(b).cycles
    res = {"model": a.model, "config": a.config, "prefetch": a.prefetch, "cycles": base}
    res["first_groups_free"] = _cycles(b, free_groups(b, lambda i, li: first[li] != i))
    res["all_but_linears_free"] = _cycles(b, free_groups(b, lambda i, li: li in linears))
    res["all_free"] = _cycles(b, free_groups(b, lambda i, li: False))
    per = {}
    for li, i in first.items():
        c = _cycles(b, free_groups(b, lambda j, _, i=i: j != i))
        if base - c > 50:
            per[b.layers[li]["name"]] = base - c
    res["first_group_alone"] = per
    if a.json:
        print(json.dumps(res))
        return
    f = cfg.clock_mhz * 1e6
    for k in ("cycles", "first_groups_free", "all_but_linears_free", "all_free"):
        print(f"{k:22s} {res[k]:8d} cycles  {f / res[k]:7.1f} FPS")
    for name, d in per.items():
        print(f"  first group of {name}: {d} cycles")


if __name__ == "__main__":
    sys.exit(main())
