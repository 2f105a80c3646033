"""How the runtime finds the register map: always through the *generated* Python module.

``python -m hw regmap --format py`` (:meth:`hw.system.regmap.RegisterMap.to_python`) writes a
standalone module of constants (word offsets, field masks, ``ID_VALUE``, ``ERR_<NAME>``,
``REGMAP_VERSION``), ``REGISTERS`` (word name -> byte offset), ``FIELDS`` ((register, field) ->
(lsb, width, access)) and ``ERROR_TEXT`` (code -> sentence). The runtime reads registers only
through such a module (:class:`RegMap`), found in this order:

1. a file given explicitly (``load_regmap(path)``, ``python -m runtime run --regmap FILE``), e.g.
   the ``trio_regmap.py`` that ``python -m hw build zcu102`` writes next to the bitstream: the map
   the bitstream was built with;
2. ``$TRIOVIT_REGMAP`` (a path), the same for a board where the file was copied;
3. otherwise the module text generated in memory from :data:`hw.system.regmap.REGMAP` (pure
   Python, no Amaranth: it is importable on the board's Linux wherever trio-vit is installed).

So the runtime on the board and in the tests uses the one description through the same code.
The Binary's config is checked against ``CONFIG_HASH`` with
:func:`hw.system.regmap.config_hash` (the hash is not part of the generated module).
"""

from __future__ import annotations

import importlib.util
import os
import types
from pathlib import Path

__all__ = ["RegMap", "load_regmap", "RegMapFileError", "ENV"]

ENV = "TRIOVIT_REGMAP"


class RegMapFileError(ValueError):
    """A register-map module that cannot be loaded or lacks what the runtime needs."""


class RegMap:
    """The generated register-map module seen by the runtime.

    ``offset(name)``: byte offset of a 32-bit word (``"STATUS"``, ``"CYCLES_LO"``);
    ``mask(path)``: bits of ``"REG.FIELD"`` in place; ``field(word, path)``: the field's value
    in a register word; ``error_name(code)`` / ``error_text(code)``; ``magic``, ``version``,
    ``size`` (the window in bytes).
    """

    REQUIRED = ("REGISTERS", "FIELDS", "ERROR_TEXT", "ID_VALUE", "REGMAP_VERSION", "REGMAP_SIZE")

    def __init__(self, module, source: str):
        missing = [n for n in self.REQUIRED if not hasattr(module, n)]
        if missing:
            raise RegMapFileError(f"{source} is not a register-map module of `python -m hw regmap "
                                  f"--format py` (missing {', '.join(missing)})")
        self.module, self.source = module, source
        self.registers: dict = dict(module.REGISTERS)
        self.fields: dict = dict(module.FIELDS)
        self.magic: int = module.ID_VALUE
        self.version: int = module.REGMAP_VERSION
        self.size: int = module.REGMAP_SIZE
        self._err_names = {v: k[4:] for k, v in vars(module).items()
                           if k.startswith("ERR_") and isinstance(v, int)}

    def offset(self, name: str) -> int:
        try:
            return self.registers[name]
        except KeyError:
            raise KeyError(f"no register word {name!r} in the register map ({self.source})") from None

    def mask(self, path: str) -> int:
        reg, _, fld = path.partition(".")
        try:
            lsb, width, _access = self.fields[(reg, fld)]
        except KeyError:
            raise KeyError(f"no field {path!r} in the register map ({self.source})") from None
        return ((1 << width) - 1) << lsb

    def field(self, word: int, path: str) -> int:
        reg, _, fld = path.partition(".")
        lsb, width, _ = self.fields[(reg, fld)]
        return (word >> lsb) & ((1 << width) - 1)

    def error_name(self, code: int) -> str:
        return self._err_names.get(code, f"CODE_{code}")

    def error_text(self, code: int) -> str:
        return self.module.ERROR_TEXT.get(code, f"unknown error code {code}")


def _from_file(path) -> RegMap:
    path = Path(path)
    if not path.is_file():
        raise RegMapFileError(f"register-map module {path} not found")
    spec = importlib.util.spec_from_file_location(f"_triovit_regmap_{abs(hash(str(path)))}", path)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception as e:  # noqa: BLE001 - any failure of a user file is one error
        raise RegMapFileError(f"register-map module {path} cannot be loaded: {e}") from None
    return RegMap(mod, str(path))


def load_regmap(path=None) -> RegMap:
    """The register map: ``path``, else ``$TRIOVIT_REGMAP``, else generated from
    :data:`hw.system.regmap.REGMAP` (see the module doc)."""
    if path is None:
        path = os.environ.get(ENV) or None
    if path is not None:
        return _from_file(path)
    from hw.system.regmap import REGMAP
    mod = types.ModuleType("_triovit_regmap_generated")
    exec(compile(REGMAP.to_python(), "<hw.system.regmap.REGMAP.to_python()>", "exec"),
         mod.__dict__)
    return RegMap(mod, "hw.system.regmap (generated)")
