"""The registry of generatable components: every class the CLI (``python -m hw``) can build.

``UNITS`` merges the ``UNITS: dict[str, type]`` of :mod:`hw.units` and, when that package
exists, :mod:`hw.engines`. A component's keyword-only ``__init__`` parameters (with their
defaults, the paper's widths) are its CLI parameters: ``--param width=16 --param signed=false``.
"""

from __future__ import annotations

import importlib
import inspect

__all__ = ["UNITS", "RegistryError", "params_of", "parse_value", "build", "describe",
           "config_params"]

_PACKAGES = ("hw.units", "hw.engines", "hw.core", "hw.system")


class RegistryError(ValueError):
    """A user error: unknown component, unknown parameter, unparsable or out-of-range value."""


def _collect() -> dict[str, type]:
    units: dict[str, type] = {}
    for pkg in _PACKAGES:
        try:
            mod = importlib.import_module(pkg)
        except ModuleNotFoundError as e:
            if e.name == pkg and pkg != "hw.units":   # an optional package that is not there yet
                continue
            raise
        for name, cls in getattr(mod, "UNITS", {}).items():
            if name in units and units[name] is not cls:
                raise RuntimeError(f"component name {name!r} registered twice ({pkg})")
            units[name] = cls
    return units


UNITS: dict[str, type] = _collect()


def params_of(cls: type) -> dict[str, object]:
    """The keyword-only constructor parameters of ``cls`` and their defaults (in order)."""
    sig = inspect.signature(cls.__init__)
    return {p.name: p.default for p in sig.parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_value(name: str, text: str, default: object) -> object:
    """Parse a CLI value for parameter ``name`` by the type of its ``default``
    (bool: true/false/1/0/yes/no/on/off; int: decimal, 0x.., 0b..; a ``None`` default (derived
    from other parameters) or none: int, bool or str)."""
    t = text.strip()
    if default is None:
        default = inspect.Parameter.empty
    if isinstance(default, bool):
        if t.lower() in _TRUE:
            return True
        if t.lower() in _FALSE:
            return False
        raise RegistryError(f"parameter {name} takes a bool (true/false), got {text!r}")
    if isinstance(default, int) or default is inspect.Parameter.empty:
        try:
            return int(t, 0)
        except ValueError:
            if default is inspect.Parameter.empty and t.lower() in _TRUE | _FALSE:
                return t.lower() in _TRUE
            if default is inspect.Parameter.empty:
                return t
            raise RegistryError(f"parameter {name} takes an integer, got {text!r}") from None
    return t


def _lookup(name: str) -> type:
    try:
        return UNITS[name]
    except KeyError:
        raise RegistryError(f"unknown component {name!r}; choose one of: "
                            f"{', '.join(sorted(UNITS))}") from None


def build(name: str, params: dict[str, str] | None = None):
    """Construct component ``name`` from string ``params`` (as given on the command line)."""
    cls = _lookup(name)
    valid = params_of(cls)
    kwargs = {}
    for key, text in (params or {}).items():
        if key not in valid:
            raise RegistryError(f"{name} has no parameter {key!r}; valid parameters: "
                                f"{', '.join(f'{k}={v!r}' for k, v in valid.items()) or '(none)'}")
        kwargs[key] = parse_value(key, text, valid[key])
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise RegistryError(f"{name}: {e}") from None


#: component name -> its constructor parameters taken from a ``sim.config.AccelConfig``
_FROM_CONFIG = {
    "core": lambda c: _lookup("core").config_params(c),
    "mat_engine": lambda c: dict(lanes=c.S, multipliers=c.T, packed=c.dsp_packing),
    "rmac_engine": lambda c: dict(lanes=c.M, macs_per_lane=c.N, packed=c.dsp_packing),
    "accelerator": lambda c: dict(config=c.to_json()),
}

#: systems built only by name, never by ``verilog all``: the accelerator (its Verilog at the
#: defaults, the paper's 16 cores, takes long to emit: see docs/system.md) and the dispatcher
#: (it has no default queue count: ``--param queues=51`` for L = 16)
NOT_IN_ALL = ("accelerator", "dispatcher")


def _configurable(name: str):
    _lookup(name)
    if name not in _FROM_CONFIG:
        raise RegistryError(f"{name} takes no accelerator config (only {', '.join(sorted(_FROM_CONFIG))}"
                            f" do); use --param")
    return _FROM_CONFIG[name]


def from_config(name: str, cfg) -> dict:
    """The constructor parameters of component ``name`` taken from ``cfg`` (a
    ``sim.config.AccelConfig``), typed; only the components of ``_FROM_CONFIG``."""
    return _configurable(name)(cfg)


def config_params(name: str, spec: str) -> dict[str, str]:
    """The parameters of component ``name`` set by accelerator config ``spec`` (a preset such as
    ``paper``, ``paper:N=4``, a JSON object or file: ``sim.config.AccelConfig.from_string``), as
    strings like the command line's; only the parameters the component has."""
    from sim.config import AccelConfig, ConfigError
    params = _configurable(name)
    try:
        cfg = AccelConfig.from_string(spec)
    except ConfigError as e:
        raise RegistryError(str(e)) from None
    valid = params_of(_lookup(name))
    return {k: str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in params(cfg).items() if k in valid}


def describe(name: str) -> str:
    """One line: the component, its parameters with defaults, and the first docstring line."""
    cls = _lookup(name)
    doc = (inspect.getdoc(cls) or "").splitlines()
    ps = " ".join(f"{k}={v}" for k, v in params_of(cls).items())
    return f"{name:<14} {cls.__module__}.{cls.__qualname__}  [{ps}]\n{'':<15}{doc[0] if doc else ''}"
