"""One training loop for every model of the book, on one process or many.

The loop knows nothing about the model: it asks ``loss_fn(model, batch)`` for
a loss (and optional metrics) and ``batch_fn(step)`` for the batch of a step.
Batches are a pure function of the step, so a resumed run sees exactly the
batches it would have seen.

Resuming is exact, random numbers drawn inside a step included (the VAE's
posterior sample, the dVAE's Gumbel noise, dropout): the state on disk is
always that of a *completed* step, with the random generators as that step
left them. Ctrl-C does not cut a step in half: it is noted, the running step
finishes, its state is saved, and :class:`Interrupted` is raised with one line
to print. A process killed outright resumes from its last periodic state
(at most one ``checkpoint_every`` lost). The state is written to a new folder,
fsynced and swapped in, so a kill during the save leaves the old state or the
new one, and the leftovers are cleaned on the next start.

Several processes (``accelerate launch -m text2image train NAME``) are the
same loop: ``accelerate`` sets up the processes, places the model, wraps the
loss in DistributedDataParallel and runs it in bf16 on CUDA; each process
takes its slice of the step's batch (:func:`split_batch`), gradients are
averaged, and only the first process logs, evaluates and saves. On one
process all of that reduces to the plain loop.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import random
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save
from tqdm.auto import tqdm

from text2image import paths

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


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message (one line) says where the state is and how to resume."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


@functools.lru_cache(maxsize=4)
def _permutation(n: int, epoch: int, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def epoch_batch(step: int, batch_size: int, n: int, seed: int) -> np.ndarray:
    """Indices of the examples of step ``step`` among ``n`` stored ones: the ``step``-th slice of a fresh
    permutation each epoch (a pure function of the step, so a resumed run sees the same batches)."""
    per_epoch = n // batch_size
    if per_epoch < 1:
        raise ValueError(f"{n} examples do not fill a batch of {batch_size}")
    epoch, k = divmod(step, per_epoch)
    return _permutation(n, epoch, seed)[k * batch_size:(k + 1) * batch_size]


def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA when present (or asked for), else CPU."""
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def is_main_process(device: str | None = None) -> bool:
    """Whether this is the first (or only) process of a run; under ``accelerate launch`` the others only help."""
    from accelerate import PartialState

    # the same ``cpu`` flag as the run's Accelerator: on a machine without CUDA, several processes are
    # data parallel on the CPU only with it
    return PartialState(cpu=pick_device(device).type == "cpu").is_main_process


def accelerator_for(device: torch.device):
    """The ``accelerate.Accelerator`` of a run: bf16 on CUDA, full precision on CPU (where bf16 is slow
    and changes results); the processes and their devices are those ``accelerate launch`` started."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # Unused parameters are normal here (a VQGAN's discriminator before its start step).
    return Accelerator(cpu=device.type == "cpu", mixed_precision="bf16" if device.type == "cuda" else "no",
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def split_batch(batch: Any, index: int, count: int) -> Any:
    """Process ``index`` of ``count``'s share of a step's batch.

    Tensors are cut along their first dimension, tuples and lists element by
    element; a dict batch (CLIP's: images, captions and their hard negatives)
    is given whole to every process, since a contrastive loss needs all of a
    batch's negatives; other values (the step number) are kept.
    """
    if count == 1:
        return batch
    if torch.is_tensor(batch) and batch.ndim:
        if batch.shape[0] % count:
            raise ValueError(f"a batch of {batch.shape[0]} cannot be split evenly over {count} processes")
        return batch.chunk(count)[index]
    if isinstance(batch, (tuple, list)):
        return type(batch)(split_batch(item, index, count) for item in batch)
    return batch


class _LossModule(torch.nn.Module):
    """The model and its loss as one module, so that DistributedDataParallel runs the whole loss
    (whatever methods of the model it calls) and averages every gradient it produces."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch):
        return self.loss_fn(self.model, batch)


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


def rng_state() -> dict[str, Any]:
    """Every random generator a step may draw from: torch (CPU and CUDA), NumPy, Python."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": (kind, keys.copy(), pos, has_gauss, gauss), "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if state.get("numpy") is not None:
        np.random.set_state(state["numpy"])
    if state.get("python") is not None:
        random.setstate(state["python"])


def _rng_to_disk(state: dict[str, Any], prefix: str = "") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {f"{prefix}rng.torch": state["torch"],
               f"{prefix}rng.numpy": torch.from_numpy(state["numpy"][1].astype(np.int64))}
    tensors.update({f"{prefix}rng.cuda.{i}": s for i, s in enumerate(state["cuda"])})
    kind, _, pos, has_gauss, gauss = state["numpy"]
    version, values, gauss_next = state["python"]
    return tensors, {"numpy": [kind, int(pos), int(has_gauss), float(gauss)],
                     "python": [version, list(values), gauss_next]}


def _rng_from_disk(tensors: dict[str, torch.Tensor], meta: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The generators of a saved state (a state written before NumPy and Python were saved restores torch only)."""
    state: dict[str, Any] = {"torch": tensors[f"{prefix}rng.torch"], "numpy": None, "python": None}
    cuda = sorted((k for k in tensors if k.startswith(f"{prefix}rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    state["cuda"] = [tensors[k] for k in cuda]
    keys = tensors.get(f"{prefix}rng.numpy")
    if keys is not None and "numpy" in meta:
        kind, pos, has_gauss, gauss = meta["numpy"]
        state["numpy"] = (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss)
    if "python" in meta:
        version, values, gauss_next = meta["python"]
        state["python"] = (version, tuple(values), gauss_next)
    return state


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
        self.accelerator = accelerator_for(pick_device(str(device) if device else None))
        self.device = self.accelerator.device
        self.processes, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        self.is_main = self.accelerator.is_main_process
        # each process draws its own random numbers (its share of the VAE's samples), the first as one process would
        seed_everything(config.seed + self.rank)
        self.model = model.to(self.device)
        self.loss_fn, self.batch_fn, self.eval_fn = loss_fn, batch_fn, eval_fn
        self._loss_module = self.accelerator.prepare_model(_LossModule(self.model, loss_fn))
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
        self._stop = False  # Ctrl-C seen: stop once the running step is complete
        self._pending_eval = False  # a resumed state whose step's evaluation had not run yet

    # -- schedule -------------------------------------------------------------
    def learning_rate(self, step: int) -> float:
        """Linear warm-up, then cosine decay to a tenth of the peak."""
        c = self.config
        if c.warmup and step < c.warmup:
            return c.lr * (step + 1) / c.warmup
        progress = (step - c.warmup) / max(1, c.steps - c.warmup)
        return c.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    # -- checkpoints ----------------------------------------------------------
    def _recover(self) -> None:
        """Finish or drop what a kill during a save left behind (``state.old`` of older versions included)."""
        final = self.run_dir / STATE_DIR
        legacy_temp, legacy_old = self.run_dir / (STATE_DIR + ".tmp"), self.run_dir / (STATE_DIR + ".old")
        if not final.exists() and legacy_old.exists():
            complete = legacy_temp if (legacy_temp / "trainer.json").is_file() else legacy_old
            complete.rename(final)
        for leftover in (legacy_temp, legacy_old):
            if leftover.exists():
                shutil.rmtree(leftover)
        paths.recover_dir(final)

    def save_state(self, rng: dict[str, Any] | None = None, pending_eval: bool = False) -> None:
        """Model, optimizer and random generators (of every process) after step ``self.step``, written beside
        the old state, fsynced, then swapped in (a kill at any instant leaves a whole state)."""
        rngs = [rng or rng_state()]
        if self.processes > 1:
            from accelerate.utils import gather_object

            rngs = gather_object(rngs)  # in process order
        if not self.is_main:
            return
        final = self.run_dir / STATE_DIR
        temp = paths.new_dir(final)
        model_state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        (temp / "model.safetensors").write_bytes(save(model_state))
        tensors, scalars = _flatten_optimizer(self.optimizer)
        rng_meta = {}
        for rank, state in enumerate(rngs):
            rng_tensors, rng_meta[rank] = _rng_to_disk(state, prefix=f"rank{rank}." if rank else "")
            tensors.update(rng_tensors)
        (temp / "optimizer.safetensors").write_bytes(save(tensors))
        meta = {"step": self.step, "seconds": self.seconds, "optimizer": scalars, "config": asdict(self.config),
                "rng": rng_meta[0], "rng_of_process": {str(r): m for r, m in rng_meta.items() if r},
                "pending_eval": pending_eval}
        (temp / "trainer.json").write_text(json.dumps(meta, default=str))
        paths.swap_dir(temp, final)

    def load_state(self) -> bool:
        """Resume from ``run_dir/state`` if it exists; returns whether it did."""
        if self.is_main:
            self._recover()
        self.accelerator.wait_for_everyone()
        folder = self.run_dir / STATE_DIR
        if not (folder / "trainer.json").is_file():
            return False
        meta = json.loads((folder / "trainer.json").read_text())
        if meta.get("config") != json.loads(json.dumps(asdict(self.config), default=str)):
            self.accelerator.wait_for_everyone()
            if self.is_main:
                print(f"{self.run_dir}: the interrupted run there used another config; starting afresh")
                shutil.rmtree(self.run_dir)
                self.run_dir.mkdir(parents=True)
            self.accelerator.wait_for_everyone()
            return False
        self.model.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(self.device)))
        tensors = load_file(str(folder / "optimizer.safetensors"))
        mine = meta.get("rng_of_process", {}).get(str(self.rank))
        if self.rank and mine is not None:
            set_rng_state(_rng_from_disk(tensors, mine, prefix=f"rank{self.rank}."))
        else:
            set_rng_state(_rng_from_disk(tensors, meta.get("rng", {})))
        tensors = {k: v for k, v in tensors.items() if ".rng." not in f".{k}"}
        self.optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
        self.step, self.seconds = meta["step"], meta["seconds"]
        self._pending_eval = bool(meta.get("pending_eval"))
        return True

    # -- logs -----------------------------------------------------------------
    def _log(self, row: dict[str, Any]) -> None:
        if not self.is_main:
            return
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
        metrics: dict[str, float] = {}
        if self.is_main:
            self.model.eval()
            with torch.no_grad():
                metrics = {k: float(v) for k, v in self.eval_fn(self.model).items()}
            self.model.train()
            path = self.run_dir / EVAL_JSON
            history = json.loads(path.read_text()) if path.exists() else []
            history = [h for h in history if h["step"] < self.step] + [{"step": self.step, **metrics}]
            paths.write_text_atomic(path, json.dumps(history, indent=1))
        self.accelerator.wait_for_everyone()
        return metrics

    def _eval_due(self) -> bool:
        c = self.config
        return bool(c.eval_every) and self.step % c.eval_every == 0 and self.step < c.steps

    # -- Ctrl-C -----------------------------------------------------------------
    def _on_sigint(self, signum, frame) -> None:
        if self._stop:  # a second Ctrl-C: stop now (the last saved state stands)
            raise KeyboardInterrupt
        self._stop = True

    def _stop_agreed(self) -> bool:
        """Whether to stop after this step: any process that saw Ctrl-C stops them all at the same step."""
        if self.processes == 1:
            return self._stop
        flag = torch.tensor([1.0 if self._stop else 0.0], device=self.device)
        return bool(self.accelerator.reduce(flag, "sum").item() > 0)

    def _interrupted(self, saved_step: int) -> Interrupted:
        where = self.run_dir / STATE_DIR
        if saved_step == self.step:
            return Interrupted(f"interrupted at step {self.step} of {self.config.steps}; state saved in {where}; "
                               f"the same command resumes from there")
        resume = f"the same command resumes from step {saved_step} (state in {where})" if saved_step \
            else "nothing was saved yet; the same command starts again"
        return Interrupted(f"interrupted at step {self.step} of {self.config.steps}; {resume}")

    # -- the loop -------------------------------------------------------------
    def fit(self, progress: bool = True) -> dict[str, float]:
        """Train to ``config.steps``; returns the final evaluation metrics (on the first process)."""
        c = self.config
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        resumed = self.load_state()
        if self.is_main:
            if not resumed and (self.run_dir / LOG_CSV).exists():
                (self.run_dir / LOG_CSV).unlink()
            self._truncate_log()
        saved_step = self.step
        if self._pending_eval:  # the resumed step ended with an evaluation that the interrupt postponed
            self._evaluate()
            self._pending_eval = False
        self.model.train()
        # progress=True leaves ``disable`` to tqdm's default, so TQDM_DISABLE=1 (the book's _environment,
        # read in chapter kernels only) turns the bar off there and ``python -m text2image train`` keeps it.
        shown = progress and self.is_main
        bar = tqdm(total=c.steps, initial=self.step, desc=self.description, dynamic_ncols=True, mininterval=1.0,
                   **({} if shown else {"disable": True}))
        handler = None
        if threading.current_thread() is threading.main_thread():
            handler = signal.signal(signal.SIGINT, self._on_sigint)
        self._stop = False
        try:
            while self.step < c.steps:
                before = rng_state()
                started = time.perf_counter()
                try:
                    batch = self.batch_fn(self.step)
                except KeyboardInterrupt:
                    # nothing has moved yet in this step: its start is the last completed state
                    # (with one process only: saving takes all of them, and the others did not stop)
                    if self.step > saved_step and self.processes == 1:
                        self.save_state(rng=before)
                        saved_step = self.step
                    raise self._interrupted(saved_step) from None
                try:
                    loss, metrics = self._one_step(batch)
                except KeyboardInterrupt:  # half a step: only a state saved earlier can be trusted
                    raise self._interrupted(saved_step) from None
                self.seconds += time.perf_counter() - started
                self.step += 1
                rate = c.batch_size * self.step / max(self.seconds, 1e-9)
                if self.step % c.log_every == 0 or self.step == c.steps:
                    self._log({"step": self.step, "loss": loss, "lr": self.learning_rate(self.step - 1),
                               "seconds": round(self.seconds, 3), "samples_per_s": round(rate, 2), **metrics})
                    bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rate:.0f}")
                bar.update(1)
                if self._stop_agreed() and self.step < c.steps:
                    self.save_state(pending_eval=self._eval_due())
                    saved_step = self.step
                    raise self._interrupted(saved_step)
                if self._eval_due():
                    self._evaluate()
                if self.step % c.checkpoint_every == 0 or self.step == c.steps:
                    self.save_state()
                    saved_step = self.step
                    self.accelerator.wait_for_everyone()
        finally:
            bar.close()
            if handler is not None:
                signal.signal(signal.SIGINT, handler)
        return self._evaluate()

    def _truncate_log(self) -> None:
        """Drop log rows past the resumed step (they belong to work that was lost), and any half-written row."""
        path = self.run_dir / LOG_CSV
        if not path.exists():
            return
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))

        def kept(row) -> bool:
            try:
                return int(row["step"]) <= self.step and None not in row.values()
            except (TypeError, ValueError, KeyError):
                return False

        keep = [r for r in rows if kept(r)]
        if len(keep) != len(rows):
            path.unlink()
            for row in keep:
                self._log(row)

    def _keep_replicas_identical(self) -> None:
        """Copy the first process's weights to the others: a loss that changes weights in place from its
        share of the batch (the VQ-VAE's dead-code restarts) would otherwise make the replicas drift apart."""
        import torch.distributed as dist

        params = list(self.model.parameters())
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        dist.broadcast(flat, src=0)
        with torch.no_grad():
            for param, value in zip(params, flat.split([p.numel() for p in params])):
                param.copy_(value.view_as(param))

    def _one_step(self, batch) -> tuple[float, dict[str, float]]:
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(self.step) * group.get("lr_scale", 1.0)
        out = self._loss_module(split_batch(batch, self.rank, self.processes))
        loss, metrics = out if isinstance(out, tuple) else (out, {})
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {self.step}; lower the learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        if self.config.grad_clip:
            self._clip(self.config.grad_clip)
        self.optimizer.step()
        if self.processes > 1:
            self._keep_replicas_identical()
        shown = self.accelerator.reduce(loss.detach(), "mean") if self.processes > 1 else loss.detach()
        return float(shown), {k: float(v) for k, v in metrics.items()}


    def _clip(self, max_norm: float) -> None:
        """Clip the gradient norm of the whole model, except parts marked ``clip_alone``, clipped on their own
        (so the generator's large gradients never shrink the discriminator's)."""
        alone = [g for g in self.optimizer.param_groups if g.get("clip_alone")]
        kept = {id(p) for g in alone for p in g["params"]}
        self.accelerator.clip_grad_norm_([p for p in self.model.parameters() if id(p) not in kept], max_norm)
        for name in sorted({g["clip_alone"] for g in alone}):
            self.accelerator.clip_grad_norm_([p for g in alone if g["clip_alone"] == name for p in g["params"]],
                                             max_norm)


def read_log(run_dir: str | Path) -> list[dict[str, float]]:
    """The CSV log of a run as a list of rows of floats (for the chapters' training curves)."""
    with open(Path(run_dir) / LOG_CSV, newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]
