"""What the training loop does around each step, one small object each, called at named points.

The loop (:meth:`fastdenoise.engine.Trainer._loop`) runs a stage's iterations and calls, in this order,
``stage_start(loop)`` once, ``after_step(loop)`` after every iteration (the run's counter already advanced)
and ``stage_end(loop)`` once. :class:`StageLoop` is what they see: the trainer, the run, the stage, the
iteration just run (``t``), its loss and estimate, and the stage's iteration count (``total``, which the
time budget may lower).
"""
from __future__ import annotations

import sys
import time

import torch

from fastdenoise.engine.common import ema_update
from fastdenoise.engine.common import psnr_quick


class StageLoop:
    """The state of one stage's loop that callbacks read (and the time budget changes ``total`` of)."""

    def __init__(self, trainer, stage, total: int, clean: torch.Tensor | None, use_ema: bool):
        self.trainer, self.run, self.stage = trainer, trainer.run, stage
        self.part = trainer.run.part
        self.total, self.start = total, trainer.run.t
        self.clean, self.use_ema = clean, use_ema
        self.t = self.start
        self.t_iter = self.t0 = 0.0          # start of the current iteration and of the loop (perf_counter)
        self.loss: torch.Tensor | None = None
        self.batch: torch.Tensor | None = None     # the current iteration's input (the noisy image or crops)
        self.est: torch.Tensor | None = None
        self.post: dict = {}                 # what the progress bar shows at the next log point

    @property
    def last(self) -> bool:
        return self.run.t == self.total

    @property
    def log_point(self) -> bool:
        return self.last or (self.run.t - self.start) % max(1, self.trainer.cfg.log_every) == 0


class Callback:
    def stage_start(self, loop: StageLoop) -> None:
        pass

    def after_step(self, loop: StageLoop) -> None:
        pass

    def stage_end(self, loop: StageLoop) -> None:
        pass


class TimeBudget(Callback):
    """``time_budget`` seconds for the whole fit: the second iteration is timed, then the mean of iterations
    2-9, and the iteration count becomes the largest that fits the rest of the budget (at most the nominal
    one; later stages are scaled alike). Prints every count it sets."""

    def __init__(self, trainer, budget: float, nominal: int, share):
        self.trainer, self.budget, self.nominal = trainer, float(budget), nominal
        self.count = nominal            # the fit's iteration count in effect (the first stage's scale)
        self.share = share              # share(stage index, count) -> that stage's iterations
        self.active = False

    def stage_start(self, loop: StageLoop) -> None:
        run = loop.run
        self.active = run.t == 0 and not run.done and loop.total > 2
        self.index = self.trainer.stages.index(loop.stage)

    def after_step(self, loop: StageLoop) -> None:
        t, start = loop.t, loop.start
        if not self.active or t not in (start + 1, start + 9):
            return
        dev = self.trainer.device
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        now = time.perf_counter()
        if t == start + 1:
            self.t_mark = now
            loop.total = self._retotal(now - loop.t0, now - loop.t_iter)
        elif t < loop.total:
            loop.total = self._retotal(now - loop.t0, (now - self.t_mark) / 8, t + 1 - start)

    def _retotal(self, elapsed: float, dt: float, done: int = 2) -> int:
        stages = self.trainer.stages
        before = self.count
        share = sum(self.share(j, self.nominal) for j in range(self.index, len(stages))) / max(1, self.nominal)
        more = int(max(0.0, self.budget - elapsed) / max(dt * share, 1e-9))
        self.count = max(done, min(self.nominal, done + more))
        if self.count != before or done == 2:
            print(f"{self.trainer.method.name}: time budget {self.budget:g}s, one iteration {dt:.3f}s -> "
                  f"{self.count} iterations (nominal {self.nominal})", file=sys.stderr, flush=True)
        return self.share(self.index, self.count)


GUARD_GRACE = 20
"""Iterations a :class:`CollapseGuard` lets pass before it judges (at most half the stage)."""


class CollapseGuard(Callback):
    """Stops a single-image fit whose estimate falls towards its noisy input, and keeps the start.

    A consistency loss such as P2N's is also lowered by moving the network towards the identity: the
    residual ``y - x_hat`` shrinks and the estimate becomes the noisy image. On noise the start already
    removes (camera noise from a camera start) that is where the fit goes. The guard compares the residual
    energy ``mean((y - est)^2)`` of each step's estimate with that of the first (the start's own): when it
    falls below ``ratio`` times that at or after the grace iteration (:data:`GUARD_GRACE`, at most half the
    stage), the network gets its weights from before the first step back, the
    output EMA becomes the start's estimate, the stage stops and a line on stderr says so
    (``run.guard_stops`` maps the image to the iteration). In a batched fit (``Trainer.fit_many``) each
    copy is watched on its own image: a stopped copy keeps its start weights and estimate while the others
    go on, and the stage ends when every copy has stopped. Single-image fits from iteration 0 whose steps
    estimate the whole image (not crops, not dataset mode, not a resumed stage). One host sync per step.

    The grace iterations: Adam's first steps move every weight by about the learning rate whatever the
    gradient's size, and a fit that goes on to gain can dip well below half its start's residual on the
    way (a SIDD block fitted on its sub-images: 0.32 of it at iteration 3, back to 1.03 by iteration 15,
    ending 2.3 dB above its start). A fit sliding to the identity keeps falling (camera noise at full
    resolution: 0.03 of the start's by iteration 15), so it is still caught after the grace."""

    def __init__(self, trainer, ratio: float):
        self.trainer, self.ratio = trainer, float(ratio)
        self.active = False
        self.grace = GUARD_GRACE

    def stage_start(self, loop: StageLoop) -> None:
        run = loop.run
        self.active = run.t == 0 and not run.dataset_mode and not run.done
        self.r0 = self.first = None
        self.k, self.stopped = max(int(run.batched), 1), set()
        if self.active:
            self.weights = {k: v.detach().clone() for k, v in loop.part.model.state_dict().items()}

    def _keep_start(self, loop: StageLoop, i: int) -> None:
        """Copy ``i`` back to its weights and estimate from before the first step."""
        model, run = loop.part.model, loop.run
        with torch.no_grad():
            if self.k == 1:
                model.load_state_dict(self.weights)
            else:      # a BatchedModel: parameter j of copy i is p{j}[i]
                for name, w in self.weights.items():
                    getattr(model, name)[i].copy_(w[i])
        if run.ema is not None:
            run.ema.view(-1, self.k, *run.ema.shape[1:])[:, i] = self.first.view(-1, self.k, *run.ema.shape[1:])[:, i]

    def after_step(self, loop: StageLoop) -> None:
        est, batch, run = loop.est, loop.batch, loop.run
        if not self.active or est is None or batch is None or est.shape != batch.shape:
            return
        if run.ema is not None and run.ema.shape != est.shape:
            return
        r = (batch.float() - est.float()).pow(2).reshape(-1, self.k, est[0].numel()).mean(dim=(0, 2)).tolist()
        if self.r0 is None:
            self.r0, self.first = r, est.detach().clone()
            return
        for i in sorted(self.stopped):                  # stopped copies of a batched fit stay at their start
            self._keep_start(loop, i)
        if loop.t - loop.start < min(self.grace, loop.total // 2):
            return
        for i in range(self.k):
            if i in self.stopped or r[i] >= self.ratio * self.r0[i]:
                continue
            self.stopped.add(i)
            self._keep_start(loop, i)
            run.guard_stops[i] = loop.t
            which = f" (image {i + 1} of {self.k})" if self.k > 1 else ""
            print(f"{self.trainer.method.name}{which}: at iteration {loop.t + 1} the estimate's residual energy "
                  f"fell to {r[i] / max(self.r0[i], 1e-12):.2f} of the start's (guard {self.ratio:g}): the fit is "
                  f"moving towards the noisy input, so it stops and keeps the start", file=sys.stderr, flush=True)
        if len(self.stopped) == self.k:
            loop.total = run.t
            self.active = False


class LossLog(Callback):
    """Losses kept on the device and copied to ``run.losses`` at log points (one sync each)."""

    def __init__(self):
        self.pending: list[torch.Tensor] = []

    def stage_start(self, loop: StageLoop) -> None:
        self.pending = []

    def after_step(self, loop: StageLoop) -> None:
        self.pending.append(loop.loss.detach().float())
        if loop.log_point:
            self.flush(loop)
            loop.post["loss"] = f"{loop.run.losses[-1]:.4g}"

    def flush(self, loop: StageLoop) -> None:
        if self.pending:
            loop.run.losses.extend(torch.stack(self.pending).cpu().tolist())
            self.pending = []

    def stage_end(self, loop: StageLoop) -> None:
        self.flush(loop)


def weight_ema_pairs(avg: dict[str, torch.Tensor], model: torch.nn.Module):
    """(averages, live tensors) of the floating entries and of the others, paired once per stage: the
    optimiser and BatchNorm update the live tensors in place, so the pairs stay valid."""
    live = model.state_dict()
    fl = [k for k in avg if avg[k].is_floating_point()]
    other = [k for k in avg if not avg[k].is_floating_point()]
    return ([avg[k] for k in fl], [live[k].detach() for k in fl]), ([avg[k] for k in other], [live[k] for k in other])


@torch.no_grad()
def weight_ema_update(pairs, decay: float) -> None:
    """``avg <- decay * avg + (1 - decay) * weights`` for floating tensors (one foreach launch); the
    integer buffers copied."""
    (fa, fl), (oa, ol) = pairs
    if fa:
        torch._foreach_lerp_(fa, fl, 1.0 - decay)
    for a, v in zip(oa, ol):
        a.copy_(v)


class WeightEMA(Callback):
    """Polyak averaging of the stage's network (``weight_ema``): the average replaces the weights when the
    stage ends. The average lives in ``run.wema``, so checkpoints carry it."""

    def __init__(self, decay: float):
        self.decay, self.pairs = decay, None

    def stage_start(self, loop: StageLoop) -> None:
        run, model = loop.run, loop.part.model
        if run.wema is None and loop.start < loop.total:
            run.wema = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.pairs = weight_ema_pairs(run.wema, model) if run.wema is not None else None

    def after_step(self, loop: StageLoop) -> None:
        if self.pairs is not None:
            weight_ema_update(self.pairs, self.decay)

    def stage_end(self, loop: StageLoop) -> None:
        run = loop.run
        if run.wema is not None and run.t >= loop.total:   # the stage is over: its network becomes the average
            with torch.no_grad():
                loop.part.model.load_state_dict(run.wema)
            run.wema = None


class OutputEMA(Callback):
    """The EMA of the steps' estimates (``ema``), single-image mode: ``FitResult.ema_output``."""

    def __init__(self, decay: float):
        self.decay = decay

    def after_step(self, loop: StageLoop) -> None:
        if loop.est is not None:
            loop.run.ema = ema_update(loop.run.ema, loop.est, self.decay)


class PSNRLog(Callback):
    """PSNR of the estimate (or its EMA) against a clean reference at log points: ``run.psnr``."""

    def after_step(self, loop: StageLoop) -> None:
        est, clean = loop.est, loop.clean
        if loop.log_point and clean is not None and est is not None and clean.shape == est.shape:
            p = psnr_quick(loop.run.ema if loop.run.ema is not None else est, clean)
            loop.run.psnr.append((loop.t, p))
            loop.post["psnr"] = f"{p:.2f}"


class Progress(Callback):
    """A tqdm bar per stage (loss, and PSNR with a clean reference), refreshed at log points."""

    def __init__(self):
        self.bar = None

    def stage_start(self, loop: StageLoop) -> None:
        self.bar = None
        if loop.start < loop.total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=loop.total, initial=loop.start, desc=loop.stage.name, dynamic_ncols=True)

    def after_step(self, loop: StageLoop) -> None:
        if self.bar is None:
            return
        self.bar.total = loop.total
        if loop.log_point:
            self.bar.set_postfix(loop.post, refresh=False)
            self.bar.update(loop.run.t - self.bar.n)

    def stage_end(self, loop: StageLoop) -> None:
        if self.bar is not None:
            self.bar.close()


class Checkpointer(Callback):
    """A checkpoint every ``checkpoint_every`` iterations (not at the stage's last, which the stage's end
    writes) and at the end of each stage, to ``checkpoint``."""

    def __init__(self, path: str, every: int, losses: LossLog):
        self.path, self.every, self.losses = path, every, losses

    def after_step(self, loop: StageLoop) -> None:
        if self.every and loop.run.t % self.every == 0 and not loop.last:
            self.losses.flush(loop)
            loop.trainer.save_checkpoint(self.path)

    def stage_end(self, loop: StageLoop) -> None:
        loop.trainer.save_checkpoint(self.path)
