"""The command line: one line for every failure a reader can fix and for Ctrl-C; tracebacks only when asked."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from text2image import cli

CODE = Path(__file__).resolve().parents[1] / "code"

# A process that trains a slow toy recipe through the real command line, and says when it is at step 3.
SLOW_TRAIN = textwrap.dedent("""
    import sys, time, torch
    from text2image import recipes
    from text2image.cli import main
    from text2image.train import TrainConfig

    def build(profile):
        torch.manual_seed(0)
        return torch.nn.Linear(2, 1)

    def task(model, profile):
        calls = []
        def loss(m, batch):
            time.sleep(0.05)
            calls.append(1)
            if len(calls) == 3:
                print("at step 3", flush=True)
            return m(batch).pow(2).mean()
        return loss, (lambda step: torch.ones(4, 2)), None

    config = TrainConfig(steps=2000, batch_size=4, checkpoint_every=1000)
    recipes.register(recipes.Recipe("slow", build, task, {p: config for p in ("smoke", "cpu", "gpu")}))
    raise SystemExit(main(sys.argv[1:]))
""")


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "_quarto.yml").write_text("project:\n  type: book\n")
    monkeypatch.setenv("TEXT2IMAGE_ROOT", str(tmp_path))
    return tmp_path


def interrupt_training(project, *args, debug=False):
    env = {**os.environ, "TEXT2IMAGE_ROOT": str(project), "PYTHONPATH": str(CODE), "OMP_NUM_THREADS": "1"}
    env.pop("TEXT2IMAGE_DEBUG", None)
    if debug:
        env["TEXT2IMAGE_DEBUG"] = "1"
    process = subprocess.Popen([sys.executable, "-c", SLOW_TRAIN, "train", "slow", "--profile", "smoke", *args],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "at step 3"
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    out, err = process.communicate(timeout=120)
    return process.returncode, err


def test_ctrl_c_during_train_prints_one_line_and_no_traceback(project):
    """Issue 14.9: every interrupt of ``train`` printed a 20-76-line traceback after its one-line message."""
    code, err = interrupt_training(project)
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "slow (smoke)" not in line]
    assert code == 130
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("interrupted at step ") and "state saved in" in lines[0], err
    assert (project / "build" / "smoke" / "runs" / "slow" / "state" / "trainer.json").is_file()


def test_the_traceback_is_there_when_asked_for(project):
    code, err = interrupt_training(project, debug=True)
    assert code != 0 and "Traceback" in err and "Interrupted: interrupted at step" in err


def test_a_damaged_checkpoint_is_one_line_and_a_bad_name_two(project, capsys):
    folder = project / "data" / "checkpoints" / "broken"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"not weights")
    assert cli.main(["checkpoints", "verify"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "broken: incomplete checkpoint, manifest.json is missing" in err
    assert cli.main(["train", "nope", "--profile", "smoke"]) == 2
    assert capsys.readouterr().err.startswith("error: no recipe named 'nope'")


def test_debug_is_accepted_before_and_after_the_command(project):
    parser = cli.build_parser()
    assert parser.parse_args(["--debug", "checkpoints", "verify"]).debug
    assert parser.parse_args(["checkpoints", "verify", "--debug"]).debug
    assert not parser.parse_args(["checkpoints", "verify"]).debug
