"""The training loop: it learns, it logs, and an interrupted run resumes exactly."""

import json

import pytest
import torch

from text2image import train


def make_problem(seed=0):
    generator = torch.Generator().manual_seed(seed)
    true_w = torch.randn(8, 1, generator=generator)

    def batch_fn(step):
        g = torch.Generator().manual_seed(1000 + step)
        x = torch.randn(16, 8, generator=g)
        return x, x @ true_w + 0.01 * torch.randn(16, 1, generator=g)

    def loss_fn(model, batch):
        x, y = batch
        noise = 1e-3 * torch.randn_like(y)  # uses the global RNG, which resuming must restore
        loss = torch.nn.functional.mse_loss(model(x) + noise, y)
        return loss, {"abs_error": (model(x) - y).abs().mean().item()}

    return batch_fn, loss_fn


def new_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Dropout(0.1), torch.nn.Linear(16, 1))


def config(**kw):
    return train.TrainConfig(**{"steps": 60, "batch_size": 16, "lr": 1e-2, "checkpoint_every": 20, "log_every": 5, **kw})


def test_loss_decreases_and_logs_are_written(tmp_path):
    batch_fn, loss_fn = make_problem()
    trainer = train.Trainer(new_model(), loss_fn, batch_fn, config(eval_every=20), tmp_path,
                            eval_fn=lambda m: {"weight_norm": sum(p.norm() for p in m.parameters())}, device="cpu")
    final = trainer.fit(progress=False)
    rows = train.read_log(tmp_path)
    assert [r["step"] for r in rows] == list(range(5, 61, 5))
    assert rows[-1]["loss"] < 0.5 * rows[0]["loss"]
    assert rows[-1]["samples_per_s"] > 0
    history = json.loads((tmp_path / train.EVAL_JSON).read_text())
    assert [h["step"] for h in history] == [20, 40, 60]
    assert final["weight_norm"] == pytest.approx(history[-1]["weight_norm"])


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    batch_fn, loss_fn = make_problem()
    straight = train.Trainer(new_model(), loss_fn, batch_fn, config(), tmp_path / "straight", device="cpu")
    straight.fit(progress=False)

    def crashing_batch_fn(step):
        if step == 47:  # the process "dies" between two checkpoints (last one at 40)
            raise KeyboardInterrupt
        return batch_fn(step)

    crashed = train.Trainer(new_model(), loss_fn, crashing_batch_fn, config(), tmp_path / "crashed", device="cpu")
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(progress=False)
    # Ctrl-C saves the state at the step reached: at most one interval is lost (here none).
    assert json.loads((tmp_path / "crashed" / "state" / "trainer.json").read_text())["step"] == 47

    resumed = train.Trainer(new_model(), loss_fn, batch_fn, config(), tmp_path / "crashed", device="cpu")
    resumed.fit(progress=False)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    steps = [r["step"] for r in train.read_log(tmp_path / "crashed")]
    assert steps == sorted(set(steps)) == list(range(5, 61, 5))


def test_killed_run_loses_at_most_one_interval(tmp_path):
    batch_fn, loss_fn = make_problem()

    def dying_batch_fn(step):
        if step == 47:  # an error nobody catches, like a killed process: no state is saved at 47
            raise RuntimeError("killed")
        return batch_fn(step)

    trainer = train.Trainer(new_model(), loss_fn, dying_batch_fn, config(), tmp_path, device="cpu")
    with pytest.raises(RuntimeError):
        trainer.fit(progress=False)
    again = train.Trainer(new_model(), loss_fn, batch_fn, config(), tmp_path, device="cpu")
    assert again.load_state() and again.step == 40


def test_a_run_with_another_config_starts_afresh(tmp_path, capsys):
    batch_fn, loss_fn = make_problem()
    train.Trainer(new_model(), loss_fn, batch_fn, config(steps=40), tmp_path, device="cpu").fit(progress=False)
    other = train.Trainer(new_model(), loss_fn, batch_fn, config(lr=5e-3), tmp_path, device="cpu")
    assert not other.load_state() and other.step == 0
    assert "another config" in capsys.readouterr().out
    assert not (tmp_path / train.LOG_CSV).exists()  # the old run's log would mix two runs


def test_non_finite_loss_is_a_clear_error(tmp_path):
    def loss_fn(model, batch):
        return model(batch).sum() * float("nan")

    trainer = train.Trainer(new_model(), loss_fn, lambda s: torch.ones(2, 8), config(steps=3), tmp_path, device="cpu")
    with pytest.raises(FloatingPointError, match="learning rate"):
        trainer.fit(progress=False)
