"""The loss-spike guard: decides, before the optimizer applies a step, what to do with it.

It keeps an exponential moving average (EMA) of the loss and of the gradient norm over healthy
steps. For each step's all-reduced loss and gradient norm it answers:

* ``"apply"``   a normal step;
* ``"skip"``    the loss or a gradient is not finite: the update is dropped (nothing applied);
* ``"spike"``   the loss is above ``spike_factor`` x its EMA: the update is applied (clipped)
                but counted; spikes do not feed the EMAs. (The gradient norm's EMA is reported
                beside each event: early in training norms grow legitimately, so they do not
                decide on their own);
* ``"rollback"`` ``spike_steps`` spikes in a row (or ``max_nonfinite`` non-finite steps in a
                row): the recipe reloads the last good checkpoint, skips the offending data
                window, lowers the learning rate by ``lr_factor`` and goes on;
* ``"give_up"``  a rollback was due but ``max_rollbacks`` were already spent: the run stops.

    >>> g = SpikeGuard({"enabled": True, "ema_beta": 0.5, "warmup_steps": 2, "spike_factor": 3.0,
    ...                 "spike_steps": 2, "lr_factor": 0.5, "max_rollbacks": 1, "max_nonfinite": 3})
    >>> [g.check(x, 1.0) for x in (2.0, 2.0, 2.1, 9.0, float("nan"), 9.5)]
    ['apply', 'apply', 'apply', 'spike', 'skip', 'rollback']
"""
from __future__ import annotations

import math


class SpikeGuard:
    def __init__(self, opts: dict):
        self.opts = opts
        self.ema_loss: float | None = None
        self.ema_grad: float | None = None
        self.healthy_steps = 0
        self.spike_run = 0           # consecutive spikes (non-finite steps count too)
        self.nonfinite_run = 0
        self.rollbacks = 0

    def check(self, loss: float, grad_norm: float) -> str:
        o = self.opts
        if not o["enabled"]:
            return "apply"
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            self.nonfinite_run += 1
            return self._maybe_rollback("skip", self.nonfinite_run >= o["max_nonfinite"])
        self.nonfinite_run = 0
        warm = self.healthy_steps >= o["warmup_steps"]
        spiking = warm and loss > o["spike_factor"] * self.ema_loss
        if spiking:
            self.spike_run += 1
            return self._maybe_rollback("spike", self.spike_run >= o["spike_steps"])
        self.spike_run = 0
        b = o["ema_beta"]
        self.ema_loss = loss if self.ema_loss is None else b * self.ema_loss + (1 - b) * loss
        self.ema_grad = grad_norm if self.ema_grad is None else b * self.ema_grad + (1 - b) * grad_norm
        self.healthy_steps += 1
        return "apply"

    def _maybe_rollback(self, verdict: str, due: bool) -> str:
        if not due:
            return verdict
        if self.rollbacks >= self.opts["max_rollbacks"]:
            return "give_up"
        self.rollbacks += 1
        self.spike_run = self.nonfinite_run = 0
        return "rollback"

    @property
    def in_spike(self) -> bool:
        return self.spike_run > 0 or self.nonfinite_run > 0

    # The EMA belongs to the model's history (restored on rollback); the rollback count does not.
    def state_dict(self) -> dict:
        return {"ema_loss": self.ema_loss, "ema_grad": self.ema_grad, "healthy_steps": self.healthy_steps,
                "spike_run": self.spike_run, "nonfinite_run": self.nonfinite_run, "rollbacks": self.rollbacks}

    def load_state_dict(self, st: dict, keep_rollbacks: bool = False) -> None:
        rollbacks = self.rollbacks
        for k, v in st.items():
            setattr(self, k, v)
        if keep_rollbacks:
            self.rollbacks = rollbacks
