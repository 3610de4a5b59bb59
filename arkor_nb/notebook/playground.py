"""``ak.playground(job_id)``: one prompt, the base model's and the fine-tuned reply side by side.

The Send button's handler only starts a thread; that thread streams both
replies with :func:`arkor_nb.chat` and shows them by assigning the text
widgets' ``value`` (never ``with Output()`` from a thread). ``ask()`` does
the same from code and returns both texts, so it works outside Jupyter too.
"""

from __future__ import annotations

import html
import threading
from typing import Any

from arkor_nb.sdk.arguments import check_job_id
from arkor_nb.sdk.chat import chat
from arkor_nb.sdk.jobs import job


class Playground:
    """Base vs fine-tuned replies for one job (final adapter, or checkpoint ``step``)."""

    def __init__(self, job_id: str, *, step: int | None = None, backend: Any = "local",
                 max_tokens: int = 128, temperature: float = 0.0) -> None:
        check_job_id(job_id)
        self.job = job(job_id, backend=backend)
        self.base_model = str(self.job.config.get("model") or "")
        self.step = step
        self.backend = backend
        self.max_tokens, self.temperature = max_tokens, temperature
        self.busy = threading.Event()
        self.widget: Any = None
        self.replies = ["", ""]  # the texts last shown (base, fine-tuned)
        self.thread: threading.Thread | None = None

    def ask(self, prompt: str) -> tuple[str, str]:
        """(base reply, fine-tuned reply) to ``prompt``; updates the widgets when shown."""
        replies = ["", ""]
        targets: list[dict[str, Any]] = [{"model": self.base_model}, {"job_id": self.job.id, "step": self.step}]
        for index, target in enumerate(targets):
            for piece in chat(messages=prompt, stream=True, backend=self.backend,
                              max_tokens=self.max_tokens, temperature=self.temperature,
                              **target):
                replies[index] += piece
                self._show(index, replies[index])
        return replies[0], replies[1]

    # ------------------------------------------------------------ widgets

    def build(self) -> Any:
        import ipywidgets as w

        label = "final adapter" if self.step is None else f"checkpoint step {self.step}"
        self.prompt = w.Textarea(placeholder="Type a prompt", layout=w.Layout(width="100%"))
        self.send = w.Button(description="Send", button_style="primary")
        self.status = w.HTML("")
        self.outputs = [w.HTML(_reply_html(""), layout=w.Layout(width="100%", min_height="120px"))
                        for _ in range(2)]
        columns = [
            w.VBox([w.HTML(f"<b>base</b> <code>{self.base_model}</code>"), self.outputs[0]],
                   layout=w.Layout(width="50%")),
            w.VBox([w.HTML(f"<b>fine-tuned</b> <code>{self.job.id}</code> ({label})"),
                    self.outputs[1]], layout=w.Layout(width="50%")),
        ]
        self.send.on_click(self._on_send)
        self.widget = w.VBox([self.prompt, w.HBox([self.send, self.status]), w.HBox(columns)])
        # Stable DOM hooks for browser tests.
        self.widget.add_class("arkor-playground")
        self.prompt.add_class("arkor-playground-prompt")
        self.send.add_class("arkor-playground-send")
        self.outputs[0].add_class("arkor-playground-base")  # the reply: its <pre>
        self.outputs[1].add_class("arkor-playground-tuned")
        return self.widget

    def _on_send(self, _button: Any = None) -> None:
        """Handler: set the flag and start the thread; nothing slow on the kernel's thread."""
        prompt = self.prompt.value.strip()
        if not prompt or self.busy.is_set():
            return
        self.busy.set()
        self.send.disabled = True
        self.thread = threading.Thread(target=self._answer, args=(prompt,),
                                       name="arkor-nb-playground", daemon=True)
        self.thread.start()

    def _answer(self, prompt: str) -> None:
        self.status.value = "answering..."
        for index in range(2):
            self._show(index, "")
        try:
            self.ask(prompt)
            self.status.value = ""
        except Exception as err:  # shown in the widget: a thread has no cell to raise into
            self.status.value = f"<span style='color:#dc2626'>{type(err).__name__}: {err}</span>"
        finally:
            self.send.disabled = False
            self.busy.clear()

    def _show(self, index: int, text: str) -> None:
        self.replies[index] = text
        if self.widget is not None:
            self.outputs[index].value = _reply_html(text)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        widget = self.widget if self.widget is not None else self.build()
        display({**widget._repr_mimebundle_(), "text/plain": repr(self)}, raw=True)

    def __repr__(self) -> str:
        return f"<Playground job={self.job.id} base={self.base_model!r} step={self.step}>"


def _reply_html(text: str) -> str:
    return ("<pre class='arkor-reply' style='white-space:pre-wrap;margin:0;padding:6px;"
            "border:1px solid #d1d5db;border-radius:4px;min-height:100px;font-size:90%'>"
            f"{html.escape(text)}</pre>")


def playground(job_id: str, *, step: int | None = None, backend: Any = "local",
               max_tokens: int = 128, temperature: float = 0.0) -> Playground:
    """A prompt box with the base model's and the job's reply side by side (Jupyter).

    Returns the :class:`Playground`; as a cell's last expression it displays
    itself. ``playground(...).ask("prompt")`` returns both replies anywhere.
    """
    return Playground(job_id, step=step, backend=backend, max_tokens=max_tokens,
                      temperature=temperature)
