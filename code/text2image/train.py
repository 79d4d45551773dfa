"""One training loop for every model of the book.

The loop knows nothing about the model: it asks ``loss_fn(model, batch)`` for
a loss (and optional metrics) and ``batch_fn(step)`` for the batch of a step.
Batches are a pure function of the step, so a run resumed from a checkpoint
sees exactly the batches it would have seen: an interrupted run (Ctrl-C or a
killed process) restarts from its last checkpoint and loses at most one
checkpoint interval. Everything it writes is safetensors or JSON/CSV.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

LOG_CSV = "log.csv"
EVAL_JSON = "eval.json"
STATE_DIR = "state"


@dataclass
class TrainConfig:
    steps: int
    batch_size: int
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 1.0
    warmup: int = 0
    eval_every: int = 0  # 0: evaluate only at the end
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA when present (or asked for), else CPU."""
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device):
    """bf16 autocast on CUDA; full precision on CPU, where bf16 is slow and changes results."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state into tensors (for safetensors) and the rest (for JSON)."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for index, values in state["state"].items():
        entry = {}
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                entry[key] = value
        scalars["state"][str(index)] = entry
    return tensors, scalars


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in scalars["state"].items()}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": scalars["param_groups"]}


class Trainer:
    """Train ``model`` on ``batch_fn(step)`` with ``loss_fn``; resumable from ``run_dir``."""

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor | tuple[torch.Tensor, dict[str, float]]],
        batch_fn: Callable[[int], Any],
        config: TrainConfig,
        run_dir: str | Path,
        eval_fn: Callable[[torch.nn.Module], dict[str, float]] | None = None,
        device: torch.device | str | None = None,
        parameters: list[torch.nn.Parameter] | None = None,
        description: str = "train",
    ):
        self.config = config
        self.run_dir = Path(run_dir)
        self.device = pick_device(str(device) if device else None)
        seed_everything(config.seed)
        self.model = model.to(self.device)
        self.loss_fn, self.batch_fn, self.eval_fn = loss_fn, batch_fn, eval_fn
        params = parameters if parameters is not None else [p for p in model.parameters() if p.requires_grad]
        # A model may ask for parts with their own learning-rate scale, betas and gradient clipping
        # (a GAN's discriminator beside its generator): ``model.optimizer_groups()`` lists them.
        parts = model.optimizer_groups() if hasattr(model, "optimizer_groups") else [{"params": params}]
        allowed, groups = {id(p) for p in params}, []
        for part in parts:
            wanted = [p for p in part["params"] if id(p) in allowed]
            extra = {k: v for k, v in part.items() if k != "params"}
            # Weight decay on matrices only: decaying gains, biases or a learnt temperature
            # (CLIP's logit scale) pulls them towards zero for no benefit.
            groups += [{"params": [p for p in wanted if p.ndim >= 2], "weight_decay": config.weight_decay, **extra},
                       {"params": [p for p in wanted if p.ndim < 2], "weight_decay": 0.0, **extra}]
        self.optimizer = torch.optim.AdamW(
            [g for g in groups if g["params"]], lr=config.lr, betas=config.betas
        )
        self.step = 0
        self.seconds = 0.0
        self.description = description

    # -- schedule -------------------------------------------------------------
    def learning_rate(self, step: int) -> float:
        """Linear warm-up, then cosine decay to a tenth of the peak."""
        c = self.config
        if c.warmup and step < c.warmup:
            return c.lr * (step + 1) / c.warmup
        progress = (step - c.warmup) / max(1, c.steps - c.warmup)
        return c.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    # -- checkpoints ----------------------------------------------------------
    def save_state(self) -> None:
        """Model, optimizer and RNG state, written to a temp folder then renamed (a crash never leaves half a state)."""
        final = self.run_dir / STATE_DIR
        temp = self.run_dir / (STATE_DIR + ".tmp")
        temp.mkdir(parents=True, exist_ok=True)
        model_state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        save_file(model_state, str(temp / "model.safetensors"))
        tensors, scalars = _flatten_optimizer(self.optimizer)
        tensors["rng.torch"] = torch.get_rng_state()
        save_file(tensors, str(temp / "optimizer.safetensors"))
        meta = {"step": self.step, "seconds": self.seconds, "optimizer": scalars, "config": asdict(self.config)}
        (temp / "trainer.json").write_text(json.dumps(meta, default=str))
        old = self.run_dir / (STATE_DIR + ".old")
        if final.exists():
            final.rename(old)
        temp.rename(final)
        if old.exists():
            for path in old.iterdir():
                path.unlink()
            old.rmdir()

    def load_state(self) -> bool:
        """Resume from ``run_dir/state`` if it exists; returns whether it did."""
        folder = self.run_dir / STATE_DIR
        if not (folder / "trainer.json").is_file():
            return False
        meta = json.loads((folder / "trainer.json").read_text())
        if meta.get("config") != json.loads(json.dumps(asdict(self.config), default=str)):
            print(f"{self.run_dir}: the interrupted run there used another config; starting afresh")
            shutil.rmtree(self.run_dir)
            self.run_dir.mkdir(parents=True)
            return False
        self.model.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(self.device)))
        tensors = load_file(str(folder / "optimizer.safetensors"))
        torch.set_rng_state(tensors.pop("rng.torch"))
        self.optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
        self.step, self.seconds = meta["step"], meta["seconds"]
        return True

    # -- logs -----------------------------------------------------------------
    def _log(self, row: dict[str, Any]) -> None:
        path = self.run_dir / LOG_CSV
        new = not path.exists()
        with open(path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def _evaluate(self) -> dict[str, float]:
        if self.eval_fn is None:
            return {}
        self.model.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in self.eval_fn(self.model).items()}
        self.model.train()
        path = self.run_dir / EVAL_JSON
        history = json.loads(path.read_text()) if path.exists() else []
        history = [h for h in history if h["step"] < self.step] + [{"step": self.step, **metrics}]
        path.write_text(json.dumps(history, indent=1))
        return metrics

    # -- the loop -------------------------------------------------------------
    def fit(self, progress: bool = True) -> dict[str, float]:
        """Train to ``config.steps``; returns the final evaluation metrics."""
        c = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        resumed = self.load_state()
        if not resumed and (self.run_dir / LOG_CSV).exists():
            (self.run_dir / LOG_CSV).unlink()
        self._truncate_log()
        self.model.train()
        # progress=True leaves ``disable`` to tqdm's default, so TQDM_DISABLE=1 (the book's _environment,
        # read in chapter kernels only) turns the bar off there and ``python -m text2image train`` keeps it.
        bar = tqdm(total=c.steps, initial=self.step, desc=self.description, dynamic_ncols=True, mininterval=1.0,
                   **({} if progress else {"disable": True}))
        try:
            while self.step < c.steps:
                started = time.perf_counter()
                loss, metrics = self._one_step()
                self.seconds += time.perf_counter() - started
                self.step += 1
                rate = c.batch_size * self.step / max(self.seconds, 1e-9)
                if self.step % c.log_every == 0 or self.step == c.steps:
                    self._log({"step": self.step, "loss": loss, "lr": self.learning_rate(self.step - 1),
                               "seconds": round(self.seconds, 3), "samples_per_s": round(rate, 2), **metrics})
                    bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rate:.0f}")
                bar.update(1)
                if c.eval_every and self.step % c.eval_every == 0 and self.step < c.steps:
                    self._evaluate()
                if self.step % c.checkpoint_every == 0 or self.step == c.steps:
                    self.save_state()
        except KeyboardInterrupt:
            self.save_state()
            bar.close()
            print(f"interrupted at step {self.step}; state saved in {self.run_dir / STATE_DIR}; rerun to resume")
            raise
        bar.close()
        return self._evaluate()

    def _truncate_log(self) -> None:
        """Drop log rows past the resumed step (they belong to work that was lost)."""
        path = self.run_dir / LOG_CSV
        if not path.exists():
            return
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        keep = [r for r in rows if int(r["step"]) <= self.step]
        if len(keep) != len(rows):
            path.unlink()
            for row in keep:
                self._log(row)

    def _one_step(self) -> tuple[float, dict[str, float]]:
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(self.step) * group.get("lr_scale", 1.0)
        batch = self.batch_fn(self.step)
        with autocast(self.device):
            out = self.loss_fn(self.model, batch)
        loss, metrics = out if isinstance(out, tuple) else (out, {})
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {self.step}; lower the learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip:
            self._clip(self.config.grad_clip)
        self.optimizer.step()
        return float(loss.detach()), {k: float(v) for k, v in metrics.items()}


    def _clip(self, max_norm: float) -> None:
        """Clip the gradient norm of the whole model, except parts marked ``clip_alone``, clipped on their own
        (so the generator's large gradients never shrink the discriminator's)."""
        alone = [g for g in self.optimizer.param_groups if g.get("clip_alone")]
        kept = {id(p) for g in alone for p in g["params"]}
        torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if id(p) not in kept], max_norm)
        for name in sorted({g["clip_alone"] for g in alone}):
            torch.nn.utils.clip_grad_norm_([p for g in alone if g["clip_alone"] == name for p in g["params"]],
                                           max_norm)


def read_log(run_dir: str | Path) -> list[dict[str, float]]:
    """The CSV log of a run as a list of rows of floats (for the chapters' training curves)."""
    with open(Path(run_dir) / LOG_CSV, newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]
