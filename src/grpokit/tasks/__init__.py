"""Small tasks whose answers a program can check, used by the built-in model, the demo and tests."""

from grpokit.tasks import addition

__all__ = ["addition"]
