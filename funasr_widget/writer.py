"""One writer per widget: every trait write and every message to the page, from whatever
thread, goes through one lock.

A widget here is written from several threads at once: the notebook, the comm handler
(a subshell thread in JupyterLab >= 4.4), the recognition worker, the model loader, timers.
traitlets is not made for that: `hold_trait_notifications` swaps a method on the instance,
so another thread's writes made meanwhile are taken into the hold and rolled back with it
when its validation fails; and ipywidgets' `set_state` lets the page set any synced trait,
`read_only` ones included. `OneWriter`, mixed in before the widget's base class, fixes both:

* Every trait write (attribute, `set_trait`, a hold, the page's `update`) runs inside
  `writing()`, which holds the widget's lock; a widget makes its read-then-write decisions
  and sends its custom messages inside `writing()` too, so each is one step for the others.
* When the outermost `writing()` ends, the synced traits it changed go to the page in one
  `update` message, still under the lock (so in order with the custom messages); then the
  lock is released and the observers run, on the thread that wrote. An observer may wait
  for another thread (`wait()` in a callback of `recording`) without a deadlock.
* The page may set only `PAGE_WRITABLE`; anything else it sends is ignored and reported to
  `_page_rejected(name, code)`. Each trait of an update is applied on its own: one that
  fails validation is refused (the page is sent the value that holds) and nothing else is
  rolled back.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import traitlets as t


class OneWriter:
    """Mix in before ``anywidget.AnyWidget``; see the module docstring."""

    PAGE_WRITABLE: frozenset[str] = frozenset()

    def setup_instance(self, *args, **kwargs):
        # Runs before any trait is set, the constructor's included.
        self._writer_lock = threading.RLock()
        self._writer_local = threading.local()
        super().setup_instance(*args, **kwargs)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the widget's lock: writes and messages inside are one step for other threads.
        Re-entrant; the page hears of the changes, and observers run, when the outermost ends."""
        local = self._writer_local
        held: list | None = None
        try:
            with self._writer_lock:
                if getattr(local, "held", None) is None:
                    local.held = held = []
                try:
                    yield
                finally:
                    if held is not None:
                        local.held = None
                        self._sync(held)
        finally:
            if held:
                self._observe(held)

    def _sync(self, changes: list) -> None:
        """The changed synced traits to the page, in one message (what Widget.notify_change
        does per change, ipywidgets' echo suppression included)."""
        comm = self.comm  # type: ignore[attr-defined]
        if comm is None or getattr(comm, "kernel", True) is None:
            return
        names = [
            name
            for name in dict.fromkeys(change.name for change in changes)
            if name in self.keys and self._should_send_property(name, getattr(self, name))  # type: ignore[attr-defined]
        ]
        if names:
            self.send_state(names)  # type: ignore[attr-defined]

    def _observe(self, changes: list) -> None:
        # Every observer is called even when one raises; the first error then goes on.
        failed = None
        for change in changes:
            try:
                t.HasTraits.notify_change(self, change)  # observers only: the page has it already
            except Exception as err:
                failed = failed or err
        if failed is not None:
            raise failed

    # -- every way a trait gets written ------------------------------------------------

    def __setattr__(self, name: str, value) -> None:
        if isinstance(getattr(type(self), name, None), t.TraitType):
            with self.writing():
                super().__setattr__(name, value)
        else:
            super().__setattr__(name, value)

    def set_trait(self, name: str, value) -> None:
        with self.writing():
            super().set_trait(name, value)  # type: ignore[misc]

    @contextlib.contextmanager
    def hold_trait_notifications(self) -> Iterator[None]:
        # Under the lock no other thread writes, so a rollback undoes this thread's writes only.
        with self.writing(), super().hold_trait_notifications():  # type: ignore[misc]
            yield

    def notify_change(self, change) -> None:
        held = getattr(self._writer_local, "held", None)
        if held is not None:
            held.append(change)  # the page and the observers hear of it when the writer lets go
        else:  # a write outside writing() cannot happen; kept whole for safety
            super().notify_change(change)  # type: ignore[misc]

    # -- the page's update messages ------------------------------------------------------

    def set_state(self, sync_data) -> None:
        """An `update` from the page: only PAGE_WRITABLE traits, each checked on its own."""
        if not isinstance(sync_data, dict):
            self._page_rejected("", "bad-update")
            return
        for name, value in sync_data.items():
            if name not in self.PAGE_WRITABLE:
                self._page_rejected(name, "read-only-trait" if name in self.keys else "unknown-trait")  # type: ignore[attr-defined]
                continue
            try:
                super().set_state({name: value})  # type: ignore[misc]
            except (t.TraitError, TypeError, ValueError):
                self._page_rejected(name, "invalid-value")
                with self.writing():  # the page is shown the value that holds
                    self.send_state(name)  # type: ignore[attr-defined]

    def _page_rejected(self, name: str, code: str) -> None:
        """An update the page may not make (`code`: read-only-trait, unknown-trait,
        invalid-value, bad-update); the widget counts or shows it."""
