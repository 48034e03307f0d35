"""The one check that the optional ``video`` extra is installed, with the install line to fix it."""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL_HINT = "pip install 'affbench[video]'"
# MTCNN's package pins torch < 2.3 although it runs on current torch; it is installed without its pins.
MTCNN_HINT = "pip install --no-deps facenet-pytorch==2.6.0 (or use --detector haar)"


def require(module: str, *, hint: str = INSTALL_HINT) -> ModuleType:
    """Import `module`, or raise ImportError saying which install line provides it (a one-line input error)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"this command needs the '{module}' module, which is not installed; "
                          f"install it with: {hint}") from None
