"""DEBA inside a PyTorch training loop: Monitor turns each step's gradients into the two numbers
DEBA needs (Σg, Σg²) with one reduction on the model's device and one host sync per step, and
writes the run through deba.Run; SGD is torch.optim.SGD with those sums taken in its own pass over
the gradients on the CPU; AdaptiveBatchSize rebuilds the DataLoader at the scheduler's B."""
import ctypes
import math
import time

import torch
from torch.optim.optimizer import Optimizer, required
from torch.optim.sgd import sgd as _torch_sgd

from . import Diverged, LR_SCALINGS, Run, Scheduler, _int, _lib


def _same_tensors(a, b):
    return a is not None and len(a) == len(b) and all(x is y for x, y in zip(a, b))


def _host_moments(grads):
    """(Σg, Σg²) as two floats when every gradient is a contiguous float32 CPU tensor: libdeba reads
    them in place, each value once, on the OpenMP threads torch uses (deba_grad_moments_many);
    None otherwise."""
    for g in grads:
        if g.device.type != "cpu" or g.dtype != torch.float32 or not g.is_contiguous():
            return None
    n = len(grads)
    ptrs = (ctypes.c_void_p * n)(*[g.data_ptr() for g in grads])
    counts = (ctypes.c_int64 * n)(*[g.numel() for g in grads])
    s, q = ctypes.c_double(), ctypes.c_double()
    _lib.lib.deba_grad_moments_many(ptrs, counts, n, ctypes.byref(s), ctypes.byref(q))
    return s.value, q.value


def _device_moments(grads):
    sums = torch.stack([g.sum() for g in grads]).to(torch.float64).sum()
    sqs = torch.stack([torch.dot(g.reshape(-1), g.reshape(-1)) for g in grads]).to(torch.float64).sum()
    return torch.stack([sums, sqs])


def grad_moments(grads):
    """(Σg, Σg²) over all gradient tensors as one float64 tensor of 2 on their device, without
    copying a gradient: on the CPU one pass of libdeba's over the tensors in place; elsewhere (CUDA)
    per tensor one sum and one dot product on the device, added up there."""
    host = _host_moments(grads)
    if host is not None:
        return torch.tensor(host, dtype=torch.float64)
    return _device_moments(grads)


def _host_tensor(t):
    """A tensor libdeba can read and write in place: dense, contiguous float32 in host memory."""
    return t.layout == torch.strided and t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous()


def _grad_params(group):
    return [p for p in group["params"] if p.grad is not None]


class SGD(Optimizer):
    """torch.optim.SGD (PyTorch 1.13 semantics, the same arguments, defaults, errors and state_dict)
    whose CPU step is one pass of libdeba over each parameter group (deba_sgd_moments_many): each
    gradient is read once, and a deba.torch.Monitor given this optimizer takes the step's Σg and Σg²
    from that pass instead of reading the gradients again. Where a group holds anything else (CUDA,
    another dtype, sparse or non-contiguous tensors) the group steps through torch's own
    torch.optim.sgd.sgd, so the result is torch's either way."""

    def __init__(self, params, lr=required, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 maximize=False, *, foreach=None, differentiable=False):
        # torch's checks and messages, and non-finite values, which libdeba refuses
        if lr is not required and not (lr >= 0.0 and math.isfinite(lr)):
            raise ValueError("Invalid learning rate: {}".format(lr))
        if not (momentum >= 0.0 and math.isfinite(momentum)):
            raise ValueError("Invalid momentum value: {}".format(momentum))
        if not (weight_decay >= 0.0 and math.isfinite(weight_decay)):
            raise ValueError("Invalid weight_decay value: {}".format(weight_decay))
        if not math.isfinite(dampening):
            raise ValueError("Invalid dampening value: {}".format(dampening))
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        if differentiable:
            raise ValueError("differentiable: deba.torch.SGD does not support differentiable=True "
                             "(use torch.optim.SGD)")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach, differentiable=False)
        super().__init__(params, defaults)
        self._deba_pending = None   # (monitor, loss sum, samples, correct) of an after_backward awaiting step

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("differentiable", False)
        self._deba_pending = None

    def _settings(self, group, first=0):
        return _lib.Sgd(float(group["lr"]), float(group["momentum"]), float(group["dampening"]),
                        float(group["weight_decay"]), int(bool(group["nesterov"])), int(bool(group["maximize"])),
                        first)

    def _fast(self, group, params):
        """Whether libdeba can step this group: every parameter with a gradient, the gradient and its
        momentum buffer (if any) are contiguous float32 host tensors."""
        for p in params:
            if not (_host_tensor(p) and _host_tensor(p.grad)):
                return False
            buf = self.state[p].get("momentum_buffer") if p in self.state else None
            if buf is not None and not (_host_tensor(buf) and buf.numel() == p.numel()):
                return False
        return True

    def _fused_ready(self):
        """The parameters with a gradient, in group order, when every group takes libdeba's path;
        None otherwise."""
        out = []
        for group in self.param_groups:
            params = _grad_params(group)
            if not self._fast(group, params):
                return None
            out += params
        return out

    def _step_fast(self, group, params, sums):
        """One libdeba call per run of parameters that share `first` (in order, so the moments added
        to sums keep deba_grad_moments_many's bits); sums is None or two c_double."""
        momentum = float(group["momentum"])
        bufs = []
        for p in params:
            state = self.state[p]
            buf = state.get("momentum_buffer") if momentum != 0 else None
            if momentum != 0 and buf is None:   # the first step's buffer: C writes d_p into it
                buf = torch.empty_like(p, memory_format=torch.contiguous_format)
                state["momentum_buffer"] = buf
                bufs.append((buf, 1))
            else:
                if momentum == 0:
                    state["momentum_buffer"] = None   # as torch's step leaves it
                bufs.append((buf, 0))
        err = _lib.Err()
        lo = 0
        while lo < len(params):
            hi = lo + 1
            while hi < len(params) and bufs[hi][1] == bufs[lo][1]:
                hi += 1
            run = params[lo:hi]
            n = len(run)
            ptr = ctypes.c_void_p * n
            cfg = self._settings(group, bufs[lo][1])
            st = _lib.lib.deba_sgd_moments_many(
                ptr(*[p.data_ptr() for p in run]), ptr(*[p.grad.data_ptr() for p in run]),
                ptr(*[b.data_ptr() for b, _ in bufs[lo:hi]]) if momentum != 0 else None,
                (ctypes.c_int64 * n)(*[p.numel() for p in run]), n, ctypes.byref(cfg),
                ctypes.byref(sums[0]) if sums else None, ctypes.byref(sums[1]) if sums else None, ctypes.byref(err))
            _lib.raise_for(st, err)
            lo = hi
        # libdeba wrote the parameters behind autograd's back: bump their version counters as an
        # in-place torch op would, so a graph that saved them still refuses to backward
        for p in params:
            p.as_strided((0,), (1,)).zero_()

    def _step_torch(self, group, params):
        bufs = [self.state[p].get("momentum_buffer") for p in params]
        _torch_sgd(params, [p.grad for p in params], bufs, weight_decay=group["weight_decay"],
                   momentum=group["momentum"], lr=group["lr"], dampening=group["dampening"],
                   nesterov=group["nesterov"], maximize=group["maximize"],
                   has_sparse_grad=any(p.grad.is_sparse for p in params), foreach=group["foreach"])
        for p, b in zip(params, bufs):
            self.state[p]["momentum_buffer"] = b

    def step(self, closure=None):
        """One SGD step, as torch.optim.SGD.step(closure=None). After a Monitor's after_backward it
        also records that step's signals (Σg, Σg² of the gradients this step applies)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            err = _lib.Err()
            for group in self.param_groups:   # refuse bad settings before any group moves
                _lib.raise_for(_lib.lib.deba_sgd_moments_many(None, None, None, None, 0, ctypes.byref(
                    self._settings(group)), None, None, ctypes.byref(err)), err)
            pending, self._deba_pending = self._deba_pending, None
            plan = [(g, _grad_params(g)) for g in self.param_groups]
            fast = [self._fast(g, ps) for g, ps in plan]
            sums, numel = None, sum(p.numel() for _, ps in plan for p in ps)
            if pending is not None:
                if all(fast):
                    sums = (ctypes.c_double(0.0), ctypes.c_double(0.0))
                else:   # the gradients changed kind since after_backward: read them before the update
                    gs, gq = grad_moments([p.grad for _, ps in plan for p in ps]).tolist()
            for (group, params), f in zip(plan, fast):
                if f:
                    self._step_fast(group, params, sums)
                elif params:
                    self._step_torch(group, params)
            if pending is not None:
                if sums is not None:
                    gs, gq = sums[0].value, sums[1].value
                pending[0]._complete(gs, gq, numel, *pending[1:])
        return loss


class Monitor:
    """Records a PyTorch run as deba-train would: one after_backward() per step, one end_epoch()
    per epoch, which writes the trace row and returns the next epoch's batch size.

    run_dir is the root of run directories (deba-train's --out): the run goes to
    run_dir/arch/dataset/label/seed<seed>/. scheduler=None is a fixed-batch run; its batch size is
    batch_size, or the first step's. optimizer (optional) supplies lr, momentum and weight decay
    for meta.csv and the lr column; a deba.torch.SGD over the model's parameters on the CPU also
    takes each step's Σg and Σg² in its own pass, so after_backward() reads no gradient and the
    step's record is written by optimizer.step(). Use it as a context manager, or call close()."""

    def __init__(self, model, run_dir, arch, dataset, seed, scheduler=None, batch_size=None, optimizer=None,
                 label=None, epochs=0, lr=None, lr_scaling="none", resume=False, force=False, keep_epochs=None,
                 image_size=0, subset=0, test_subset=0, thresholds_source=None):
        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"model: must be a torch.nn.Module (got {type(model).__name__})")
        if scheduler is not None and not isinstance(scheduler, Scheduler):
            raise ValueError(f"scheduler: must be a deba.Scheduler or None (got {type(scheduler).__name__})")
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        group = optimizer.param_groups[0] if optimizer is not None else {}
        params = list(model.parameters())
        dev = params[0].device if params else torch.device("cpu")
        self.device = dev
        self._run_args = dict(
            out=str(run_dir), arch=arch, dataset=dataset, seed=seed, label=label, epochs=epochs,
            lr=float(lr if lr is not None else group.get("lr", 0.01)),
            momentum=float(group.get("momentum", 0.0) if optimizer is not None else 0.9),
            weight_decay=float(group.get("weight_decay", 0.0) if optimizer is not None else 5e-4),
            lr_scaling=lr_scaling, device=dev.type,
            device_name=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "pytorch cpu",
            params=sum(p.numel() for p in params if p.requires_grad), image_size=image_size, subset=subset,
            test_subset=test_subset, thresholds_source=thresholds_source, resume=resume, force=force,
            keep_epochs=keep_epochs)
        self.run = None
        if scheduler is not None or batch_size is not None:
            self._open(batch_size)
        self._signal_s = 0.0
        self._t_epoch = time.perf_counter()
        self._t_last = None

    def _open(self, batch_size):
        self.run = Run(scheduler=self.scheduler, batch=None if self.scheduler is not None else batch_size,
                       **self._run_args)
        self.scheduler = self.run.scheduler

    @property
    def batch_size(self):
        """B for the coming epoch (None before a fixed-batch run's first step)."""
        return self.run.batch_size if self.run is not None else None

    def after_backward(self, loss, batch_size, correct=None):
        """After loss.backward(), before optimizer.step(): loss is the batch's mean loss (a tensor or a
        number), batch_size its samples, correct (optional, tensor or int) its right predictions."""
        t0 = time.perf_counter()
        n = _int("batch_size", batch_size)
        if self.run is None:
            self._open(n)
        opt = self.optimizer if isinstance(self.optimizer, SGD) else None
        if opt is not None and opt._deba_pending is not None:
            raise ValueError("after_backward: called twice without optimizer.step() in between (with "
                             "deba.torch.SGD the step records the signals of the previous after_backward)")
        params = [p for p in self.model.parameters() if p.grad is not None]
        if not params:
            raise ValueError("after_backward: no parameter of the model has a .grad (call it after backward())")
        grads = [p.grad for p in params]
        numel = sum(g.numel() for g in grads)
        fused = opt is not None and _same_tensors(opt._fused_ready(), params)
        host = None if fused else _host_moments(grads)
        if fused or host is not None:   # CPU: no tensors to build, the host already holds every number
            ls = float(loss.detach()) * n if torch.is_tensor(loss) else float(loss) * n
            c = float(correct.detach()) if torch.is_tensor(correct) else float(correct or 0)
            if fused:   # opt.step() reads the gradients once, for the update and these sums
                opt._deba_pending = (self, ls, n, c)
                self._t_last = time.perf_counter()
                self._signal_s += self._t_last - t0
                return
            gs, gq = host
        else:
            m = _device_moments(grads)
            dev = m.device
            loss_t = loss.detach().to(dev, torch.float64).reshape(()) if torch.is_tensor(loss) else \
                torch.tensor(float(loss), dtype=torch.float64, device=dev)
            corr_t = correct.detach().to(dev, torch.float64).reshape(()) if torch.is_tensor(correct) else \
                torch.tensor(float(correct or 0), dtype=torch.float64, device=dev)
            # the one host sync of the step: four numbers
            gs, gq, ls, c = torch.stack([m[0], m[1], loss_t * n, corr_t]).tolist()
        self.run.add_step(gs, gq, numel, ls, n, int(round(c)))
        self._t_last = time.perf_counter()
        self._signal_s += self._t_last - t0

    def _complete(self, gs, gq, numel, ls, n, c):
        """The record of a step whose moments deba.torch.SGD.step took in its own pass."""
        t0 = time.perf_counter()
        self.run.add_step(gs, gq, numel, ls, n, int(round(c)))
        self._signal_s += time.perf_counter() - t0

    def _pending(self):
        opt = self.optimizer
        return isinstance(opt, SGD) and opt._deba_pending is not None and opt._deba_pending[0] is self

    def end_epoch(self, test_loss, test_acc, eval_time_s=None, lr=None, data_time_s=0.0, compute_time_s=0.0):
        """Writes the epoch's row; returns the batch size of the next epoch. epoch_time_s is the time
        from the previous end_epoch (or the Monitor's creation) to the last after_backward; the time
        after it, until this call, is the evaluation's unless eval_time_s is given. Raises
        deba.Diverged when the epoch's loss or gradients were not finite."""
        now = time.perf_counter()
        if self._pending():
            raise ValueError("end_epoch: the last after_backward() has no optimizer.step() yet (deba.torch.SGD "
                             "records the step's signals in step(); call it before end_epoch)")
        if self.run is None or self._t_last is None:
            raise ValueError("end_epoch: no after_backward() in this epoch")
        epoch_time = self._t_last - self._t_epoch
        if eval_time_s is None:
            eval_time_s = now - self._t_last
        if lr is None and self.optimizer is not None:
            lr = self.optimizer.param_groups[0]["lr"]
        row = self.run.end_epoch(test_loss=float(test_loss), test_acc=float(test_acc), lr=lr,
                                 epoch_time_s=epoch_time, eval_time_s=eval_time_s, signal_time_s=self._signal_s,
                                 data_time_s=data_time_s, compute_time_s=compute_time_s)
        self._signal_s = 0.0
        self._t_last = None
        self._t_epoch = time.perf_counter()
        self.last = row
        return row["next_batch_size"]

    def close(self, status=None, error=None):
        if self._pending():   # a step that never came: nothing to record
            self.optimizer._deba_pending = None
        if self.run is not None:
            self.run.close(status, error)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if self._pending():
            self.optimizer._deba_pending = None
        if self.run is not None:
            return self.run.__exit__(et, ev, tb)
        return False


class AdaptiveBatchSize:
    """The DataLoader for the scheduler's batch size: iterate it once per epoch; a new B rebuilds the
    loader (and rescales the optimizer's lr with lr_scaling none|linear|sqrt, as deba-train does).
    Shuffling uses its own torch.Generator seeded with `seed`, saved by state_dict()."""

    def __init__(self, dataset, scheduler, optimizer=None, lr_scaling="none", base_lr=None, seed=0, shuffle=True,
                 **loader_kwargs):
        if isinstance(scheduler, Monitor):
            scheduler = scheduler.scheduler
        if not isinstance(scheduler, Scheduler):
            raise ValueError(f"scheduler: must be a deba.Scheduler or a deba.torch.Monitor with one "
                             f"(got {type(scheduler).__name__})")
        if lr_scaling not in LR_SCALINGS:
            raise ValueError(f"lr_scaling: must be none, linear or sqrt (got {lr_scaling!r})")
        self.dataset, self.scheduler, self.optimizer = dataset, scheduler, optimizer
        self.lr_scaling = lr_scaling
        if base_lr is None and optimizer is not None:
            base_lr = optimizer.param_groups[0]["lr"]
        self.base_lr = None if base_lr is None else float(base_lr)
        self.shuffle, self.loader_kwargs = bool(shuffle), loader_kwargs
        self.generator = torch.Generator()
        self.generator.manual_seed(_int("seed", seed))
        self._loader, self._b = None, None

    @property
    def batch_size(self):
        return self.scheduler.batch_size

    def lr(self, batch_size=None):
        b = self.batch_size if batch_size is None else batch_size
        ratio = b / self.scheduler.config["batch"]
        return {"none": self.base_lr, "linear": self.base_lr * ratio,
                "sqrt": self.base_lr * math.sqrt(ratio)}[self.lr_scaling]

    def loader(self):
        """The DataLoader for the coming epoch (the same one while B stays)."""
        b = self.batch_size
        if self._loader is None or b != self._b:
            self._loader = torch.utils.data.DataLoader(self.dataset, batch_size=b, shuffle=self.shuffle,
                                                       generator=self.generator, **self.loader_kwargs)
            self._b = b
            if self.optimizer is not None and self.base_lr is not None:
                for g in self.optimizer.param_groups:
                    g["lr"] = self.lr(b)
        return self._loader

    def __iter__(self):
        return iter(self.loader())

    def __len__(self):
        return len(self.loader())

    def state_dict(self):
        return {"batch_size": self.batch_size, "base_lr": self.base_lr, "lr_scaling": self.lr_scaling,
                "generator": self.generator.get_state(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state):
        for k in ("base_lr", "lr_scaling", "generator", "scheduler"):
            if k not in state:
                raise ValueError(f"state: not an AdaptiveBatchSize state_dict (no {k!r})")
        if state["lr_scaling"] not in LR_SCALINGS:
            raise ValueError(f"state: lr_scaling {state['lr_scaling']!r} is not none, linear or sqrt")
        self.scheduler.load_state_dict(state["scheduler"])
        self.base_lr, self.lr_scaling = state["base_lr"], state["lr_scaling"]
        self.generator.set_state(state["generator"])
        self._loader = None


__all__ = ["Monitor", "SGD", "AdaptiveBatchSize", "grad_moments", "Diverged"]
