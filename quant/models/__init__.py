"""EfficientViT model definitions (official module structure and state_dict key names)."""

from .efficientvit import *  # noqa: F401,F403
from .efficientvit import __all__  # noqa: F401
