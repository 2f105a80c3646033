"""trio-vit's quantizer: Trio-ViT post-training quantization of EfficientViT.

The Python API (:mod:`quant.api`), imported lazily so that ``python -m quant --help`` and the
numpy-only parts stay light::

    quant.quantize(model, calib_data, quant.QuantConfig()) -> quant.QuantizedModel
    quant.load("m.qmodel") -> quant.QuantizedModel
    quant.float_model("b1-r224", checkpoint=None, seed=0) -> the float EfficientViT
"""

_API = ("quantize", "load", "float_model", "QuantConfig", "QuantizedModel", "ConfigError")

__all__ = list(_API)


def __getattr__(name):
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'quant' has no attribute {name!r}")
