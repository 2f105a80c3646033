"""The commands printed in README.md and docs/*.md, read from the documents (shared by
``tests/test_doc_commands.py`` and ``tests/test_doc_commands_all.py``).

A command is found in a fenced code block, an indented code block (one command per line, a
trailing ``# comment`` dropped) or an inline code span that starts with it. The spellings
``.venv/bin/python -m ...`` and ``PYTHONPATH=$PWD python -m ...`` read as ``python -m ...``.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
DATA = REPO.parent / "shared" / "data" / "imagenet-sample"     # the documented image folder

# what a reader types before the command itself, dropped
_LEAD = r"(?:PYTHONPATH=\S+\s+)?(?:\.venv/bin/)?"


def _normal(line: str) -> str:
    return re.sub(r"^" + _LEAD, "", line.strip())


def _matches(cmd: str, prefix: str) -> bool:
    return cmd == prefix or cmd.startswith(prefix + " ")


def doc_commands(prefix: str, docs=None) -> list[tuple[str, str]]:
    """``[(document name, command)]`` of the commands starting with ``prefix`` (a whole word:
    ``python -m quant`` does not find ``python -m quant.align_check``), in order of appearance
    in each document; the same command printed twice is listed twice."""
    out = []
    for doc in DOCS if docs is None else docs:
        text = doc.read_text()
        found = []
        fences = list(re.finditer(r"```[^\n]*\n(.*?)```", text, re.S))
        for m in fences:
            pos = m.start(1)
            for line in m.group(1).splitlines(keepends=True):
                cmd = _normal(line)
                if _matches(cmd, prefix):
                    found.append((pos, cmd.split(" #")[0].strip()))
                pos += len(line)
        prose = re.sub(r"```.*?```", lambda m: " " * len(m.group(0)), text, flags=re.S)
        # indented code blocks: four spaces after a blank line or another such line
        # (a line indented deeper than a command's continues it: a synopsis over lines)
        prev_blank, in_block, pos, last = True, False, 0, None
        for line in prose.splitlines(keepends=True):
            code = line.startswith("    ") and line.strip() and (prev_blank or in_block)
            in_block = bool(code)
            indent = len(line) - len(line.lstrip())
            if code and last is not None and indent > last[1]:
                k = found.index(last[0])
                found[k] = (last[0][0], last[0][1] + " " + line.split(" #")[0].strip())
                last = (found[k], last[1])
            elif code:
                cmd = _normal(line)
                last = None
                if _matches(cmd, prefix):
                    found.append((pos, cmd.split(" #")[0].strip()))
                    last = (found[-1], indent)
            else:
                last = None
            prev_blank = not line.strip()
            pos += len(line)
        for m in re.finditer(r"`" + _LEAD + r"(" + re.escape(prefix) + r"(?:\s[^`]*)?)`", prose):
            found.append((m.start(), " ".join(m.group(1).split())))
        out += [(doc.name, c) for _, c in sorted(found)]
    return out


def sample_folder(tmp_path: Path) -> Path:
    """The documented image folder, ``../shared/data/imagenet-sample``, when it is present;
    otherwise a stand-in made in ``tmp_path``: four random JPEGs and a ``labels.csv`` with the
    same columns (``file,wnid,class_index,class_name``)."""
    if DATA.exists():
        return DATA
    import numpy as np
    from PIL import Image
    root = tmp_path / "imagenet-sample"
    if (root / "labels.csv").exists():
        return root
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = ["file,wnid,class_index,class_name"]
    for i in range(4):
        name = f"img{i}.JPEG"
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(root / name)
        rows.append(f"{name},n{i:08d},{i},class{i}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root
