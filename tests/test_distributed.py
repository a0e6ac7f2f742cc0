"""img2lut.distributed: the sampler's partition, single-process no-ops, unwrapping, and two gloo processes
on the CPU whose DDP step equals one big-batch step computed in a single process."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from img2lut import distributed as D
from img2lut.model import ResNetLUTGenerator

LUT = 5


@pytest.fixture(autouse=True)
def _fast_small_tensors(monkeypatch):
    monkeypatch.setenv("LUTKERN_BACKEND", "torch")  # the kernels are tested elsewhere
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
