// The live chart's front end (anywidget ESM; see livechart.py for the why).
// It never talks to the kernel: it shows the `svg` trait, reads hover values
// from the SVG's data- attributes, and marks the panel disconnected when the
// kernel's `beat` stops for `stale_s` seconds while `live` is true.
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
  const unit = d.unit || "";
  const parts = [];
  let step = null;
  for (const line of svg.querySelectorAll("[data-xs]")) {
    const xs = line.dataset.xs.split(","), ys = line.dataset.ys.split(",");
    let lo = 0, hi = xs.length - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (+xs[mid] < want) lo = mid + 1; else hi = mid; }
    if (lo > 0 && Math.abs(+xs[lo - 1] - want) <= Math.abs(+xs[lo] - want)) lo -= 1;
    if (step === null) step = xs[lo];
    parts.push(`${line.dataset.name} ${ys[lo]}${unit}` + (xs[lo] !== step ? ` (step ${xs[lo]})` : ""));
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
    if (model.get("live") && Date.now() - last > model.get("stale_s") * 1000) setDisconnected(true);
  }, 1000);
  return () => clearInterval(timer);
}

export default { render };
