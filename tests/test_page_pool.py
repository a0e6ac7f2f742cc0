"""The CPU output pool (:mod:`lutkern.ops.page_pool`): a large output's pages are reused only once nothing
can reach them (no tensor, view, numpy array or autograd reference), and ``apply_lut``'s fresh outputs come
from it with the same values as ``out=``."""

import gc

import numpy as np
import pytest
import torch

import lutkern
from lutkern.ops import page_pool
from lutkern.ops.apply_lut_native import native_available

SHAPE = (2, 3, 512, 512)  # 6 MiB of float32: above MIN_BYTES


@pytest.fixture(autouse=True)
def empty_pool(monkeypatch):
    monkeypatch.delenv("LUTKERN_OUTPUT_POOL", raising=False)
    page_pool.clear()
    yield
    page_pool.clear()


def test_a_dead_output_is_reused_and_a_live_one_never():
    a = page_pool.empty(SHAPE, torch.float32)
    where = a.data_ptr()
    del a
    b = page_pool.empty(SHAPE, torch.float32)
    assert b.data_ptr() == where  # the pages of a dead tensor come back
    keep = [b[1:], b.numpy()[0], b.view(-1)[5:]]  # views and arrays keep the memory alive
    b.fill_(7)
    del b
    for _ in range(3):
        c = page_pool.empty(SHAPE, torch.float32)
        assert c.data_ptr() != where
        c.fill_(-1)
    assert (keep[0] == 7).all() and (keep[1] == 7).all() and (keep[2] == 7).all()
    del keep, c
    again = [page_pool.empty(SHAPE, torch.float32) for _ in range(page_pool.MAX_PER_SIZE)]
    assert where in {t.data_ptr() for t in again}  # once the last view is gone


def test_sizes_dtypes_and_limits():
    small = page_pool.empty((3, 4, 5), torch.float32)  # below MIN_BYTES: torch's allocator
    assert small.shape == (3, 4, 5) and small.untyped_storage().resizable()
    half = page_pool.empty((4, *SHAPE[1:]), torch.bfloat16)  # as many bytes, another dtype: pooled
    assert half.dtype == torch.bfloat16 and half.shape == (4, *SHAPE[1:]) and half.is_contiguous()
    assert not half.untyped_storage().resizable()
    outs = [page_pool.empty(SHAPE, torch.float32) for _ in range(page_pool.MAX_PER_SIZE + 2)]
    ptrs = {t.data_ptr() for t in [*outs, half]}
    del outs, half
    gc.collect()
    kept = sum(len(b) for b in page_pool._free.values())
    assert kept == page_pool.MAX_PER_SIZE  # of one size (bytes), whatever the dtype
    again = [page_pool.empty(SHAPE, torch.float32) for _ in range(page_pool.MAX_PER_SIZE)]
    assert {t.data_ptr() for t in again} <= ptrs


def test_switched_off(monkeypatch):
    monkeypatch.setenv("LUTKERN_OUTPUT_POOL", "0")
    t = page_pool.empty(SHAPE, torch.float32)
    assert t.untyped_storage().resizable()  # a plain torch.empty


@pytest.mark.skipif(not native_available(), reason="no C compiler")
@pytest.mark.parametrize("interpolation", ["trilinear", "tetrahedral"])
def test_apply_lut_fresh_outputs_come_from_the_pool(interpolation):
    image = torch.rand(SHAPE)
    lut = lutkern.looks["teal_orange"](9)
    want = torch.empty_like(image)
    lutkern.apply_lut(image, lut, interpolation=interpolation, out=want)
    first = lutkern.apply_lut(image, lut, interpolation=interpolation)
    torch.testing.assert_close(first, want, rtol=0, atol=0)
    where = first.data_ptr()
    del first
    second = lutkern.apply_lut(image, lut, interpolation=interpolation)
    assert second.data_ptr() == where
    torch.testing.assert_close(second, want, rtol=0, atol=0)


@pytest.mark.skipif(not native_available(), reason="no C compiler")
def test_an_output_autograd_still_holds_is_not_reused():
    image = torch.rand(SHAPE, requires_grad=True)
    lut = lutkern.looks["bw"](5).requires_grad_()
    y = lutkern.apply_lut(image, lut)
    where = y.data_ptr()
    loss = (y * y).sum()  # mul saves y for its backward
    expected = 2 * y.detach().clone()
    del y
    z = lutkern.apply_lut(image.detach(), lut.detach())
    assert z.data_ptr() != where
    z.fill_(np.nan)
    (grad_y,) = torch.autograd.grad(loss, [image], retain_graph=True)
    assert torch.isfinite(grad_y).all()
    y2 = lutkern.apply_lut(image, lut)
    (g_ref,) = torch.autograd.grad((y2 * expected).sum(), [image])  # d(y*y) = 2y dy
    torch.testing.assert_close(grad_y, g_ref)
