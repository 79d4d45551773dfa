"""Issue 14.16: ``accelerate launch -m text2image train NAME`` is data parallel through the same loop; two CPU
processes train a smoke recipe to the weights of one process, within float tolerance (the two halves of each
batch are summed in another order). Adam divides by the root of the squared gradient, so a weight whose gradient
is nearly zero can take a different step out of that rounding alone: a few such weights are allowed, each by
less than one learning-rate step, while a run that did not average its gradients misses on most weights."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from text2image import paths, recipes

CODE = Path(__file__).resolve().parents[1] / "code"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_cpu_processes_train_like_one(tmp_path, monkeypatch):
    one, two = tmp_path / "one", tmp_path / "two"
    for root in (one, two):
        root.mkdir()
        (root / "_quarto.yml").write_text("project:\n  type: book\n")
    monkeypatch.delenv(paths.CACHE_ENV, raising=False)
    monkeypatch.setenv("TEXT2IMAGE_ROOT", str(one))
    recipes.train("ae", "smoke", progress=False)

    env = {**os.environ, "TEXT2IMAGE_ROOT": str(two), "PYTHONPATH": str(CODE), "OMP_NUM_THREADS": "1"}
    env.pop(paths.CACHE_ENV, None)
    # --multi_gpu is accelerate's name for "several processes"; without CUDA they run on the CPU (gloo)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), "-m", "text2image", "train", "ae", "--profile", "smoke"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("ae: checkpoint written to") == 1  # the first process speaks for both

    manifest = json.loads((two / "build/smoke/checkpoints/ae/manifest.json").read_text())
    assert manifest["processes"] == 2
    single = load_file(str(one / "build/smoke/runs/ae/state/model.safetensors"))
    parallel = load_file(str(two / "build/smoke/runs/ae/state/model.safetensors"))
    assert single.keys() == parallel.keys()
    lr = recipes.get("ae").config("smoke").lr
    off, total = 0, 0
    for key in single:
        gap = (parallel[key] - single[key]).abs()
        assert gap.max() < lr, key
        off += int((gap > 1e-5 + 1e-4 * single[key].abs()).sum())
        total += gap.numel()
    assert off <= total // 1000, f"{off} of {total} weights differ beyond float tolerance"
