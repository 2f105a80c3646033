"""sim.fileio: a failed write leaves neither a partial target nor a temporary file, and what it
writes gets the permissions of an ordinary ``open(path, "w")`` under the umask."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sim.fileio import atomic_dir, atomic_open, atomic_write


def test_atomic_write_creates_parents_and_replaces(tmp_path):
    p = tmp_path / "a" / "b.txt"
    atomic_write(p, "one")
    atomic_write(p, b"two")
    assert p.read_text() == "two"
    assert [f.name for f in p.parent.iterdir()] == ["b.txt"]


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "x.bin"
    atomic_write(p, b"old")
    with pytest.raises(RuntimeError):
        with atomic_open(p) as f:
            f.write(b"half")
            raise RuntimeError("disk full")
    assert p.read_bytes() == b"old"
    assert [f.name for f in tmp_path.iterdir()] == ["x.bin"]


def test_atomic_dir_replaces_a_tree_or_leaves_it(tmp_path):
    out = tmp_path / "tree"
    with atomic_dir(out) as d:
        (d / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as d:
            (d / "b").write_text("2")
            raise RuntimeError("tool crashed")
    assert [p.name for p in out.iterdir()] == ["a"]
    with atomic_dir(out) as d:
        (d / "c").write_text("3")
    assert [p.name for p in out.iterdir()] == ["c"]
    assert [p.name for p in tmp_path.iterdir()] == ["tree"]        # no temporary left


# -- permissions: those of an ordinary open(path, "w") / os.mkdir(path) under the umask ---------
# Each case runs in a child process started with the umask (subprocess's ``umask=``), so this
# process's umask, shared with every other test, is never changed.

REPO = Path(__file__).resolve().parents[1]

_WRITE_ALL = r"""
import os, sys, threading
from pathlib import Path
from sim.fileio import atomic_dir, atomic_open, atomic_path, atomic_write
from sim import zoo
from sim.compile import compile as compile_
from sim.config import PRESETS
from hw import vivado
from hw.units import AdderTree

out = Path(sys.argv[1])
old = out / "old.txt"                     # a target an earlier version wrote 0600
old.write_text("x"); os.chmod(old, 0o600)
atomic_write(old, "new")
atomic_write(out / "write.txt", "text")
with atomic_open(out / "open.bin") as f:
    f.write(b"1")
with atomic_path(out / "sub" / "path.bin") as tmp:
    tmp.write_bytes(b"2")
with atomic_dir(out / "tree") as d:
    (d / "f").write_text("3")
threads = [threading.Thread(target=atomic_write, args=(out / f"thread{i}.txt", "t"))
           for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
prog = zoo.tiny()
prog.save(out / "tiny.npz")
compile_(prog, PRESETS["small"]).save(out / "tiny.bin.npz")
vivado.write_project(AdderTree(width=8, count=2), name="adder", outdir=out / "vivado")
import torch
from quant.checkpoint import save_checkpoint
from quant.cli import _atomic_write                      # how save_qmodel writes a .qmodel
save_checkpoint({"w": torch.zeros(2)}, out / "ckpt.pt")
_atomic_write(out / "m.qmodel", lambda tmp: torch.save({"w": torch.zeros(2)}, tmp))
"""


def _modes(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755),
                                                       (0o077, 0o600, 0o700),
                                                       (0o002, 0o664, 0o775)])
def test_written_files_get_the_umask_modes(tmp_path, umask, file_mode, dir_mode):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([sys.executable, "-c", _WRITE_ALL, str(out)], cwd=REPO, env=env, umask=umask,
                   check=True, timeout=300)
    subprocess.run([sys.executable, "-m", "hw", "verilog", "log2", "-q", "-o", str(out / "v")],
                   cwd=REPO, env=env, umask=umask, check=True, timeout=300)
    modes = _modes(out)
    assert (out / "old.txt").read_text() == "new"
    expect_files = ["old.txt", "write.txt", "open.bin", "sub/path.bin", "tree/f", "tiny.npz",
                    "tiny.bin.npz", "v/log2.v", "vivado/manifest.json", "vivado/adder.v",
                    "ckpt.pt", "m.qmodel",
                    *(f"thread{i}.txt" for i in range(8))]
    for name in expect_files:
        assert modes.pop(name) == file_mode, name
    for name in ["sub", "tree", "v", "vivado"]:
        assert modes.pop(name) == dir_mode, name
    # the Vivado script is executable wherever it is readable (`chmod +x` under the umask)
    assert modes.pop("vivado/build_adder.sh") == file_mode | (file_mode & 0o444) >> 2
    # the rest of the Vivado tree: what Amaranth's plan.extract writes, with open()
    assert all(m == (dir_mode if (out / n).is_dir() else file_mode) for n, m in modes.items()
               if n.startswith("vivado/")), modes
    assert not [n for n in modes if not n.startswith("vivado/")], modes   # no temporaries left
