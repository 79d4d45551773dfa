"""Issue 14.10: a read-only checkout (a shared install) loads its shipped models without writing a byte to it;
what must be written goes to a cache that can be moved; with nowhere to write, one clear line."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter: an audit hook refuses every write under the read-only folders, even for root
# (who ignores file modes), then the scenario given on the command line runs.
READ_ONLY = textwrap.dedent("""
    import os, sys
    FROZEN = [os.path.realpath(p) for p in os.environ["READ_ONLY"].split(os.pathsep)]
    WRITES = {"os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "os.unlink", "shutil.rmtree",
              "os.chmod", "os.truncate", "os.symlink", "os.link", "shutil.copyfile", "shutil.move"}

    def frozen(path):
        if isinstance(path, int):
            return False
        path = os.path.realpath(os.fsdecode(path))
        return any(path == f or path.startswith(f + os.sep) for f in FROZEN)

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = (mode and any(c in mode for c in "wax+")) or (
                mode is None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND))
            if writing and frozen(path):
                raise PermissionError(13, "Read-only file system", os.fsdecode(path))
        elif event in WRITES and args and any(frozen(a) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))):
            raise PermissionError(13, "Read-only file system", os.fsdecode(args[0]))

    sys.addaudithook(hook)

    import torch
    from text2image import recipes
    from text2image.train import TrainConfig

    def build(profile):
        torch.manual_seed(0)
        return torch.nn.Linear(2, 1)

    def task(model, profile):
        x = torch.ones(3, 2)
        return (lambda m, b: m(b).pow(2).mean()), (lambda step: x), (lambda m: {"out": float(m(x).mean())})

    recipes.load_all()
    config = TrainConfig(steps=3, batch_size=3, checkpoint_every=10)
    recipes.register(recipes.Recipe("toy", build, task, {p: config for p in ("smoke", "cpu", "gpu")}))
    scenario = sys.argv[1]
    if scenario == "load":
        from text2image.evaluate import reconstruction
        model, manifest = recipes.load_or_train("ae", "cpu", progress=False)
        measured = reconstruction.measure("ae", model, "cpu")  # the shipped measurements, read back
        print("loaded", manifest["name"], round(measured["psnr"], 1))
    elif scenario == "train":
        _, manifest = recipes.load_or_train("toy", "cpu", progress=False)
        print("trained into", recipes.checkpoint_folder("toy", "cpu"))
    else:
        from text2image.cli import main
        raise SystemExit(main(["train", "toy", "--profile", "cpu"]))
""")


@pytest.fixture
def checkout(tmp_path):
    """A checkout holding the shipped ae checkpoint, and a home for the user cache."""
    if not (REPO / "data" / "checkpoints" / "ae" / "manifest.json").is_file():
        pytest.skip("no shipped ae checkpoint")
    root = tmp_path / "checkout"
    (root / "data" / "checkpoints").mkdir(parents=True)
    (root / "_quarto.yml").write_text("project:\n  type: book\n")
    shutil.copytree(REPO / "data" / "checkpoints" / "ae", root / "data" / "checkpoints" / "ae")
    (tmp_path / "home").mkdir()
    return root


def run(scenario, root, read_only, cache=None):
    home = root.parent / "home"
    env = {**os.environ, "TEXT2IMAGE_ROOT": str(root), "PYTHONPATH": str(REPO / "code"), "OMP_NUM_THREADS": "1",
           "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "MPLCONFIGDIR": str(root.parent / "mpl"),
           "READ_ONLY": os.pathsep.join(map(str, read_only))}
    env.pop("TEXT2IMAGE_CACHE", None)
    if cache:
        env["TEXT2IMAGE_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-c", READ_ONLY, scenario], env=env, capture_output=True, text=True,
                          timeout=300)


def listing(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


def test_a_read_only_checkout_loads_its_shipped_models(checkout):
    before = listing(checkout)
    result = run("load", checkout, read_only=[checkout])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("loaded ae ")
    assert listing(checkout) == before


def test_what_must_be_written_goes_to_the_user_cache_or_the_movable_one(checkout, tmp_path):
    before = listing(checkout)
    result = run("train", checkout, read_only=[checkout])
    assert result.returncode == 0, result.stderr[-3000:]
    home_cache = tmp_path / "home" / ".cache" / "text2image"
    assert f"trained into {home_cache}" in result.stdout
    assert list(home_cache.rglob("toy/model.safetensors")) and listing(checkout) == before
    moved = run("train", checkout, read_only=[checkout, tmp_path / "home"], cache=tmp_path / "elsewhere")
    assert moved.returncode == 0, moved.stderr[-3000:]
    assert f"trained into {tmp_path / 'elsewhere' / 'trained' / 'cpu' / 'toy'}" in moved.stdout


def test_with_nowhere_to_write_one_clear_line(checkout, tmp_path):
    result = run("cli", checkout, read_only=[checkout, tmp_path / "home"])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[0].startswith("error: nowhere to write") and "set TEXT2IMAGE_CACHE" in lines[0]
