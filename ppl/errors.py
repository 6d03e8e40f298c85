"""The one exception type the language raises for a bad model or bad input."""

from __future__ import annotations

__all__ = ["ModelError"]


class ModelError(ValueError):
    """A problem in a model or in the inputs given to it.

    `address` is the path of the random choice (or call) where the problem was
    found, outermost first; the message always names the fix.
    """

    def __init__(self, message: str, address: tuple = ()):
        self.message = message
        self.address = tuple(address)
        super().__init__(self._render())

    def _render(self) -> str:
        if not self.address:
            return self.message
        where = "/".join(str(a) for a in self.address)
        return f"at address '{where}': {self.message}"

    def at(self, *prefix) -> ModelError:
        """The same error, seen from a caller that visited it under `prefix`."""
        return ModelError(self.message, tuple(prefix) + self.address)
