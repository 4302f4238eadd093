"""The deba package against values worked out by hand and against the C trainer: run by
tests/test_python.c with DEBA_LIBRARY, PYTHONPATH and DEBA_BIN set (python3 -m unittest)."""
import csv
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import deba

# examples/sched_loop.c's designed epochs (grad_var, grad_norm, train_loss) with cooldown 2, and the
# decisions and next batch sizes worked out by hand in its comments (B0 64, τ .25, θ .5, λ .1).
PLAN = [(1, 2, 1.00), (1, 2, 0.99), (.36, 2, .98), (.36, 2, .97), (.16, 2, .96), (.16, 2, .95), (4, 4, .94),
        (1, 2, .93)]
WANT = [("warmup", 64), ("hold", 64), ("increase", 96), ("cooldown", 96), ("increase", 144), ("cooldown", 144),
        ("rollback", 115), ("cooldown", 115)]


def read_meta(path):
    with open(path, newline="") as f:
        return dict(csv.reader(f))


class SchedulerTest(unittest.TestCase):
    def test_designed_sequence(self):
        s = deba.Scheduler(cooldown=2)
        got = [(s.step(*p), s.batch_size) for p in PLAN]
        self.assertEqual(got, WANT)
        self.assertEqual(s.epoch, 8)

    def test_bad_values_carry_the_c_message(self):
        with self.assertRaisesRegex(ValueError, r"^--batch must be >= --bmin 32 \(got 16\)$"):
            deba.Scheduler(batch=16)
        with self.assertRaisesRegex(ValueError, r"--rollback must be in \(0, 1\)"):
            deba.Scheduler(rollback=1.5)
        with self.assertRaisesRegex(ValueError, "batch: must be an integer"):
            deba.Scheduler(batch="64")
        with self.assertRaisesRegex(ValueError, "--method must be fixed or deba"):
            deba.Scheduler(method="adam")
        with self.assertRaisesRegex(ValueError, "grad_var"):
            deba.Scheduler().step(-1.0, 1.0, 1.0)

    def test_state_dict_round_trip(self):
        a = deba.Scheduler(cooldown=2)
        for p in PLAN[:4]:
            a.step(*p)
        b = deba.Scheduler()
        b.load_state_dict(a.state_dict())
        self.assertEqual((b.batch_size, b.epoch, b.config["cooldown"]), (96, 4, 2))
        for p in PLAN[4:]:
            self.assertEqual(a.step(*p), b.step(*p))
            self.assertEqual(a.last, b.last)
        with self.assertRaisesRegex(ValueError, "scheduler state"):
            b.load_state_dict({"deba_scheduler": b"DEBASCH1junk"})


class RunTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.dir)

    def test_steps_to_rows_refusal_and_resume(self):
        kw = dict(out=self.dir, arch="net", dataset="data", seed=1, epochs=3)
        with deba.Run(scheduler=deba.Scheduler(cooldown=1), **kw) as run:
            # step 1: Σg 2, Σg² 10 over 4 entries -> var 2.25, norm √10; loss 6 over 3 samples
            run.add_step(2.0, 10.0, 4, 6.0, 3, correct=3)
            row = run.end_epoch(test_loss=1.0, test_acc=50.0)
            self.assertEqual((row["epoch"], row["batch_size"], row["steps"]), (1, 64, 1))
            self.assertAlmostEqual(row["grad_var"], 2.25, places=15)
            self.assertAlmostEqual(row["train_loss"], 2.0, places=15)
            self.assertEqual(row["train_acc"], 100.0)
            with self.assertRaisesRegex(ValueError, "test_acc 101 is out of range"):
                run.add_step(2.0, 10.0, 4, 6.0, 3)
                run.end_epoch(test_loss=1.0, test_acc=101.0)
        meta = read_meta(os.path.join(run.dir, "meta.csv"))
        self.assertEqual(meta["status"], "interrupted")   # 1 of 3 planned epochs
        with self.assertRaisesRegex(ValueError, "already holds a run: use resume to continue it or force"):
            deba.Run(scheduler=deba.Scheduler(cooldown=1), **kw)
        with self.assertRaisesRegex(ValueError, "started with cooldown 1, not 4"):
            deba.Run(scheduler=deba.Scheduler(cooldown=4), resume=True, **kw)
        s = deba.Scheduler(cooldown=1)
        run = deba.Run(scheduler=s, resume=True, **kw)
        self.assertEqual((run.epochs_done, s.epoch), (1, 1))   # rebuilt from the trace
        with self.assertRaisesRegex(ValueError, "belongs to a run"):
            s.step(1.0, 1.0, 1.0)
        with self.assertRaises(deba.Diverged):
            run.add_step(2.0, 10.0, 4, float("nan"), 3)
            run.end_epoch(test_loss=1.0, test_acc=50.0)
        meta = read_meta(os.path.join(run.dir, "meta.csv"))
        self.assertEqual(meta["status"], "diverged")


class TorchTest(unittest.TestCase):
    def test_grad_moments_by_hand(self):
        import torch
        import deba.torch as dt
        g = [torch.tensor([1.0, -2.0]), torch.tensor([[3.0], [0.5]])]
        self.assertEqual(dt.grad_moments(g).tolist(), [2.5, 14.25])   # 1-2+3+.5, 1+4+9+.25

    def test_grad_moments_host_matches_float64(self):
        """The CPU path (libdeba over the tensors in place) against float64 sums computed by torch,
        and against the per-tensor device path, which a transposed (non-contiguous) tensor forces."""
        import torch
        import deba.torch as dt
        gen = torch.Generator().manual_seed(5)
        g = [torch.randn(n, generator=gen) * 1e-3 + 2e-4 for n in (1, 17, 16384, 16385, 70001)]
        g.append(torch.randn(300, 129, generator=gen))
        ref_s = sum(t.double().sum().item() for t in g)
        ref_q = sum((t.double() ** 2).sum().item() for t in g)
        self.assertIsNotNone(dt._host_moments(g))
        s, q = dt.grad_moments(g).tolist()
        self.assertAlmostEqual(s, ref_s, delta=1e-6 * sum(t.double().abs().sum().item() for t in g))
        self.assertAlmostEqual(q, ref_q, delta=1e-6 * ref_q)
        gt = g[:-1] + [g[-1].t()]   # same values, not contiguous: the device path
        self.assertIsNone(dt._host_moments(gt))
        s2, q2 = dt.grad_moments(gt).tolist()
        self.assertAlmostEqual(s2, ref_s, delta=1e-6 * sum(t.double().abs().sum().item() for t in g))
        self.assertAlmostEqual(q2, ref_q, delta=1e-6 * ref_q)


def _torch_fuses_add():
    """Whether this torch's CPU add(x, alpha=a) is one fused multiply-add (ATen's AVX2/AVX-512
    kernels: yes): the float64 product plus self, rounded once to float, against torch's result over
    values where the two roundings differ."""
    import torch
    gen = torch.Generator().manual_seed(3)
    p, d = torch.randn(4099, generator=gen), torch.randn(4099, generator=gen)
    a = torch.tensor(0.9).float().double().item()
    fused = (p.double() + d.double() * a).float()
    return torch.equal(p.clone().add_(d, alpha=0.9), fused) and not torch.equal((p + (d * 0.9)), fused)


def _net():
    import torch
    torch.manual_seed(11)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(5 * 6 * 6, 10), torch.nn.Linear(10, 4))


def _batch(i):
    import torch
    gen = torch.Generator().manual_seed(100 + i)
    return torch.randn(16, 3, 8, 8, generator=gen), torch.randint(0, 4, (16,), generator=gen)


def _train(model, opt, steps, first=0):
    import torch
    for i in range(first, first + steps):
        x, y = _batch(i)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def _groups(model, **kw):
    """Two parameter groups, the second with its own lr and weight decay."""
    ps = list(model.parameters())
    return [{"params": ps[:3]}, {"params": ps[3:], "lr": 0.02, "weight_decay": kw.get("weight_decay", 0) + 1e-3}]


SGD_OPTIONS = [dict(momentum=m, dampening=dmp, nesterov=n, weight_decay=wd, maximize=mx)
               for m in (0, 0.9) for dmp in (0, 0.25) for n in (False, True) for wd in (0, 5e-4) for mx in (False, True)
               if not (n and (m == 0 or dmp != 0)) and not (m == 0 and dmp != 0)]


class SgdTest(unittest.TestCase):
    """deba.torch.SGD against torch.optim.SGD (foreach=False: _single_tensor_sgd), the semantics it
    copies. The parameters and momentum buffers agree bit for bit where torch's add with alpha is a
    fused multiply-add (its AVX2 and AVX-512 kernels, scalar tails included), as libdeba's is;
    within rtol 1e-6 otherwise."""

    def assert_same(self, a, b, exact):
        import torch
        for x, y in zip(a, b):
            if x is None or y is None:
                self.assertTrue(x is None and y is None)
            elif exact:
                self.assertTrue(torch.equal(x, y), (x - y).abs().max().item())
            else:
                torch.testing.assert_close(x, y, rtol=1e-6, atol=0)

    def state(self, model, opt):
        return list(model.parameters()) + [opt.state[p].get("momentum_buffer") for p in model.parameters()]

    def test_every_option_as_torch(self):
        import torch
        from unittest import mock
        import deba.torch as dt
        exact = _torch_fuses_add()
        for kw in SGD_OPTIONS:
            with self.subTest(**kw):
                a, b = _net(), _net()
                ta = torch.optim.SGD(_groups(a, **kw), lr=0.05, foreach=False, **kw)
                tb = dt.SGD(_groups(b, **kw), lr=0.05, **kw)
                with mock.patch.object(dt.SGD, "_step_torch", side_effect=AssertionError("not libdeba's path")):
                    for i in range(5):
                        _train(a, ta, 1, i)
                        _train(b, tb, 1, i)
                        self.assert_same(self.state(a, ta), self.state(b, tb), exact)
                        self.assertEqual([p._version for p in a.parameters()], [p._version for p in b.parameters()])

    def test_fallback_groups_and_closure(self):
        """A float64 group and a non-contiguous parameter take torch's own code; a closure's loss is
        returned and its gradients are the ones applied."""
        import torch
        import deba.torch as dt
        exact = _torch_fuses_add()
        for kw in (dict(momentum=0.9, nesterov=True, weight_decay=1e-4), dict(momentum=0.5, dampening=0.5)):
            models = []
            for cls in (torch.optim.SGD, dt.SGD):
                torch.manual_seed(2)
                lin = torch.nn.Linear(6, 3)
                dbl = torch.nn.Linear(6, 3).double()
                tr = torch.nn.Parameter(torch.randn(3, 6).t())   # non-contiguous
                x = torch.randn(4, 6)
                opt = cls([{"params": lin.parameters()}, {"params": dbl.parameters()}, {"params": [tr]}], lr=0.1,
                          **kw)

                def closure():
                    opt.zero_grad()
                    loss = lin(x).square().sum() + dbl(x.double()).square().sum().float() + (x @ tr).sum()
                    loss.backward()
                    return loss
                losses = [opt.step(closure).item() for _ in range(4)]
                models.append((losses, list(lin.parameters()) + list(dbl.parameters()) + [tr], opt))
            self.assertEqual(models[0][0][0], models[1][0][0])
            self.assert_same(models[0][1], models[1][1], exact)
            self.assertFalse(models[1][1][-1].is_contiguous())

    def test_state_dict_round_trip(self):
        import torch
        import deba.torch as dt
        exact = _torch_fuses_add()
        for kw in (dict(momentum=0.9, weight_decay=5e-4), dict(momentum=0)):
            ref, a, b = _net(), _net(), _net()
            tref = torch.optim.SGD(ref.parameters(), lr=0.05, foreach=False, **kw)
            _train(ref, tref, 6)
            # 3 steps ours, continued in torch; 3 steps torch, continued in ours
            ours = dt.SGD(a.parameters(), lr=0.05, **kw)
            _train(a, ours, 3)
            sd = ours.state_dict()
            if kw["momentum"] == 0:
                self.assertIsNone(sd["state"][0]["momentum_buffer"])   # as torch's step leaves it
            theirs = torch.optim.SGD(a.parameters(), lr=0.05, foreach=False, **kw)
            theirs.load_state_dict(sd)
            _train(a, theirs, 3, 3)
            self.assert_same(self.state(ref, tref), self.state(a, theirs), exact)
            first = torch.optim.SGD(b.parameters(), lr=0.05, foreach=False, **kw)
            _train(b, first, 3)
            back = dt.SGD(b.parameters(), lr=0.05, **kw)
            back.load_state_dict(first.state_dict())
            _train(b, back, 3, 3)
            self.assert_same(self.state(ref, tref), self.state(b, back), exact)
            self.assertEqual(back.state_dict()["param_groups"], tref.state_dict()["param_groups"])

    def test_validation_as_torch(self):
        import torch
        import deba.torch as dt
        ps = [torch.nn.Parameter(torch.ones(3))]
        for kw in (dict(lr=-0.1), dict(lr=0.1, momentum=-1), dict(lr=0.1, weight_decay=-1),
                   dict(lr=0.1, nesterov=True), dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), dict()):
            with self.subTest(**kw):
                with self.assertRaises(ValueError) as want:
                    torch.optim.SGD(ps, **kw)
                with self.assertRaisesRegex(ValueError, "^" + re.escape(str(want.exception)) + "$"):
                    dt.SGD(ps, **kw)
        with self.assertRaisesRegex(ValueError, "Invalid learning rate: nan"):
            dt.SGD(ps, lr=float("nan"))
        # a group's own bad setting: refused by libdeba at step(), before any group moves
        a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
        opt = dt.SGD([{"params": [a]}, {"params": [b], "momentum": -0.5}], lr=0.1)
        a.grad, b.grad = torch.ones(3), torch.ones(3)
        with self.assertRaisesRegex(ValueError, r"deba_sgd_moments_many: momentum must be finite and >= 0 \(got -0.5\)"):
            opt.step()
        self.assertEqual(a.tolist(), [1, 1, 1])

    # torch reports the modified tensor by throwing a C++ exception, which ASan's __cxa_throw
    # interceptor cannot pass on when make sanitize preloads libasan into a python3 built without it
    @unittest.skipIf("libasan" in os.environ.get("LD_PRELOAD", ""), "torch's C++ exceptions abort under preloaded ASan")
    def test_autograd_sees_the_update(self):
        """A graph that saved a parameter refuses to backward after the step, as with torch's SGD."""
        import torch
        import deba.torch as dt
        for cls in (torch.optim.SGD, dt.SGD):
            p = torch.nn.Parameter(torch.ones(4))
            p.grad = torch.ones(4)
            y = (p * p).sum()
            cls([p], lr=0.1).step()
            with self.assertRaisesRegex(RuntimeError, "modified by an inplace operation"):
                y.backward()


class MonitorSgdTest(unittest.TestCase):
    """Monitor with deba.torch.SGD records each step from the optimizer's own pass over the
    gradients: the same numbers, bit for bit, as Monitor reading them itself with torch.optim.SGD."""

    def setUp(self):
        self.dir = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.dir)

    def run_epochs(self, cls, label, grads_of):
        """Two epochs of 3 steps on hand-set gradients (the same whatever the optimizer did)."""
        import torch
        import deba.torch as dt
        model = _net()
        opt = cls(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        steps = []
        with dt.Monitor(model, self.dir, arch="net", dataset="d", seed=1, label=label, optimizer=opt,
                        scheduler=deba.Scheduler(cooldown=0, tau=10, theta=10), epochs=2) as mon:
            add = mon.run.add_step
            mon.run.add_step = lambda *a: (steps.append(a), add(*a))
            for epoch in range(2):
                for i in range(3):
                    for k, p in enumerate(model.parameters()):
                        p.grad = grads_of(epoch * 3 + i, k, p)
                    mon.after_backward(torch.tensor(1.5 + 0.25 * i), 16, correct=torch.tensor(5 + i))
                    opt.step()
                mon.end_epoch(test_loss=1.0, test_acc=40.0, eval_time_s=0.0)
            return steps, read_trace(os.path.join(mon.run.dir, "trace.csv"))

    def test_same_trace_as_torch_sgd(self):
        import torch
        from unittest import mock
        import deba.torch as dt

        def grads_of(step, k, p):
            gen = torch.Generator().manual_seed(1000 * step + k)
            return torch.randn(p.shape, generator=gen) * 1e-2 + 1e-3

        steps_t, rows_t = self.run_epochs(torch.optim.SGD, "torch", grads_of)
        with mock.patch.object(dt, "_host_moments", side_effect=AssertionError("Monitor read the gradients")):
            steps_d, rows_d = self.run_epochs(dt.SGD, "deba", grads_of)
        self.assertEqual(len(steps_d), 6)
        self.assertEqual(steps_d, steps_t)   # Σg, Σg² (same bits), numel, loss sum, n, correct
        timing = {"epoch_time_s", "compute_time_s", "data_time_s", "signal_time_s", "eval_time_s", "samples_per_s"}
        self.assertEqual([{k: v for k, v in r.items() if k not in timing} for r in rows_d],
                         [{k: v for k, v in r.items() if k not in timing} for r in rows_t])
        self.assertEqual([r["steps"] for r in rows_d], ["3", "3"])

    def test_misuse(self):
        import torch
        import deba.torch as dt
        model = _net()
        opt = dt.SGD(model.parameters(), lr=0.05, momentum=0.9)
        x, y = _batch(0)
        with dt.Monitor(model, self.dir, arch="net", dataset="d", seed=1, batch_size=16, optimizer=opt) as mon:
            def backward():
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                return loss
            opt.step()   # no after_backward: a plain step, nothing recorded
            loss = backward()
            mon.after_backward(loss, 16)
            with self.assertRaisesRegex(ValueError, "after_backward: called twice without optimizer.step"):
                mon.after_backward(loss, 16)
            with self.assertRaisesRegex(ValueError, "end_epoch: the last after_backward\\(\\) has no optimizer.step"):
                mon.end_epoch(test_loss=1.0, test_acc=50.0)
            opt.step()
            opt.step()   # a second step without after_backward records nothing either
            mon.end_epoch(test_loss=1.0, test_acc=50.0)
            self.assertEqual(mon.last["steps"], 1)

    def test_device_path_kept_when_not_fusable(self):
        """A float64 model: the optimizer steps through torch, so Monitor reads the gradients in
        after_backward as before (two after_backward calls in a row are two records)."""
        import torch
        import deba.torch as dt
        model = _net().double()
        opt = dt.SGD(model.parameters(), lr=0.05)
        x, y = _batch(0)
        with dt.Monitor(model, self.dir, arch="net", dataset="d", seed=1, batch_size=16, optimizer=opt) as mon:
            torch.nn.functional.cross_entropy(model(x.double()), y).backward()
            want = dt.grad_moments([p.grad for p in model.parameters()]).tolist()
            got = []
            add = mon.run.add_step
            mon.run.add_step = lambda *a: (got.append(a), add(*a))
            mon.after_backward(1.0, 16)
            mon.after_backward(1.0, 16)
            opt.step()
            self.assertEqual([list(g[:2]) for g in got], [want, want])
            mon.end_epoch(test_loss=1.0, test_acc=50.0)
            self.assertEqual(mon.last["steps"], 2)


def read_trace(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@unittest.skipUnless(os.environ.get("DEBA_BIN"), "DEBA_BIN: the built tools")
class AgreementTest(unittest.TestCase):
    """deba-train's measured columns through deba.Run: the trace deba.Run writes is deba-train's,
    byte for byte, derived columns and decisions included, and meta.csv has its keys."""

    def test_same_trace_as_deba_train(self):
        tmp = tempfile.mkdtemp()
        try:
            subprocess.run([os.path.join(os.environ["DEBA_BIN"], "deba-train"), "--arch", "cnn_small", "--dataset",
                            "fashion-mnist", "--subset", "500", "--test-subset", "200", "--epochs", "4", "--method",
                            "deba", "--cooldown", "1", "--tau", "0.3", "--theta", "0.6", "--lambda", "0.5", "--seed",
                            "5", "--device", "cpu", "--out", os.path.join(tmp, "c"), "--quiet"], check=True,
                           env=dict(os.environ, OMP_NUM_THREADS="2"))
            src = os.path.join(tmp, "c", "cnn_small", "fashion-mnist", "deba", "seed5")
            meta = read_meta(os.path.join(src, "meta.csv"))
            s = deba.Scheduler(batch=64, cooldown=1, tau=0.3, theta=0.6, lam=0.5)
            with deba.Run(os.path.join(tmp, "py"), "cnn_small", "fashion-mnist", 5, scheduler=s, epochs=4,
                          subset=500, test_subset=200, image_size=int(meta["image_size"]),
                          params=int(meta["params"]), device_name=meta["device_name"]) as run:
                for r in read_trace(os.path.join(src, "trace.csv")):
                    f = {k: float(v) for k, v in r.items() if k not in ("decision",)}
                    run.end_epoch(test_loss=f["test_loss"], test_acc=f["test_acc"], lr=f["lr"],
                                  epoch_time_s=f["epoch_time_s"], compute_time_s=f["compute_time_s"],
                                  data_time_s=f["data_time_s"], signal_time_s=f["signal_time_s"],
                                  eval_time_s=f["eval_time_s"], samples_per_s=f["samples_per_s"],
                                  steps=int(f["steps"]), train_loss=f["train_loss"], train_acc=f["train_acc"],
                                  grad_var=f["grad_var"], grad_norm=f["grad_norm"])
            with open(os.path.join(src, "trace.csv"), "rb") as a, open(os.path.join(run.dir, "trace.csv"), "rb") as b:
                self.assertEqual(a.read(), b.read())
            decisions = [r["decision"] for r in read_trace(os.path.join(run.dir, "trace.csv"))]
            self.assertIn("increase", decisions)
            mine = read_meta(os.path.join(run.dir, "meta.csv"))
            self.assertEqual(list(mine), list(meta))
            for k in meta:
                if k not in ("started_utc", "finished_utc"):
                    self.assertEqual(mine[k], meta[k], k)
        finally:
            shutil.rmtree(tmp)


if __name__ == "__main__":
    unittest.main()
