"""A base for what holds a file, a device or a thread: ``with`` closes it, whatever happens inside."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Closeable:
    """``close()`` releases what the object holds; ``with obj:`` calls it on the way out."""

    def close(self) -> None:
        """Release what is held; safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
