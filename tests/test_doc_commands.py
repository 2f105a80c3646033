"""Issue #17: every `python -m quant ...` command printed in README.md and docs/*.md is run.

The commands are read from the documents (fenced code blocks and inline code spans), so a
command added to the docs is run too. They run in order of appearance in one temporary folder
(a `quantize -o X` before an `evaluate X`), in-process through `quant.cli.main`, and must exit 0.
The default suite runs a small variant of each (B0-R64, few images and iterations); the
documented command itself runs under `-m regress` (hours: the B1-R224 `evaluate --golden` on
all 125 sample images alone takes ~45 min).
"""

import re
import shlex
from pathlib import Path

import pytest

import doccmds
from quant.cli import main

REPO = doccmds.REPO
DATA = doccmds.DATA
PREFIX = "python -m quant"


def doc_commands() -> list[tuple[str, str]]:
    """``[(document, command)]`` in order of appearance."""
    return doccmds.doc_commands(PREFIX)


def _args(cmd: str) -> list[str]:
    assert cmd.startswith(PREFIX)
    return shlex.split(cmd[len(PREFIX):])


_sample_folder = doccmds.sample_folder


def _data_path(args, data: Path):
    """The documented data path replaced by ``data``; an `evaluate` that relies on the default
    folder (``quant.cli.DEFAULT_DATA``) gets ``--data`` when that folder is absent."""
    args = [str(data) if a == "../shared/data/imagenet-sample" else a for a in args]
    if data != DATA and args[:1] == ["evaluate"] and "--data" not in args:
        args += ["--data", str(data)]
    return args


def small_variant(args: list[str]) -> list[str]:
    """The same command on B0-R64 with few images / iterations."""
    a = ["b0-r64" if re.fullmatch(r"b[0-3](-r\d+)?", x) else x for x in args]
    if not a or a[0].startswith("-"):
        return a
    cmd = a[0]

    def setopt(flag, value):
        if flag in a:
            a[a.index(flag) + 1] = value
        else:
            a.extend([flag, value])
    if cmd == "quantize":
        setopt("--calib-size", "4")
        if "--recon-iters" not in a:
            setopt("--recon-iters", "2")
    elif cmd == "evaluate":
        setopt("--limit", "2")
    elif cmd == "bench":
        setopt("--calib-size", "4")
    elif cmd == "ablation":
        setopt("--calib-size", "4")
        setopt("--eval-size", "4")
    return a


def _checkpoint(model: str, path: Path):
    """A state dict with the official key names (random weights) for a `--checkpoint W.pt`."""
    import torch
    from quant.models import create_model
    m, _ = create_model(model)
    torch.save(m.state_dict(), path)


def _run_all(tmp_path, monkeypatch, transform):
    import torch
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    cmds = doc_commands()
    assert len(cmds) >= 10, cmds           # the extraction found the documented commands
    data = _sample_folder(tmp_path)
    seen = set()
    for doc, cmd in cmds:
        args = transform(_data_path(_args(cmd), data))
        if tuple(args) in seen:            # the same command printed twice runs once
            continue
        seen.add(tuple(args))
        if "--checkpoint" in args:
            ck = tmp_path / args[args.index("--checkpoint") + 1]
            if not ck.exists():
                model = args[args.index("--model") + 1] if "--model" in args else "b1-r224"
                _checkpoint(model, ck)
        try:
            rc = main(args)
        except SystemExit as e:            # --help
            rc = e.code
        assert rc == 0, f"{doc}: `{cmd}` (ran as {args}) exited {rc}"


def test_doc_commands_extracted():
    cmds = [c for _, c in doc_commands()]
    assert f"{PREFIX} ablation --model b1-r224 --synthetic --json" in cmds
    assert f"{PREFIX} --help" in cmds
    for c in cmds:
        assert "`" not in c and "#" not in c, c


def test_doc_commands_small_variants(tmp_path, monkeypatch):
    _run_all(tmp_path, monkeypatch, small_variant)


@pytest.mark.regress
def test_doc_commands_as_documented(tmp_path, monkeypatch):
    _run_all(tmp_path, monkeypatch, lambda a: a)
