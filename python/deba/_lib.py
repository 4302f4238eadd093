"""ctypes bindings to libdeba.so: the structs the Python classes pass to the C library, mirrored
field by field from include/deba/*.h and checked against deba_abi_sizeof when the library loads."""
import ctypes
import os
from ctypes import (POINTER, Structure, byref, c_char, c_char_p, c_double, c_int, c_int64,
                    c_longlong, c_size_t, c_void_p)
from pathlib import Path

SONAME = "libdeba.so.0"

DEBA_OK, DEBA_E_INPUT, DEBA_E_IO, DEBA_E_NOMEM, DEBA_E_RUNTIME, DEBA_E_UNSUPPORTED = range(6)
METHODS = ("fixed", "deba")
DECISIONS = ("fixed", "warmup", "cooldown", "hold", "increase", "rollback", "oom")


class Err(Structure):
    _fields_ = [("status", c_int), ("msg", c_char * 1024)]


class SchedConfig(Structure):
    _fields_ = [("method", c_int), ("b0", c_int), ("bmin", c_int), ("bmax", c_int),
                ("tau", c_double), ("theta", c_double), ("lambda_", c_double),
                ("window", c_int), ("cooldown", c_int),
                ("growth", c_double), ("rollback", c_double), ("rho", c_double), ("kappa", c_double)]


class EpochResult(Structure):
    _fields_ = [("epoch", c_int), ("batch_size", c_int), ("next_batch_size", c_int),
                ("grad_var", c_double), ("grad_norm", c_double), ("train_loss", c_double),
                ("norm_var", c_double), ("loss_var", c_double), ("confidence", c_double),
                ("decision", c_int)]


TRACE_COLUMNS = ("epoch", "batch_size", "steps", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                 "grad_var", "grad_norm", "norm_var", "loss_var", "confidence", "decision", "epoch_time_s",
                 "compute_time_s", "data_time_s", "signal_time_s", "eval_time_s", "samples_per_s")


class TraceRow(Structure):
    _fields_ = [(n, c_int) for n in ("epoch", "batch_size", "steps")] + \
               [(n, c_double) for n in ("lr", "train_loss", "train_acc", "test_loss", "test_acc", "grad_var",
                                        "grad_norm", "norm_var", "loss_var", "confidence")] + \
               [("decision", c_int)] + \
               [(n, c_double) for n in ("epoch_time_s", "compute_time_s", "data_time_s", "signal_time_s",
                                        "eval_time_s", "samples_per_s")]

    def as_dict(self):
        d = {n: getattr(self, n) for n in TRACE_COLUMNS}
        d["decision"] = DECISIONS[self.decision]
        return d


class GradAcc(Structure):
    _fields_ = [("var_sum", c_double), ("norm_sum", c_double), ("steps", c_int64)]


class EpochAcc(Structure):
    _fields_ = [("grad", GradAcc), ("loss_sum", c_double), ("samples", c_int64), ("correct", c_int64),
                ("diverged", c_int)]


class Sgd(Structure):
    """deba_sgd: one parameter group's torch.optim.SGD settings (include/deba/stats.h)."""
    _fields_ = [("lr", c_double), ("momentum", c_double), ("dampening", c_double), ("weight_decay", c_double),
                ("nesterov", c_int), ("maximize", c_int), ("first", c_int)]


class RunConfig(Structure):
    _fields_ = [("out", c_char_p), ("arch", c_char_p), ("dataset", c_char_p), ("label", c_char_p),
                ("seed", c_longlong), ("sched", SchedConfig), ("epochs", c_int),
                ("lr", c_double), ("momentum", c_double), ("weight_decay", c_double),
                ("lr_scaling", c_char_p), ("device", c_char_p), ("device_name", c_char_p),
                ("precision", c_char_p), ("params", c_longlong),
                ("image_size", c_int), ("subset", c_int), ("test_subset", c_int),
                ("thresholds_source", c_char_p), ("resume", c_int), ("force", c_int), ("keep_rows", c_int)]


_SIGNATURES = {
    "deba_abi_sizeof": (c_size_t, [c_char_p]),
    "deba_sched_config_default": (None, [POINTER(SchedConfig)]),
    "deba_sched_config_check": (c_int, [POINTER(SchedConfig), POINTER(Err)]),
    "deba_sched_new": (c_void_p, [POINTER(SchedConfig), POINTER(Err)]),
    "deba_sched_free": (None, [c_void_p]),
    "deba_sched_config_of": (POINTER(SchedConfig), [c_void_p]),
    "deba_sched_batch": (c_int, [c_void_p]),
    "deba_sched_epoch": (c_int, [c_void_p]),
    "deba_sched_bmax": (c_int, [c_void_p]),
    "deba_sched_step": (None, [c_void_p, c_double, c_double, c_double, POINTER(EpochResult)]),
    "deba_sched_oom": (None, [c_void_p, c_int]),
    "deba_sched_to_bytes": (c_int, [c_void_p, POINTER(c_void_p), POINTER(c_size_t), POINTER(Err)]),
    "deba_sched_from_bytes": (c_void_p, [c_char_p, c_size_t, POINTER(Err)]),
    "deba_free": (None, [c_void_p]),
    "deba_grad_moments_many": (None, [POINTER(c_void_p), POINTER(c_int64), c_int, POINTER(c_double),
                                      POINTER(c_double)]),
    "deba_sgd_moments_many": (c_int, [POINTER(c_void_p), POINTER(c_void_p), POINTER(c_void_p), POINTER(c_int64),
                                      c_int, POINTER(Sgd), POINTER(c_double), POINTER(c_double), POINTER(Err)]),
    "deba_method_parse": (c_int, [c_char_p]),
    "deba_epochacc_reset": (None, [POINTER(EpochAcc)]),
    "deba_epochacc_add": (c_int, [POINTER(EpochAcc), c_double, c_double, c_int64, c_double, c_int64, c_int64,
                                  POINTER(Err)]),
    "deba_epochacc_fill": (c_int, [POINTER(EpochAcc), POINTER(TraceRow), POINTER(Err)]),
    "deba_run_config_default": (None, [POINTER(RunConfig)]),
    "deba_runwriter_open": (c_void_p, [POINTER(RunConfig), POINTER(Err)]),
    "deba_runwriter_free": (None, [c_void_p]),
    "deba_runwriter_dir": (c_char_p, [c_void_p]),
    "deba_runwriter_sched": (c_void_p, [c_void_p]),
    "deba_runwriter_epochs": (c_int, [c_void_p]),
    "deba_runwriter_diverged": (c_int, [c_void_p]),
    "deba_runwriter_oom": (None, [c_void_p, c_int]),
    "deba_runwriter_append": (c_int, [c_void_p, POINTER(TraceRow), POINTER(c_int), POINTER(Err)]),
    "deba_runwriter_close": (c_int, [c_void_p, c_char_p, c_char_p, POINTER(Err)]),
}


def _candidates():
    env = os.environ.get("DEBA_LIBRARY")
    if env:
        yield env   # named explicitly: nothing else is tried
        return
    here = Path(__file__).resolve().parent
    # beside the package (a copy shipped inside it), then the lib folder of the prefix it was
    # installed under: <prefix>/lib/python3.X/dist-packages/deba -> <prefix>/lib
    for d in (here, here.parent, *here.parents[1:4]):
        p = d / SONAME
        if p.exists():
            yield str(p)
    yield SONAME   # the system loader: ldconfig's cache, LD_LIBRARY_PATH


def _load():
    tried = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            break
        except OSError as exc:
            tried.append(f"{path}: {exc}")
    else:
        raise ImportError("deba: cannot load libdeba (set DEBA_LIBRARY to the path of libdeba.so.0): "
                          + "; ".join(tried))
    for name, (res, args) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    for name, cls in (("deba_trace_row", TraceRow), ("deba_sched_config", SchedConfig),
                      ("deba_run_config", RunConfig), ("deba_epoch_result", EpochResult), ("deba_err", Err),
                      ("deba_epochacc", EpochAcc), ("deba_sgd", Sgd)):
        if lib.deba_abi_sizeof(name.encode()) != ctypes.sizeof(cls):
            raise ImportError(f"deba: {lib._name} does not match these bindings ({name} is "
                              f"{lib.deba_abi_sizeof(name.encode())} bytes there, {ctypes.sizeof(cls)} here)")
    return lib


lib = _load()
path = lib._name


def raise_for(status, err):
    """The C library's status as a Python exception carrying its message."""
    if status == DEBA_OK:
        return
    msg = err.msg.decode("utf-8", "replace")
    if status == DEBA_E_INPUT:
        raise ValueError(msg)
    if status == DEBA_E_IO:
        raise OSError(msg)
    if status == DEBA_E_NOMEM:
        raise MemoryError(msg)
    raise RuntimeError(msg)


__all__ = ["lib", "path", "raise_for", "Err", "Sgd", "SchedConfig", "EpochResult", "TraceRow", "EpochAcc", "RunConfig",
           "METHODS", "DECISIONS", "TRACE_COLUMNS", "byref"]
