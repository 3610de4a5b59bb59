"""The live chart: the snapshot's own SVG in a small anywidget, plus hover and a kernel watchdog.

Why not plotly while streaming: a plotly ``FigureWidget`` ships its ~5 MB
bundle with every new panel and takes 1-2 s to draw a first point in a warm
kernel (benchmarks/README.md). This widget carries a few kB of JavaScript
and draws exactly the SVG the saved snapshot keeps, so live and saved look
the same. plotly stays available on demand (``run.figure()``).

The JavaScript does three things, none of which talks to the kernel:
- shows ``svg`` (the kernel redraws it a few times a second at most);
- hover: reads the exact values the SVG carries (``data-xs`` / ``data-ys``)
  and shows them for the step under the pointer;
- watchdog: while ``live`` is true the kernel bumps ``beat`` about once a
  second from a background thread (that works even while a cell blocks).
  When no beat arrives for ``STALE_S`` seconds (kernel restarted, died or
  stuck) it marks the whole panel disconnected, disables its buttons and
  shows ``reattach``: the exact ``ak.live(job_id="...")`` line to copy.
"""

from __future__ import annotations

from typing import Any

STALE_S = 8  # seconds without a beat before the panel says it is disconnected
BEAT_S = 1.0  # the kernel's beat interval

ESM = r"""
const STALE_MS = @STALE@ * 1000;
const CSS = `
.arkor-live-chart { position: relative; }
.arkor-tip { position: absolute; pointer-events: none; background: rgba(255,255,255,.95);
  border: 1px solid #bbb; border-radius: 3px; padding: 2px 6px; font: 11px sans-serif;
  color: #222; white-space: nowrap; display: none; z-index: 2; }
.arkor-disconnected-note { display: none; margin: 4px 0; padding: 4px 8px; border-left: 3px solid #c62828;
  background: #fff3f3; font: 13px sans-serif; color: #222; }
.arkor-disconnected .arkor-disconnected-note { display: block; }
.arkor-disconnected .arkor-badge { display: none; }
.arkor-disconnected .arkor-cancel, .arkor-disconnected .arkor-remote-toggle { opacity: .45; pointer-events: none; }
.arkor-reattach { user-select: all; background: #f4f4f4; padding: 1px 4px; }
`;

function hoverText(svg, mx) {
  const d = svg.dataset;
  const x0 = +d.x0, x1 = +d.x1, pl = +d.pl, pw = +d.pw;
  if (!(pw > 0) || mx < pl || mx > pl + pw) return null;
  const want = x0 + (mx - pl) / pw * (x1 - x0);
  const parts = [];
  let step = null;
  for (const line of svg.querySelectorAll("[data-xs]")) {
    const xs = line.dataset.xs.split(","), ys = line.dataset.ys.split(",");
    let lo = 0, hi = xs.length - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (+xs[mid] < want) lo = mid + 1; else hi = mid; }
    if (lo > 0 && Math.abs(+xs[lo - 1] - want) <= Math.abs(+xs[lo] - want)) lo -= 1;
    if (step === null) step = xs[lo];
    parts.push(`${line.dataset.name} ${ys[lo]}` + (xs[lo] !== step ? ` (step ${xs[lo]})` : ""));
  }
  return step === null ? null : [`step ${step}`].concat(parts).join(" · ");
}

function render({ model, el }) {
  const style = document.createElement("style");
  style.textContent = CSS;
  const note = document.createElement("div");
  note.className = "arkor-disconnected-note";
  const box = document.createElement("div");
  box.className = "arkor-live-chart";
  const tip = document.createElement("div");
  tip.className = "arkor-tip";
  box.appendChild(tip);
  const holder = document.createElement("div");
  box.appendChild(holder);
  el.append(style, note, box);

  const draw = () => { holder.innerHTML = model.get("svg"); };
  draw();
  model.on("change:svg", draw);

  box.addEventListener("mousemove", (e) => {
    const svg = holder.querySelector("svg");
    if (!svg) return;
    const r = svg.getBoundingClientRect();
    const scale = r.width ? +svg.getAttribute("width") / r.width : 1;
    const text = hoverText(svg, (e.clientX - r.left) * scale);
    if (!text) { tip.style.display = "none"; return; }
    tip.textContent = text;
    tip.style.display = "block";
    tip.style.left = Math.min(e.clientX - r.left + 12, Math.max(0, r.width - tip.offsetWidth)) + "px";
    tip.style.top = Math.max(0, e.clientY - r.top - 28) + "px";
  });
  box.addEventListener("mouseleave", () => { tip.style.display = "none"; });

  let last = Date.now();
  const panel = () => el.closest(".arkor-panel") || el;
  const setDisconnected = (on) => {
    const p = panel();
    if (on === p.classList.contains("arkor-disconnected")) return;
    p.classList.toggle("arkor-disconnected", on);
    for (const b of p.querySelectorAll("button, input")) {
      if (on) { b.dataset.arkorWasDisabled = b.disabled ? "1" : "0"; b.disabled = true; }
      else if (b.dataset.arkorWasDisabled === "0") { b.disabled = false; }
    }
    if (on) {
      const secs = Math.round((Date.now() - last) / 1000);
      note.innerHTML = "";
      const head = document.createElement("b");
      head.textContent = "disconnected";
      const text = document.createElement("span");
      text.textContent = ` — no word from the kernel for ${secs} s (restarted, stopped or busy). ` +
        "The job itself may still be running on the backend. Reattach from a new cell: ";
      const code = document.createElement("code");
      code.className = "arkor-reattach";
      code.textContent = model.get("reattach");
      note.append(head, text, code);
    }
  };
  model.on("change:beat", () => { last = Date.now(); setDisconnected(false); });
  model.on("change:live", () => { last = Date.now(); if (!model.get("live")) setDisconnected(false); });
  const timer = setInterval(() => {
    if (model.get("live") && Date.now() - last > STALE_MS) setDisconnected(true);
  }, 1000);
  return () => clearInterval(timer);
}

export default { render };
""".replace("@STALE@", str(STALE_S))

_CLASS: Any = None


def live_chart_class() -> Any:
    """The anywidget class (built on first use: anywidget is imported lazily), None without it."""
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    try:
        import anywidget
        import traitlets
    except Exception:  # anywidget missing: the panel shows a plain HTML chart instead
        return None

    class LiveChart(anywidget.AnyWidget):  # type: ignore[misc, name-defined]
        """SVG chart + hover + kernel watchdog (see the module docstring)."""

        _esm = traitlets.Unicode(ESM).tag(sync=True)
        svg = traitlets.Unicode("").tag(sync=True)
        beat = traitlets.Int(0).tag(sync=True)
        live = traitlets.Bool(True).tag(sync=True)
        reattach = traitlets.Unicode("").tag(sync=True)

        @property
        def value(self) -> str:  # the same name as an HTML widget's, for the panel's code paths
            return str(self.svg)

        @value.setter
        def value(self, svg: str) -> None:
            self.svg = svg

    _CLASS = LiveChart
    return _CLASS


def new_live_chart(svg: str) -> Any:
    """A LiveChart showing ``svg``, or an ``ipywidgets.HTML`` when anywidget is missing."""
    cls = live_chart_class()
    if cls is None:
        import ipywidgets as widgets

        return widgets.HTML(value=svg)
    return cls(svg=svg)
