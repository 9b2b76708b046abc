"""Training CLI: checkpoints, resume, metrics, evaluation, data-parallel training."""

import json
import os
import subprocess
import sys

import pytest
import torch

from delrec.cli import main
from delrec.golden import training
from delrec.golden.network import DelayNetwork, ModelConfig

TINY = ["--task", "delayed-xor", "--task-option", "train_size=96", "--task-option", "val_size=32",
        "--task-option", "test_size=32", "--hidden", "16", "--batch-size", "32", "--no-progress",
        "--threads", "1"]


def run_cli(*args):
    return main([str(a) for a in args])


def test_train_writes_checkpoint_metrics_and_plot(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("train", *TINY, "--epochs", "2", "--out", out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("train_accuracy", "val_accuracy", "test_accuracy", "parameters",
                "spikes_per_neuron_per_step", "delays", "history"):
        assert key in metrics
    assert len(metrics["history"]) == 2
    assert metrics["history"][1]["sigma"] < metrics["history"][0]["sigma"] == 10.0
    net = DelayNetwork(ModelConfig.from_dict(metrics["model_config"]))
    assert metrics["parameters"] == sum(p.numel() for p in net.parameters())
    (hist,) = metrics["delays"].values()
    assert sum(hist["histogram"].values()) == 16  # one axonal delay per neuron
    assert 0 <= metrics["spikes_per_neuron_per_step"] <= 1
    assert (out / "run.png").stat().st_size > 1000
    assert not list(out.glob("*.tmp"))  # atomic writes leave no partial file
    state = training.load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["test_accuracy"] == metrics["test_accuracy"]


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, monkeypatch):
    args = [*TINY, "--epochs", "3", "--recurrent-dropout", "0.2"]
    assert run_cli("train", *args, "--out", tmp_path / "whole") == 0
    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)

    real_evaluate = training.evaluate
    calls = {"n": 0}

    def crash_in_second_epoch(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated crash")
        return real_evaluate(*a, **k)

    monkeypatch.setattr(training, "evaluate", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_cli("train", *args, "--out", tmp_path / "cut")
    monkeypatch.setattr(training, "evaluate", real_evaluate)
    assert training.load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["epoch"] == 0
    assert run_cli("train", *args, "--out", tmp_path / "cut", "--resume") == 0
    resumed = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)
    assert resumed["epoch"] == whole["epoch"] == 2
    assert whole["model"].keys() == resumed["model"].keys()
    for key, value in whole["model"].items():
        same = torch.equal(value, resumed["model"][key]) if torch.is_tensor(value) else value == resumed["model"][key]
        assert same, key
    assert [h["val_accuracy"] for h in resumed["history"]] == [h["val_accuracy"] for h in whole["history"]]


def test_resume_refuses_other_configuration(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("train", *TINY, "--epochs", "1", "--out", out) == 0
    assert run_cli("train", *TINY, "--epochs", "1", "--lr", "0.1", "--out", out, "--resume") == 2
    assert "configuration differs" in capsys.readouterr().err


def test_eval_uses_integer_delays_and_keeps_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("train", *TINY, "--epochs", "1", "--out", out) == 0
    before = (out / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert run_cli("eval", out / "checkpoint.pt", "--split", "val") == 0
    result = json.loads(capsys.readouterr().out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert result["accuracy"] == metrics["val_accuracy"]
    assert (out / "checkpoint.pt").read_bytes() == before


def test_malformed_checkpoints_get_clear_errors(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert run_cli("eval", bad) == 2
    assert f"Checkpoint {bad} is not a readable torch file" in capsys.readouterr().err
    torch.save({"format": "something-else"}, bad)
    assert run_cli("eval", bad) == 2
    assert "has format 'something-else', expected 'delrec-checkpoint-v1'" in capsys.readouterr().err
    assert run_cli("eval", tmp_path / "missing.pt") == 2
    assert "does not exist" in capsys.readouterr().err


def test_optimizer_groups_separate_delays():
    net = DelayNetwork(ModelConfig(kind="delrec", inputs=4, classes=3, hidden=[6, 5], learn_width=True))
    weights, no_decay, delays = net.parameter_groups()
    assert {id(p) for p in delays} == {id(m.delay) for m in net.delay_modules()} | \
        {id(m.width_logit) for m in net.delay_modules()}
    every = weights + no_decay + delays
    assert len(every) == len({id(p) for p in every}) == len(list(net.parameters()))
    assert all(p.dim() >= 2 for p in weights) and all(p.dim() == 1 for p in no_decay)


@pytest.mark.parametrize("kind", ["delrec", "delrec-synaptic", "recurrent", "ff-delays", "feedforward"])
def test_every_model_kind_trains_one_step(kind):
    torch.manual_seed(0)
    net = DelayNetwork(ModelConfig(kind=kind, inputs=4, classes=3, hidden=[6, 5]))
    x = (torch.rand(12, 3, 4) < 0.5).float()
    loss = training.loss_fn(net, net(x), torch.tensor([0, 1, 2]))
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
    with torch.no_grad():
        for d in net.delay_modules():
            d.delay.sub_(100.0)
    net.clamp_delays()
    assert all((d.delay >= 0).all() for d in net.delay_modules())


def _ddp_worker(rank, world, init_file, x, y, out_file):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    net = DelayNetwork(ModelConfig(kind="delrec", inputs=4, classes=3, hidden=[8]))
    ddp = torch.nn.parallel.DistributedDataParallel(net)
    half = x.shape[1] // world
    sl = slice(rank * half, (rank + 1) * half)
    training.loss_fn(net, ddp(x[:, sl]), y[sl]).backward()
    if rank == 0:
        torch.save({n: p.grad for n, p in net.named_parameters()}, out_file)
    dist.destroy_process_group()


def test_data_parallel_gradients_equal_single_process(tmp_path):
    torch.manual_seed(5)
    x = (torch.rand(15, 8, 4) < 0.4).float()
    y = torch.randint(0, 3, (8,))
    torch.multiprocessing.spawn(_ddp_worker, args=(2, tmp_path / "init", x, y, tmp_path / "g.pt"),
                                nprocs=2, join=True)
    ddp_grads = torch.load(tmp_path / "g.pt")
    torch.manual_seed(0)
    net = DelayNetwork(ModelConfig(kind="delrec", inputs=4, classes=3, hidden=[8]))
    training.loss_fn(net, net(x), y).backward()
    for name, p in net.named_parameters():
        torch.testing.assert_close(ddp_grads[name], p.grad, rtol=1e-5, atol=1e-6, msg=name)
    assert net.neurons[0].delays.delay.grad.abs().max() > 0


def test_torchrun_two_gloo_processes(tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "delrec", "train", *TINY, "--epochs", "1", "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2
    assert len(metrics["history"]) == 1
