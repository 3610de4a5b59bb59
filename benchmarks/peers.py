"""The displays compared in the panel benchmark, as code run inside the kernel.

Each entry defines ``setup(n)``, ``on_event(ev)`` and ``finish()`` in the
kernel's namespace. ``ev`` is a wire dict (peers) or a parsed ``TrainingLog``
(arkor_nb rows, ``events="typed"``) from ``benchmarks.events``: the same
stream for everyone. Peer code is what a user of that library writes to show
a live loss; where a library offers a cheaper pattern (plotly batch_update)
both are measured. ``finish`` must return only when the display has done all
the work the events caused (arkor_nb's panel renders on a timer thread).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Display:
    key: str
    label: str
    code: str
    events: str = "wire"  # "wire" dicts or "typed" TrainingLog objects
    is_ours: bool = False
    is_baseline: bool = False


BASELINE = """
def setup(n):
    pass

def on_event(ev):
    pass

def finish():
    pass
"""

HF_NOTEBOOK = """
def setup(n):
    global _cb, _args, _state, _control
    from types import SimpleNamespace
    from transformers.trainer_callback import TrainerControl, TrainerState
    from transformers.trainer_utils import IntervalStrategy
    from transformers.utils.notebook import NotebookProgressCallback
    # eval every 50 steps (as the stream has), logging every step
    _args = SimpleNamespace(eval_strategy=IntervalStrategy.STEPS)
    _state = TrainerState(max_steps=n, num_train_epochs=max(1, n // 1000), logging_steps=1,
                          eval_steps=50)
    _control = TrainerControl()
    _cb = NotebookProgressCallback()
    _cb.on_train_begin(_args, _state, _control)

def on_event(ev):
    # the order transformers.Trainer uses: step end, then log, then evaluate
    _state.global_step = ev["step"]
    _state.epoch = ev["epoch"]
    _cb.on_step_end(_args, _state, _control)
    logs = {"loss": ev["loss"], "learning_rate": ev["learningRate"], "epoch": ev["epoch"],
            "step": ev["step"]}
    _state.log_history.append(logs)
    _cb.on_log(_args, _state, _control, logs=logs)
    if "evalLoss" in ev:
        _cb.on_evaluate(_args, _state, _control, metrics={"eval_loss": ev["evalLoss"]})

def finish():
    _cb.on_train_end(_args, _state, _control)
"""

LIVELOSSPLOT = """
def setup(n):
    global _pl
    from livelossplot import PlotLosses
    _pl = PlotLosses()

def on_event(ev):
    logs = {"loss": ev["loss"]}
    if "evalLoss" in ev:
        logs["val_loss"] = ev["evalLoss"]
    _pl.update(logs, current_step=ev["step"])
    if ev["step"] % EVERY == 0:
        _pl.send()

def finish():
    _pl.send()
"""

FASTPROGRESS = """
def setup(n):
    global _mb, _pb, _xs, _ys, _exs, _eys
    from fastprogress.fastprogress import master_bar, progress_bar
    _mb = master_bar(range(1))
    _mb.main_bar.update(0)
    _pb = progress_bar(range(n), parent=_mb)
    _pb.update(0)
    _xs, _ys, _exs, _eys = [], [], [], []

def on_event(ev):
    _xs.append(ev["step"]); _ys.append(ev["loss"])
    if "evalLoss" in ev:
        _exs.append(ev["step"]); _eys.append(ev["evalLoss"])
    _pb.update(ev["step"])
    _mb.update_graph([[_xs, _ys], [_exs, _eys]])

def finish():
    _mb.on_iter_end()
"""

TQDM = """
def setup(n):
    global _bar
    from tqdm.notebook import tqdm
    _bar = tqdm(total=n)

def on_event(ev):
    _bar.update(1)
    _bar.set_postfix(loss=ev["loss"])

def finish():
    _bar.close()
"""

PLOTLY = """
def setup(n):
    global _fig, _xs, _ys, _exs, _eys
    import plotly.graph_objects as go
    from IPython.display import display
    _fig = go.FigureWidget(data=[go.Scatter(x=[], y=[], name="loss"),
                                 go.Scatter(x=[], y=[], name="eval loss")])
    display(_fig)
    _xs, _ys, _exs, _eys = [], [], [], []

def _push():
    with _fig.batch_update():
        _fig.data[0].x = _xs
        _fig.data[0].y = _ys
        _fig.data[1].x = _exs
        _fig.data[1].y = _eys

def on_event(ev):
    _xs.append(ev["step"]); _ys.append(ev["loss"])
    if "evalLoss" in ev:
        _exs.append(ev["step"]); _eys.append(ev["evalLoss"])
    if EVERY == 1:
        # the naive way: reassign the arrays on every event
        _fig.data[0].x = _xs
        _fig.data[0].y = _ys
        if "evalLoss" in ev:
            _fig.data[1].x = _exs
            _fig.data[1].y = _eys
    elif ev["step"] % EVERY == 0:
        _push()

def finish():
    _push()
"""

PEERS: list[Display] = [
    Display("baseline_wire", "no display (loop + wire-dict generator)", BASELINE, is_baseline=True),
    Display("baseline_typed", "no display (loop + typed-event generator)", BASELINE, events="typed",
            is_baseline=True),
    Display("hf_notebook", "transformers NotebookProgressCallback", HF_NOTEBOOK),
    Display("livelossplot_1", "livelossplot PlotLosses, send every event", "EVERY = 1\n" + LIVELOSSPLOT),
    Display("livelossplot_10", "livelossplot PlotLosses, send every 10", "EVERY = 10\n" + LIVELOSSPLOT),
    Display("fastprogress", "fastprogress master_bar.update_graph", FASTPROGRESS),
    Display("tqdm", "tqdm.notebook (update + set_postfix)", TQDM),
    Display("plotly_naive", "plotly FigureWidget, arrays reassigned per event", "EVERY = 1\n" + PLOTLY),
    Display("plotly_batch100", "plotly FigureWidget, batch_update every 100", "EVERY = 100\n" + PLOTLY),
]

OURS: list[Display] = []


# ----------------------------------------------------------------- arkor_nb

# The real panel (ak.live: LiveRun, RunState, recorder, ticker, LivePanel,
# plotly chart, snapshot) fed through the real Trainer's listener dispatch
# (``Trainer._notify``: what ``wait()`` calls for every parsed event). Only
# the transport is replaced: ``wait()`` blocks until the benchmark has fed
# the stream instead of reading SSE, so the row isolates the panel's cost.
ARKOR_FEED = """
import threading as _threading
import time as _time

def setup(n):
    global _run, _tr, _release, _notify
    import arkor_nb as ak
    from arkor_nb.sdk.trainer import Trainer
    from arkor_nb.core.contexts import TrainingResult
    from arkor_nb.core.events import parse_event
    from arkor_nb.core.wire import TrainingJob

    class FeedTrainer(Trainer):
        def wait(self, *, abort_signal=None):
            _release.wait()
            return TrainingResult(job=TrainingJob(id="job_bench", name="bench", status="completed"))

    _release = _threading.Event()
    _tr = FeedTrainer.attach("job_bench", backend=ak.LocalBackend(url="http://127.0.0.1:9",
                                                                  token="unused"))
    _tr.config = {"model": "arkor-nb/synthetic", "maxSteps": n}
    _run = ak.live(_tr)
    _notify = _tr._notify
    _notify(parse_event({"type": "training.started", "jobId": "job_bench",
                         "timestamp": "2026-01-01T00:00:00Z"}, "0"))

def on_event(ev):
    _notify(ev)

def finish():
    from arkor_nb.core.events import parse_event
    _notify(parse_event({"type": "training.completed", "jobId": "job_bench",
                         "timestamp": "2026-01-01T00:00:01Z", "metrics": {}}, "end"))
    _release.set()
    _run.result(timeout=300)
"""

# End to end in the kernel: a real local server (synthetic worker) has
# recorded an N-step job; ak.live(job_id=...) replays it through HTTP/SSE,
# Trainer.wait(), the listener and the panel. Everything the kernel does is
# counted, including reading and parsing the stream.
ARKOR_E2E = """
import time as _time

def setup(n):
    global _srv_cm, _srv, _job
    from benchmarks.local_server import local_server
    _srv_cm = local_server(ARKOR_NB_SYNTHETIC_STEP_S="0")
    _srv = _srv_cm.__enter__()
    _job = _srv.create_job("bench-e2e", {"model": "arkor-nb/synthetic", "maxSteps": n})
    _srv.wait_terminal(_job, timeout=1800)
    import arkor_nb as ak  # imports belong to setup, as for the peers
    from arkor_nb.notebook.livechart import live_chart_class
    live_chart_class()  # anywidget's import, as a kernel that showed a panel has

def drive(n):
    global _run
    import arkor_nb as ak
    _run = ak.live(job_id=_job, backend=ak.LocalBackend(url=_srv.url, token=_srv.token))

def finish():
    try:
        _run.result(timeout=1800)
    finally:
        _srv_cm.__exit__(None, None, None)
"""

OURS.extend([
    Display("arkor_feed", "arkor_nb ak.live panel (Trainer listener feed)", ARKOR_FEED,
            events="typed", is_ours=True),
    Display("arkor_e2e", "arkor_nb ak.live(job_id) end to end: server, SSE, Trainer, panel",
            ARKOR_E2E, events="none", is_ours=True),
])

ALL_DISPLAYS: list[Display] = PEERS + OURS
