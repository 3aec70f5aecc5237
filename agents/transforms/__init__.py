"""Dataset transformations: the validation rules (shared with the control plane) and, with the
piper, the Arrow execution engine."""

from agents.transforms.spec import validate_transformations

__all__ = ["validate_transformations"]
