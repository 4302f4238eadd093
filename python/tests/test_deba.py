"""The deba package against values worked out by hand and against the C trainer: run by
tests/test_python.c with DEBA_LIBRARY, PYTHONPATH and DEBA_BIN set (python3 -m unittest)."""
import csv
import os
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
