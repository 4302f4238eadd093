"""DEBA from Python: the batch-size scheduler, the epoch signals and the run writer of libdeba,
over ctypes. Every DEBA formula runs in the C library; this package only passes numbers.
deba.torch (imported on first use) adds the PyTorch Monitor and AdaptiveBatchSize."""
import ctypes
import importlib
import math
import numbers

from . import _lib
from ._lib import lib, raise_for, Err, SchedConfig, EpochResult, TraceRow, EpochAcc, RunConfig, DECISIONS

__version__ = "0.1.0"
library_path = _lib.path
LR_SCALINGS = ("none", "linear", "sqrt")


class Diverged(RuntimeError):
    """The epoch's loss or gradient signal was not finite: the run ended with status diverged."""


def _int(name, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise ValueError(f"{name}: must be an integer (got {v!r})")
    return int(v)


def _float(name, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ValueError(f"{name}: must be a number (got {v!r})")
    return float(v)


def _str(name, v, allow_none=True):
    if v is None and allow_none:
        return None
    if not isinstance(v, str):
        raise ValueError(f"{name}: must be a string (got {v!r})")
    if "\0" in v:
        raise ValueError(f"{name}: must not contain NUL")
    return v.encode()


def _sched_config(method, batch, bmin, bmax, tau, theta, lam, window, cooldown, growth, rollback, rho, kappa):
    c = SchedConfig()
    lib.deba_sched_config_default(ctypes.byref(c))
    m = lib.deba_method_parse(_str("method", method, allow_none=False))
    if m < 0:
        raise ValueError(f"--method must be fixed or deba (got {method!r})")
    c.method = m
    c.b0, c.bmin, c.bmax = _int("batch", batch), _int("bmin", bmin), _int("bmax", bmax)
    c.tau, c.theta, c.lambda_ = _float("tau", tau), _float("theta", theta), _float("lam", lam)
    c.window, c.cooldown = _int("window", window), _int("cooldown", cooldown)
    c.growth, c.rollback = _float("growth", growth), _float("rollback", rollback)
    c.rho, c.kappa = _float("rho", rho), _float("kappa", kappa)
    err = Err()
    raise_for(lib.deba_sched_config_check(ctypes.byref(c), ctypes.byref(err)), err)
    return c


class Scheduler:
    """The DEBA scheduler (SPEC §3): one step() per epoch decides the next epoch's batch size.

    method="fixed" computes the signals and never changes the batch size. Attached to a Run (or a
    deba.torch.Monitor), the run steps it; read batch_size from it, do not step it yourself."""

    def __init__(self, method="deba", batch=64, bmin=32, bmax=1024, tau=0.25, theta=0.5, lam=0.10, window=15,
                 cooldown=10, growth=1.5, rollback=0.8, rho=0.0, kappa=2.0):
        cfg = _sched_config(method, batch, bmin, bmax, tau, theta, lam, window, cooldown, growth, rollback, rho,
                            kappa)
        err = Err()
        h = lib.deba_sched_new(ctypes.byref(cfg), ctypes.byref(err))
        if not h:
            raise_for(err.status, err)
        self._h = h
        self._owner = None   # a Run whose writer owns the handle; None: ours to free
        self.last = None     # the last step's result (dict), None before the first

    def __del__(self):
        if getattr(self, "_h", None) and self._owner is None:
            lib.deba_sched_free(self._h)
        self._h = None

    def _attach(self, handle, owner):
        """From now on the run's writer owns the scheduler: it was rebuilt there from the trace."""
        if self._owner is None:
            lib.deba_sched_free(self._h)
        self._h, self._owner = handle, owner

    @property
    def config(self):
        c = lib.deba_sched_config_of(self._h).contents
        return {"method": _lib.METHODS[c.method], "batch": c.b0, "bmin": c.bmin, "bmax": c.bmax, "tau": c.tau,
                "theta": c.theta, "lam": c.lambda_, "window": c.window, "cooldown": c.cooldown,
                "growth": c.growth, "rollback": c.rollback, "rho": c.rho, "kappa": c.kappa}

    @property
    def batch_size(self):
        """B for the coming epoch."""
        return lib.deba_sched_batch(self._h)

    @property
    def epoch(self):
        """Epochs stepped so far."""
        return lib.deba_sched_epoch(self._h)

    @property
    def bmax(self):
        """The current B_max (lowered by oom())."""
        return lib.deba_sched_bmax(self._h)

    def step(self, grad_var, grad_norm, train_loss):
        """Ends an epoch with its signals; returns the decision name as trace.csv writes it."""
        if self._owner is not None:
            raise ValueError("step: this scheduler belongs to a run, which steps it at end_epoch")
        vals = [_float(n, v) for n, v in (("grad_var", grad_var), ("grad_norm", grad_norm),
                                          ("train_loss", train_loss))]
        for n, v in zip(("grad_var", "grad_norm", "train_loss"), vals):
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{n}: must be >= 0 and finite (got {v!r})")
        r = EpochResult()
        lib.deba_sched_step(self._h, *vals, ctypes.byref(r))
        self.last = {"epoch": r.epoch, "batch_size": r.batch_size, "next_batch_size": r.next_batch_size,
                     "grad_var": r.grad_var, "grad_norm": r.grad_norm, "train_loss": r.train_loss,
                     "norm_var": r.norm_var, "loss_var": r.loss_var, "confidence": r.confidence,
                     "decision": DECISIONS[r.decision]}
        return self.last["decision"]

    def oom(self, fits):
        """batch_size did not fit in memory: go back to `fits`, which becomes B_max."""
        if self._owner is not None:
            raise ValueError("oom: this scheduler belongs to a run: call the run's oom()")
        lib.deba_sched_oom(self._h, _int("fits", fits))

    def to_bytes(self):
        buf, n, err = ctypes.c_void_p(), ctypes.c_size_t(), Err()
        raise_for(lib.deba_sched_to_bytes(self._h, ctypes.byref(buf), ctypes.byref(n), ctypes.byref(err)), err)
        try:
            return ctypes.string_at(buf, n.value)
        finally:
            lib.deba_free(buf)

    def state_dict(self):
        """The whole state (config, history, B) for a checkpoint: torch.save() it with your model."""
        return {"deba_scheduler": self.to_bytes()}

    def load_state_dict(self, state):
        blob = state.get("deba_scheduler") if isinstance(state, dict) else None
        if not isinstance(blob, (bytes, bytearray)):
            raise ValueError("state: not a deba.Scheduler state_dict (no 'deba_scheduler' bytes)")
        if self._owner is not None:
            # the run rebuilt this scheduler from its trace: a checkpoint can only agree with it
            if bytes(blob) != self.to_bytes():
                raise ValueError("state: the checkpoint's scheduler is not the run's (resume the run at the "
                                 "checkpoint's epoch: keep_epochs)")
            return
        err = Err()
        h = lib.deba_sched_from_bytes(bytes(blob), len(blob), ctypes.byref(err))
        if not h:
            raise_for(err.status, err)
        lib.deba_sched_free(self._h)
        self._h = h
        self.last = None


def _check_times(kw):
    out = {}
    for n, v in kw.items():
        out[n] = _float(n, v)
    return out


class Run:
    """The run writer: <out>/<arch>/<dataset>/<label>/seed<seed>/ with trace.csv and meta.csv as
    deba-train writes them, its derived columns (norm_var, loss_var, confidence, decision) computed
    by the C scheduler. scheduler=None makes a fixed-batch run at `batch`.

    Per step add_step(), per epoch end_epoch(); close() (or the with-block) writes the final status.
    resume=True continues the run in the directory after its trace rows (keep_epochs=N keeps only
    the first N, the epoch of your own checkpoint); force=True starts over."""

    def __init__(self, out, arch, dataset, seed, scheduler=None, batch=None, label=None, epochs=0, lr=0.01,
                 momentum=0.9, weight_decay=5e-4, lr_scaling="none", device="cpu", device_name="", precision="fp32",
                 params=0, image_size=0, subset=0, test_subset=0, thresholds_source=None, resume=False,
                 force=False, keep_epochs=None):
        if scheduler is not None and not isinstance(scheduler, Scheduler):
            raise ValueError(f"scheduler: must be a deba.Scheduler or None (got {type(scheduler).__name__})")
        if scheduler is None:
            if batch is None:
                raise ValueError("batch: a fixed-batch run (scheduler=None) needs its batch size")
            b = _int("batch", batch)
            scheduler = Scheduler(method="fixed", batch=b, bmin=min(32, max(b, 1)), bmax=max(1024, b))
        elif batch is not None and _int("batch", batch) != scheduler.batch_size:
            raise ValueError(f"batch: {batch} is not the scheduler's batch size {scheduler.batch_size}")
        if scheduler._owner is not None or scheduler.epoch != 0:
            raise ValueError("scheduler: already stepped or attached to a run: pass a fresh deba.Scheduler (a "
                             "resumed run rebuilds its state from the trace)")
        if lr_scaling not in LR_SCALINGS:
            raise ValueError(f"lr_scaling: must be none, linear or sqrt (got {lr_scaling!r})")
        c = RunConfig()
        lib.deba_run_config_default(ctypes.byref(c))
        self._keep = []   # the bytes the config points at must outlive the call
        def s(name, v, allow_none=True):
            b = _str(name, v, allow_none)
            self._keep.append(b)
            return b
        c.out, c.arch, c.dataset = s("out", str(out), False), s("arch", arch, False), s("dataset", dataset, False)
        c.label = s("label", label)
        c.seed = _int("seed", seed)
        c.sched = lib.deba_sched_config_of(scheduler._h).contents
        c.epochs = _int("epochs", epochs or 0)
        c.lr, c.momentum, c.weight_decay = _float("lr", lr), _float("momentum", momentum), \
            _float("weight_decay", weight_decay)
        c.lr_scaling, c.device, c.device_name = s("lr_scaling", lr_scaling), s("device", device), \
            s("device_name", device_name)
        c.precision, c.thresholds_source = s("precision", precision), s("thresholds_source", thresholds_source)
        c.params = _int("params", params)
        c.image_size, c.subset, c.test_subset = _int("image_size", image_size), _int("subset", subset), \
            _int("test_subset", test_subset)
        c.resume, c.force = bool(resume), bool(force)
        c.keep_rows = -1 if keep_epochs is None else _int("keep_epochs", keep_epochs)
        err = Err()
        h = lib.deba_runwriter_open(ctypes.byref(c), ctypes.byref(err))
        if not h:
            raise_for(err.status, err)
        self._h = h
        self._closed = False
        self.scheduler = scheduler
        scheduler._attach(lib.deba_runwriter_sched(h), self)
        self.lr, self.lr_scaling = float(lr), lr_scaling
        self.dir = lib.deba_runwriter_dir(h).decode()
        self._acc = EpochAcc()
        lib.deba_epochacc_reset(ctypes.byref(self._acc))
        self.last = None

    def __del__(self):
        if getattr(self, "_h", None):
            lib.deba_runwriter_free(self._h)   # no final status: as after a kill, meta says running
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if self._closed:
            return False
        if et is None:
            self.close()
        elif issubclass(et, KeyboardInterrupt):
            self.close("interrupted")
        elif issubclass(et, Diverged):
            self.close("diverged")
        else:
            self.close("failed", f"{et.__name__}: {ev}")
        return False

    @property
    def batch_size(self):
        """B for the coming epoch."""
        return self.scheduler.batch_size

    @property
    def epochs_done(self):
        """Rows in trace.csv, resumed ones included: the next epoch is epochs_done + 1."""
        return lib.deba_runwriter_epochs(self._h)

    @property
    def diverged(self):
        return bool(lib.deba_runwriter_diverged(self._h))

    def scaled_lr(self, batch_size=None):
        """The learning rate for batch size B with this run's lr_scaling, as deba-train scales it."""
        b = self.batch_size if batch_size is None else _int("batch_size", batch_size)
        ratio = b / self.scheduler.config["batch"]
        return {"none": self.lr, "linear": self.lr * ratio, "sqrt": self.lr * math.sqrt(ratio)}[self.lr_scaling]

    def add_step(self, grad_sum, grad_sumsq, numel, loss_sum, samples, correct=0):
        """One optimizer step: Σg and Σg² over the numel gradient entries, the batch's summed loss."""
        err = Err()
        st = lib.deba_epochacc_add(ctypes.byref(self._acc), _float("grad_sum", grad_sum),
                                   _float("grad_sumsq", grad_sumsq), _int("numel", numel),
                                   _float("loss_sum", loss_sum), _int("samples", samples), _int("correct", correct),
                                   ctypes.byref(err))
        raise_for(st, err)

    def oom(self, fits):
        """batch_size did not fit: this epoch runs at `fits`; its row's decision is oom."""
        lib.deba_runwriter_oom(self._h, _int("fits", fits))

    def end_epoch(self, test_loss, test_acc, lr=None, epoch_time_s=0.0, compute_time_s=0.0, data_time_s=0.0,
                  signal_time_s=0.0, eval_time_s=0.0, samples_per_s=None, **signals):
        """Writes the epoch's row and returns it (a dict, with next_batch_size). The signals come from
        the add_step() calls, or are given as keywords (steps, train_loss, train_acc, grad_var,
        grad_norm) by a loop that computes its own. Raises Diverged on a non-finite signal."""
        if self._closed:
            raise ValueError(f"{self.dir}: the run is closed")
        row, err = TraceRow(), Err()
        if signals:
            unknown = set(signals) - {"steps", "train_loss", "train_acc", "grad_var", "grad_norm", "samples"}
            if unknown:
                raise ValueError(f"end_epoch: unknown argument {sorted(unknown)[0]!r}")
            row.steps = _int("steps", signals.get("steps", 0))
            for n in ("train_loss", "train_acc", "grad_var", "grad_norm"):
                if n not in signals:
                    raise ValueError(f"{n}: required when the epoch's signals are given directly")
                setattr(row, n, _float(n, signals[n]))
            samples = signals.get("samples", 0)
        else:
            raise_for(lib.deba_epochacc_fill(ctypes.byref(self._acc), ctypes.byref(row), ctypes.byref(err)), err)
            samples = self._acc.samples
        row.lr = self.scaled_lr() if lr is None else _float("lr", lr)
        row.test_loss, row.test_acc = _float("test_loss", test_loss), _float("test_acc", test_acc)
        t = _check_times({"epoch_time_s": epoch_time_s, "compute_time_s": compute_time_s,
                          "data_time_s": data_time_s, "signal_time_s": signal_time_s, "eval_time_s": eval_time_s})
        for n, v in t.items():
            setattr(row, n, v)
        if samples_per_s is None:
            samples_per_s = samples / (row.epoch_time_s if row.epoch_time_s > 0 else 1e-9)
        row.samples_per_s = _float("samples_per_s", samples_per_s)
        diverged = ctypes.c_int()
        raise_for(lib.deba_runwriter_append(self._h, ctypes.byref(row), ctypes.byref(diverged), ctypes.byref(err)),
                  err)
        lib.deba_epochacc_reset(ctypes.byref(self._acc))
        if diverged.value:
            self._close_files("diverged")
            raise Diverged(f"{self.dir}: epoch {self.epochs_done + 1}: non-finite loss or gradient signal; the "
                           "run ended with status diverged")
        self.last = row.as_dict()
        self.last["next_batch_size"] = self.batch_size
        return self.last

    def _close_files(self, status, error=None):
        err = Err()
        st = lib.deba_runwriter_close(self._h, _str("status", status), _str("error", error), ctypes.byref(err))
        raise_for(st, err)
        self._closed = True

    def close(self, status=None, error=None):
        """Writes the final status: completed when the planned epochs are done (or none were
        planned), else interrupted; or the one given (completed, interrupted, failed, diverged)."""
        if not self._closed:
            self._close_files(status, error)


def __getattr__(name):
    if name == "torch":   # deba.torch needs PyTorch: imported only when used
        return importlib.import_module(".torch", __name__)
    raise AttributeError(f"module 'deba' has no attribute {name!r}")


__all__ = ["Scheduler", "Run", "Diverged", "library_path", "LR_SCALINGS"]
