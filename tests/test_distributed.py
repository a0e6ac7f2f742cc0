"""img2lut.distributed and python -m img2lut.train under torchrun: the sampler's partition, single-process
no-ops, unwrapping; two gloo processes on the CPU whose DDP step equals one big-batch step computed in a
single process; a 2-rank training (identical weights, only rank 0 writes) resumed with torchrun; mixed
precision and channels-last runs."""

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import img2lut.train as train_mod
import lutkern
from img2lut import checkpoint
from img2lut import distributed as D
from img2lut.model import ResNetLUTGenerator

LUT = 5
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _single_process_environment(monkeypatch, fast_small_tensors):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("n, world", [(10, 2), (7, 3), (4, 4), (5, 1)])
def test_sampler_partitions_each_epoch(n, world):
    epochs = []
    for epoch in range(2):
        shares = []
        for rank in range(world):
            sampler = D.make_sampler(D.Dist(rank=rank, world_size=world), n, seed=3)
            sampler.set_epoch(epoch)
            shares.append(list(sampler))
        per_rank = -(-n // world)
        assert all(len(s) == per_rank for s in shares)  # equal step counts on every rank
        flat = [i for s in shares for i in s]
        assert set(flat) == set(range(n))  # every item seen; only the padding repeats
        assert len(flat) - len(set(flat)) == per_rank * world - n
        epochs.append(shares)
    again = D.make_sampler(D.Dist(rank=0, world_size=world), n, seed=3)
    again.set_epoch(1)
    assert list(again) == epochs[1][0]  # resumable: the order is a function of (seed, epoch) alone
    if n > 4:
        assert epochs[0] != epochs[1]


def test_single_process_is_a_no_op():
    ctx = D.setup("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.enabled) == (0, 1, True, False)
    assert D.all_reduce_mean(ctx, [1.5, 2]) == [1.5, 2.0]
    assert D.any_rank(ctx, True) and not D.any_rank(ctx, False)
    model = ResNetLUTGenerator(LUT)
    assert D.wrap(model, ctx, sync_bn=True) is model


def test_unwrap_drops_the_compile_prefix():
    model = ResNetLUTGenerator(LUT)
    compiled = torch.compile(model)  # compiles lazily: nothing runs here
    assert next(iter(compiled.state_dict())).startswith("_orig_mod.")
    assert D.unwrap(compiled) is model
    assert list(D.unwrap(compiled).state_dict()) == list(ResNetLUTGenerator(LUT).state_dict())


def test_rank_device_and_bad_environment(monkeypatch):
    assert D.rank_device("cuda", 3) == torch.device("cuda", 3)
    assert D.rank_device("cuda:1", 3) == torch.device("cuda", 1)
    assert D.rank_device("cpu", 3) == torch.device("cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(D.DistributedError, match="RANK, LOCAL_RANK"):
        D.setup("cpu")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "x")
    with pytest.raises(D.DistributedError, match="LOCAL_RANK='x'"):
        D.setup("cpu")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(D.DistributedError, match="RANK=2 is not below WORLD_SIZE=2"):
        D.setup("cpu")


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(4, 3, 32, 32, generator=g), torch.rand(4, 3, 32, 32, generator=g)


def _sgd_step(model, x, y):
    """One SGD step on the MSE of the graded image; BatchNorm frozen (eval), so that the loss of a batch
    is the mean of per-image losses and two half batches average to the whole batch exactly."""
    model.eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    out, _ = model(x)
    torch.nn.functional.mse_loss(out, y).backward()
    opt.step()


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LUTKERN_BACKEND="torch")
    torch.set_num_threads(1)
    ctx = D.setup("cpu")
    try:
        mean = D.all_reduce_mean(ctx, [float(rank), 10.0 * rank])
        anyone = [D.any_rank(ctx, rank == 1), D.any_rank(ctx, False)]
        torch.manual_seed(rank)  # different initial weights per rank: DDP must broadcast rank 0's
        model = ResNetLUTGenerator(LUT, init="default")
        ddp = D.wrap(model, ctx)
        x, y = _batch()
        half = x.shape[0] // world
        _sgd_step(ddp, x[rank * half:(rank + 1) * half], y[rank * half:(rank + 1) * half])
        params = {k: v.detach().clone() for k, v in D.unwrap(ddp).named_parameters()}
        torch.save({"mean": mean, "any": anyone, "params": params, "is_main": ctx.is_main},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        D.cleanup()


def test_two_gloo_processes_match_one_big_batch(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["mean"] for r in results] == [[0.5, 5.0], [0.5, 5.0]]
    assert [r["any"] for r in results] == [[True, False], [True, False]]
    assert [r["is_main"] for r in results] == [True, False]
    # Reference: rank 0's initial weights, one step on the whole batch in this process.
    torch.manual_seed(0)
    reference = ResNetLUTGenerator(LUT, init="default")
    _sgd_step(reference, *_batch())
    for name, value in reference.named_parameters():
        torch.testing.assert_close(results[0]["params"][name], value.detach(), rtol=1e-4, atol=1e-6,
                                   msg=lambda m, name=name: f"{name}: {m}")
        torch.testing.assert_close(results[1]["params"][name], results[0]["params"][name], rtol=0, atol=0)


# ---- python -m img2lut.train under torchrun ---------------------------------------------------------------

# The CNN is trained whatever the diagnosis would say of these pairs.
TRAIN_ARGS = ("--image-size", "32", "--cnn-size", "16", "--loss-stride", "2", "--lut-size", str(LUT),
              "--batch-size", "2", "--val-fraction", "0.25", "--lr", "1e-3", "--recipe", "adaptive",
              "--normalise", "none")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, write_patch_pairs):
    """Eight 32x32 pairs of random 8x8-pixel colour patches, graded by the bw look."""
    root = tmp_path_factory.mktemp("pairs")
    look = lutkern.looks["bw"](size=LUT)
    write_patch_pairs(root, [f"p{i}" for i in range(8)], look, torch.Generator().manual_seed(0))
    return root


def _is_write(event: str, args: tuple) -> str | None:
    """The path an audited file-system event writes, or None."""
    if event == "open":
        path, mode, flags = args
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(
            flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
    else:
        path, writes = (args[1] if event == "os.rename" else args[0]), event in ("os.rename", "os.mkdir",
                                                                                  "os.remove")
    return os.fsdecode(path) if writes and isinstance(path, (str, bytes, os.PathLike)) else None


def _train_worker(rank: int, world: int, port: int, argv: list[str], out_dir: str) -> None:
    """One rank of ``python -m img2lut.train`` with torchrun's environment; records what it wrote below
    ``out_dir`` (audit hook) and its model's final parameters."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LUTKERN_BACKEND="torch")
    torch.set_num_threads(1)
    root = os.path.realpath(out_dir)
    written = []

    def audit(event, args):
        path = _is_write(event, args)
        if path is not None and os.path.realpath(path).startswith(root):
            written.append(path)

    sys.addaudithook(audit)
    nets = []
    real_wrap = D.wrap
    D.wrap = lambda *a, **k: nets.append(real_wrap(*a, **k)) or nets[-1]
    status = train_mod.main(argv)
    params = {k: v.detach().clone() for k, v in D.unwrap(nets[0]).named_parameters()}
    result = {"status": status, "written": written, "params": params, "ddp": type(nets[0]).__name__}
    torch.save(result, os.path.join(os.path.dirname(root), f"rank{rank}.pt"))


def test_torchrun_two_ranks_train_identically_and_resume(pairs, tmp_path):
    out = tmp_path / "runs"
    argv = ["--inputs", str(pairs / "inputs"), "--targets", str(pairs / "targets"), "--out", str(out),
            *TRAIN_ARGS, "--epochs", "1", "--scheduler", "plateau",  # (a finished cosine run ends at lr 0)
            "--no-select-best"]  # rank 0 would swap in the best epoch's weights at the end
    mp.spawn(_train_worker, args=(2, _free_port(), argv, str(out)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["status"] for r in results] == [0, 0]
    assert [r["ddp"] for r in results] == ["DistributedDataParallel"] * 2
    assert results[1]["written"] == [] and results[0]["written"]  # only rank 0 touched the run folder
    run = out / "models" / "pairs"
    for name in ("checkpoint.pt", "metrics.csv", "loss.png", "lut.cube", "summary.json",
                 "previews/epoch_0001.png"):
        assert (run / name).is_file(), name
    saved = checkpoint.load_checkpoint(run / "checkpoint.pt")
    # 6 training pairs over 2 ranks, 2 per step: 2 steps per epoch on each rank.
    assert (saved["state"]["epoch"], saved["state"]["step"]) == (1, 0)
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in saved["model"])
    for name, value in results[0]["params"].items():
        assert torch.equal(value, results[1]["params"][name]), name  # DDP kept the ranks in lockstep
        assert torch.equal(value, saved["model"][name]), name  # the checkpoint holds the trained weights

    # Resume with the real launcher: every rank loads the checkpoint and the run continues to epoch 2.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "img2lut.train", "--resume", str(run / "checkpoint.pt"), "--epochs", "2"]
    env = {**os.environ, "LUTKERN_BACKEND": "torch", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = checkpoint.load_checkpoint(run / "checkpoint.pt")
    assert resumed["state"]["epoch"] == 2
    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[0]["train_loss"] == f"{saved['state']['history'][0]['train_loss']:.6g}"
    assert not torch.equal(resumed["model"]["base_lut"], saved["model"]["base_lut"])


def test_amp_and_channels_last_train_and_save_a_plain_model(pairs, tmp_path):
    """bf16/fp16 autocast and channels-last train, save a checkpoint that loads into a plain fp32 model, and
    compute the loss of fp32 to within their precision. A negligible lr keeps the weights at their start,
    so the epoch's mean loss is the same function in every run (and fp16's skipped steps, while the loss
    scale settles, change nothing)."""
    base = ["--inputs", str(pairs / "inputs"), "--targets", str(pairs / "targets"), "--out", str(tmp_path),
            *TRAIN_ARGS, "--epochs", "1", "--lr", "1e-12", "--bias-lr", "1e-12"]
    losses = {}
    runs = {"fp32": ("--no-channels-last",), "bf16": ("--amp", "bf16", "--channels-last"),
            "fp16": ("--amp", "fp16")}
    for name, extra in runs.items():
        assert train_mod.main([*base, "--experiment", name, *extra]) == 0
        payload = checkpoint.load_checkpoint(tmp_path / "models" / name / "checkpoint.pt")
        model = checkpoint.model_from_checkpoint(payload)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        losses[name] = payload["state"]["history"][0]["train_loss"]
        assert bool(payload["state"]["scaler"]) == (name == "fp16")  # the loss scale is saved for resume
    torch.testing.assert_close(losses["bf16"], losses["fp32"], rtol=3e-3, atol=0)
    torch.testing.assert_close(losses["fp16"], losses["fp32"], rtol=1e-3, atol=0)


def test_sync_bn_on_the_cpu_is_a_one_line_error(pairs, tmp_path, capsys):
    argv = ["--inputs", str(pairs / "inputs"), "--targets", str(pairs / "targets"), "--out", str(tmp_path),
            *TRAIN_ARGS, "--epochs", "1", "--sync-bn"]
    assert train_mod.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--sync-bn" in err and "CUDA" in err
    assert not (tmp_path / "models").exists()
