"""Which page's take is running. A widget can be shown in several pages (tabs) at once,
but one recording runs at a time: chunks count only from the page that started it, and
another page may start only when that one is gone (it stopped, or it has sent nothing
for STALE_S: reloaded or closed). Not thread-safe by itself: the widget calls it under
its lock."""

from __future__ import annotations

import time

STALE_S = 1.5  # live chunks come every 100 ms: an owner this quiet is gone


class Takes:
    def __init__(self) -> None:
        self.owner: str | None = None  # the view (page) whose take is running
        self._seen = 0.0

    def owns(self, view: str | None) -> bool:
        """Do chunks from `view` count (from any view when no take runs)? Marks the owner alive."""
        if self.owner is not None and view != self.owner:
            return False
        self._seen = time.monotonic()
        return True

    def busy_elsewhere(self, view: str | None, recording: bool) -> bool:
        """Is another view's take still running (its chunks came lately)?"""
        return self.owner is not None and view != self.owner and recording and time.monotonic() - self._seen < STALE_S

    def abandoned(self, view: str | None, recording: bool) -> bool:
        """Is a take running whose page has gone (`view` is another page, and it is quiet)?"""
        return recording and self.owner != view and not self.busy_elsewhere(view, recording)

    def claim(self, view: str | None) -> None:
        self.owner, self._seen = view, time.monotonic()

    def release(self) -> None:
        self.owner = None
