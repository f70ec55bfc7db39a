"""Panels whose work runs in the background: a progress bar and a cancel button beside the
status line, one job at a time, the session's model held while it runs."""
from __future__ import annotations

import html
import threading
import time
from typing import Any, Callable

import ipywidgets as W

from widgets.base import Panel


class JobPanel(Panel):
    """A :class:`Panel` with ``start_job`` (work in a thread, progress, cancel), ``running``,
    ``cancel`` and ``wait`` (scripts and tests)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._job: threading.Thread | None = None
        self._cancel = threading.Event()
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="260px", display="none"))
        self.cancel_button = W.Button(description="cancel", icon="stop", button_style="warning",
                                      layout=W.Layout(width="100px", display="none"))
        self.cancel_button.on_click(lambda _: self.cancel())
        super().__init__(*args, **kwargs)

    def _status_row(self) -> list[W.Widget]:
        return [self.status, self.progress, self.cancel_button]

    def start_job(self, what: str, work: Callable[[Callable[[float], bool]], Any],
                  done: Callable[[Any], None]) -> None:
        """Run ``work(report)`` in a thread holding the model; ``report(fraction)`` moves the
        progress bar and returns False once cancel was pressed; ``done(result)`` shows it."""
        if self.running:
            raise RuntimeError(f"{self.title}: a job is already running; wait or press cancel")
        self._cancel.clear()
        self.clear_error()
        self.progress.value = 0.0
        self.progress.layout.display = self.cancel_button.layout.display = ""
        self.status.value = f"<span style='color:#0072B2'>&#8987; {html.escape(what)}&hellip;</span>"

        def report(fraction: float) -> bool:
            self.progress.value = float(min(max(fraction, 0.0), 1.0))
            return not self._cancel.is_set()

        def target() -> None:
            start = time.perf_counter()
            try:
                with self.session.using_model(wait=True):
                    result = work(report)
                done(result)
                stopped = " (cancelled)" if self._cancel.is_set() else ""
                took = time.perf_counter() - start
                self.status.value = f"<span style='color:#888'>{html.escape(what)}{stopped}: {took:.1f} s</span>"
                self._after_update()
            except Exception as exc:  # noqa: BLE001 - shown in the panel
                self.status.value = ""
                self.show_error(exc)
            finally:
                self.progress.layout.display = self.cancel_button.layout.display = "none"

        self._job = threading.Thread(target=target, name=f"attnlab {self.title}", daemon=True)
        self._job.start()

    @property
    def running(self) -> bool:
        return self._job is not None and self._job.is_alive()

    def cancel(self) -> None:
        """Ask the running job to stop after its current step."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the running job ends (scripts and tests); True when none is running."""
        if self._job is not None:
            self._job.join(timeout)
        return not self.running
