"""``python -m runtime``: run a compiled Binary on the accelerator (ZCU102 Linux).

    python -m runtime run MODEL.bin.npz --image x.jpg [--uio /dev/uio0 | --uio-name NAME |
                      --mem-addr 0xA0000000] [--udmabuf /dev/udmabuf0] [--regmap FILE]
                      [--timeout S] [--poll] [--watchdog CYCLES] [--top K] [--json]

Bad input (a Binary for another config, a missing device, a timeout, an error code of the
accelerator, an unreadable file) prints one line naming the cause and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .device import DeviceError
from .regmap import ENV, RegMapFileError
from .runner import RunError

__all__ = ["main"]


class UserError(Exception):
    pass


def _input(binary, path: Path):
    """The integer input tensor from ``path``: ``.npy`` (integers: already quantized; floats:
    a normalised (C, H, W) image) or a picture (JPEG/PNG, preprocessed like ImageNet's
    evaluation, ``quant.data.load_image``; needs torch and PIL)."""
    from sim import golden
    t = binary.prog.tensors[binary.prog.inputs[0]]
    if not path.is_file():
        raise UserError(f"{path}: no such input file")
    if path.suffix.lower() == ".npy":
        try:
            x = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: not a .npy array: {e}") from None
        if x.dtype.kind in "iu":
            return x
        img = x
    else:
        try:
            from quant.data import load_image
        except ImportError as e:
            raise UserError(f"reading a picture needs torch and PIL ({e}); pass a .npy "
                            f"instead") from None
        img = load_image(path, int(t.shape[-1]))[0].numpy()
    return golden.quantize_input(img, t)


def _device(args):
    from .mmio import MmioDevice, find_uio
    from .regmap import load_regmap
    rm = load_regmap(args.regmap)
    if args.mem_addr is not None:
        return MmioDevice(mem_addr=args.mem_addr, udmabuf=args.udmabuf, sysfs=args.sysfs,
                          regmap=rm)
    uio = args.uio or (find_uio(args.uio_name, sysfs=args.sysfs) if args.uio_name else
                       "/dev/uio0")
    return MmioDevice(uio=uio, udmabuf=args.udmabuf, sysfs=args.sysfs, regmap=rm)


def _cmd_run(args) -> int:
    from sim.compile import Binary, CompileError
    from .runner import run
    try:
        binary = Binary.load(args.binary)
    except CompileError as e:
        raise UserError(str(e)) from None
    x = _input(binary, Path(args.image))
    with _device(args) as dev:
        res = run(dev, binary, x, timeout_s=args.timeout, poll=args.poll or None,
                  watchdog=args.watchdog)
    cfg = binary.cfg
    ms = res.counters.get("CYCLES", 0) / (cfg.clock_mhz * 1e3)
    if args.json:
        print(json.dumps({**res.as_dict(), "latency_ms": ms,
                          "outputs": {k: v.tolist() for k, v in res.outputs.items()}}))
        return 0
    for name, v in res.outputs.items():
        flat = v.reshape(-1)
        top = np.argsort(-flat, kind="stable")[:args.top]
        print(f"{name}: top-{len(top)} " + ", ".join(f"{i} ({flat[i]})" for i in top))
    print(f"{res.counters.get('CYCLES', 0)} cycles = {ms:.3f} ms at {cfg.clock_mhz:g} MHz; "
          f"{res.host_requests} host LayerNorm(s); counters " +
          " ".join(f"{k}={v}" for k, v in res.counters.items()))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runtime", description=(
        "Run a Binary (compiled with `python -m sim compile` for the bitstream's config) on the "
        "Trio-ViT accelerator on a ZCU102 running Linux, and print its outputs and "
        "performance counters. Needs the bitstream loaded, the register window as a UIO device "
        "(or /dev/mem) and a u-dma-buf buffer; see docs/board.md."))
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    s = sub.add_parser("run", help="run a Binary on one input", description=(
        "Check that the Binary's config is the bitstream's (CONFIG_HASH), place it in the "
        "buffer, start, wait for the interrupt (or poll), serve the host LayerNorm, read the "
        "outputs and the counters. Exit 2 with one line on any bad input."))
    s.add_argument("binary", help="the compiled Binary (.npz of `python -m sim compile`)")
    s.add_argument("--image", "-i", required=True, metavar="FILE",
                   help="the input: a picture (JPEG/PNG; needs torch) or .npy (integers: "
                        "quantized already; floats: a normalised C x H x W image)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--uio", metavar="DEV", help="UIO device of the register window (default "
                   "/dev/uio0; interrupt-driven)")
    g.add_argument("--uio-name", metavar="NAME", help="find the UIO device by its name in sysfs "
                   "(the device-tree node's name)")
    g.add_argument("--mem-addr", type=lambda v: int(v, 0), metavar="ADDR",
                   help="physical address of the register window through /dev/mem (polls; "
                        "0xA0000000 in the block design of `python -m hw build zcu102`)")
    s.add_argument("--udmabuf", default="/dev/udmabuf0", metavar="DEV",
                   help="the u-dma-buf device of the buffer (default /dev/udmabuf0)")
    s.add_argument("--regmap", metavar="FILE", help=f"the generated register-map module "
                   f"(trio_regmap.py of the build tree; default ${ENV}, else hw.system.regmap)")
    s.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for each interrupt / event (default 10)")
    s.add_argument("--poll", action="store_true", help="poll IRQ_STATUS instead of waiting for "
                   "the interrupt")
    s.add_argument("--watchdog", type=int, default=0, metavar="CYCLES",
                   help="WATCHDOG register: cycles without progress before error 4 (0: off)")
    s.add_argument("--top", type=int, default=5, help="how many top logits to print (default 5)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--sysfs", default="/sys", help=argparse.SUPPRESS)
    s.set_defaults(func=_cmd_run)
    return p


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UserError, RunError, DeviceError, RegMapFileError, ValueError, TypeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        parser.exit(2, f"{parser.prog}: error: {msg}\n")


if __name__ == "__main__":
    sys.exit(main())
