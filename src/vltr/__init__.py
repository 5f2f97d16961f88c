"""vltr: long-tailed video recognition on pre-extracted frame features."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_model"]


def __getattr__(name: str) -> Any:
    # vltr.load_model without importing torch and Lightning on `import vltr`
    if name == "load_model":
        from vltr.training.loading import load_model

        return load_model
    raise AttributeError(f"module 'vltr' has no attribute {name!r}")
