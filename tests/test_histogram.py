"""lutkern.channel_histogram on every implementation (the compiled C loop, eager torch ops, the Triton
kernel in Triton's interpreter) against its oracle (lutkern.reference.histogram) and exact counts: dtypes,
values at and next to rounding ties, edge values, odd and empty sizes, strided planes, batches of
different images, many bins, integer codes at both ends, several chunks and workers (C loop) and several
programs per plane (Triton), dispatch, input errors."""

import subprocess
import sys

import pytest
import torch

import lutkern
import lutkern.histogram as histogram_mod
import lutkern.ops.histogram_cpu as cpu_mod
from lutkern._backend import interpreter_enabled
from lutkern._cbuild import find_compiler
from lutkern.reference.histogram import channel_histogram_reference

FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
INTEGERS = [torch.uint8, torch.int16, torch.int32, torch.int64]
# 1024: the Triton kernel's largest per-program histogram; 4097: beyond the C loop's four tables, and the
# Triton kernel's per-pixel atomics.
BINS = [2, 17, 256, 1024, 4097, 65536]


def triton_device() -> str:
    """Where the Triton kernel runs: the interpreter on CPU tensors (``TRITON_INTERPRET=1``, set by
    tests/conftest.py), else CUDA (``TRITON_INTERPRET=0 pytest ...`` on a GPU machine); skips otherwise."""
    pytest.importorskip("triton")
    if interpreter_enabled():
        return "cpu"
    if not torch.cuda.is_available():
        pytest.skip("Triton needs CUDA or TRITON_INTERPRET=1")
    return "cuda"


def on_triton(images, bins=256):
    """channel_histogram with the Triton kernel, on the device it runs on; the counts back on the CPU."""
    return lutkern.channel_histogram(images.to(triton_device()), bins, backend="triton").cpu()


@pytest.fixture(params=["native", "eager", "triton"])
def histogram(request, monkeypatch):
    """``channel_histogram`` on one implementation: the torch backend's compiled C loop, its eager torch
    ops (``LUTKERN_NATIVE=0``), or the Triton kernel (see :func:`triton_device`)."""
    if request.param == "triton":
        triton_device()
        return on_triton
    if request.param == "eager":
        monkeypatch.setenv("LUTKERN_NATIVE", "0")
    else:
        monkeypatch.delenv("LUTKERN_NATIVE", raising=False)
        if find_compiler() is None:
            pytest.skip("no C compiler on this machine: the compiled loop cannot be built")
        assert cpu_mod.native_available(), "a C compiler is present but the histogram loop did not build"
    return lambda images, bins=256: lutkern.channel_histogram(images, bins, backend="torch")


def check(histogram, images, bins):
    """The implementation's counts equal the oracle's, and every non-NaN pixel is counted once."""
    got = histogram(images, bins)
    assert got.dtype == torch.int64 and got.shape == (*images.shape[:-2], bins)
    want = channel_histogram_reference(images.reshape(-1, *images.shape[-3:]), bins).view(got.shape)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    h, w = images.shape[-2:]
    kept = (~images.isnan()).sum((-1, -2)) if images.is_floating_point() else torch.tensor(h * w)
    torch.testing.assert_close(got.sum(-1), kept.long().expand(got.shape[:-1]), rtol=0, atol=0)
    return got


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("bins", BINS)
def test_float_images_match_the_oracle(histogram, dtype, bins):
    gen = torch.Generator().manual_seed(bins)
    images = (torch.rand(2, 3, 7, 13, generator=gen) * 1.4 - 0.2).to(dtype)
    images[0, 1, 2, 3] = float("nan")
    images[1, 2, 0, :4] = torch.tensor([0.0, 1.0, -0.0, float("inf")], dtype=dtype)
    check(histogram, images, bins)


def near_ties(bins: int, dtype: torch.dtype) -> torch.Tensor:
    """Values whose scaled value ``v * (bins - 1)`` lies at or next to a half-way point ``k + 1/2``, for
    every ``k`` (up to 300 of them): the nearest value of ``dtype`` to ``(k + 1/2) / (bins - 1)`` and its
    neighbours 1 and 2 steps below and above."""
    k = torch.linspace(0, bins - 2, min(bins - 1, 300), dtype=torch.float64).round()
    values = ((k + 0.5) / (bins - 1)).to(dtype)
    out = [values]
    for direction in (0.0, 2.0):
        step = values
        for _ in range(2):
            step = torch.nextafter(step, torch.full_like(step, direction))
            out.append(step)
    return torch.cat(out)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("bins", [2, 3, 5, 256, 1000, 1025, 65536])
def test_values_at_and_next_to_ties(histogram, dtype, bins):
    values = near_ties(bins, dtype)
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    scaled = values.to(compute) * (bins - 1)
    ties = scaled[scaled - scaled.floor() == 0.5]
    if dtype in (torch.float32, torch.float64) and bins > 2:
        # Both parities of k among the exact ties: rounding half up, down or away would change a count.
        assert (ties.floor() % 2 == 0).any() and (ties.floor() % 2 == 1).any()
    check(histogram, values.view(1, 1, 1, -1), bins)


def test_float32_values_are_binned_in_float32(histogram):
    """Values whose product with bins - 1 rounds to a tie in float32 but not in float64: binning them in
    float64 (or with a fused multiply-add) moves them to the other bin."""
    bins = 256
    values = near_ties(bins, torch.float32)
    in32 = torch.round(values * (bins - 1))
    in64 = torch.round(values.double() * (bins - 1)).float()
    assert (in32 != in64).sum() >= 10
    check(histogram, values.view(1, 1, 1, -1), bins)


@pytest.mark.parametrize("dtype", FLOATS)
def test_edge_values(histogram, dtype):
    """NaN (not counted), +-inf, +-0, values just inside and outside [0, 1], far out of range."""
    zero, one = torch.zeros((), dtype=dtype), torch.ones((), dtype=dtype)
    edges = [
        float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1.0, 1e30 if dtype != torch.float16 else 6e4,
        -1e30 if dtype != torch.float16 else -6e4,
        torch.nextafter(zero, -one), torch.nextafter(zero, one), torch.nextafter(one, zero),
        torch.nextafter(one, 2 * one), 0.5, float("nan"),
    ]
    values = torch.stack([torch.as_tensor(v, dtype=dtype) for v in edges])
    # Hand counts with 2 bins: 0.5 is a tie, rounded to the even bin 0; the largest value below 1 rounds up.
    assert check(histogram, values.view(1, 1, 2, 7), 2).tolist() == [[[7, 5]]]
    for bins in (256, 65536):
        got = check(histogram, values.view(1, 1, 2, 7), bins)[0, 0]
        assert int(got[0]) == 6 and int(got[-1]) >= 4  # at or below 0 (and +tiny); at or above 1


def test_eight_bit_codes_land_one_per_bin(histogram):
    codes = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    floats = codes.float() / 255
    expected = torch.ones(1, 3, 256, dtype=torch.int64)
    torch.testing.assert_close(histogram(floats, 256), expected, rtol=0, atol=0)
    torch.testing.assert_close(histogram(codes, 256), expected, rtol=0, atol=0)
    sixteen = torch.arange(0, 65536, 257, dtype=torch.int32).view(1, 1, 16, 16)
    counts = histogram(sixteen.float() / 65535, 65536)
    assert counts.sum() == 256 and int(counts[0, 0, 257]) == 1 and int(counts[0, 0, 256]) == 0


def test_ties_round_half_to_even_and_out_of_range_clamps(histogram):
    # 0.5 scaled by 2 bins-1 = 1 -> 0.5 is exact: round half to even gives bin 0
    images = torch.tensor([0.5, 0.75, -3.0, 7.0, 0.25]).view(1, 1, 1, 5)  # bins 0, 1(0.75->1), 0, 1, 0
    got = histogram(images, 2)
    torch.testing.assert_close(got, torch.tensor([[[3, 2]]]), rtol=0, atol=0)
    got4 = histogram(torch.tensor([0.5]).view(1, 1, 1), 4)  # 1.5 -> 2
    assert got4.tolist() == [[0, 0, 1, 0]]


@pytest.mark.parametrize("dtype", INTEGERS)
def test_integer_codes_at_both_ends_of_their_range(histogram, dtype):
    bins = 256 if dtype == torch.uint8 else 32768 if dtype == torch.int16 else 65536
    top = bins - 1
    codes = torch.tensor([[0, top, 0, 1], [top, top - 1, 7, top]], dtype=dtype).view(1, 2, 2, 2)
    codes = torch.cat([codes, torch.randint(0, bins, (2, 2, 2, 2), generator=torch.Generator().manual_seed(1))
                       .to(dtype)])
    got = check(histogram, codes, bins)
    assert got[0, 0, [0, 1, top]].tolist() == [2, 1, 1] and got[0, 1, [7, top - 1, top]].tolist() == [1, 1, 2]


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 17, 23), (1, 4, 1, 9)])
def test_odd_sizes(histogram, shape):
    images = torch.rand(shape, generator=torch.Generator().manual_seed(2)) * 1.2 - 0.1
    check(histogram, images, 256)
    check(histogram, (images.clamp(0, 1) * 255).round().to(torch.uint8), 256)


@pytest.mark.parametrize("shape", [(2, 3, 0, 5), (0, 3, 4, 4), (2, 0, 4, 4), (3, 0, 6)])
def test_empty(histogram, shape):
    for dtype in (torch.float32, torch.uint8):
        got = histogram(torch.zeros(shape, dtype=dtype), 8 if dtype != torch.uint8 else 256)
        assert got.shape == (*shape[:-2], 8 if dtype != torch.uint8 else 256) and int(got.sum()) == 0


def test_unbatched_matches_batched(histogram):
    img = torch.rand(4, 5, 6)
    torch.testing.assert_close(histogram(img, 8), histogram(img[None], 8)[0], rtol=0, atol=0)


def test_strided_planes(histogram):
    """Channels-last images (decoded (H,W,3) arrays seen as (3,H,W)), slices with a pixel step, expanded
    channels: read where they are or copied, the counts are those of the same values."""
    g = torch.Generator().manual_seed(3)
    hwc = torch.rand(2, 9, 11, 3, generator=g)
    hwc[1, 4, 5, 2] = float("nan")
    check(histogram, hwc.permute(0, 3, 1, 2), 64)
    codes = torch.randint(0, 256, (9, 11, 3), generator=g, dtype=torch.uint8)
    check(histogram, codes.permute(2, 0, 1), 256)
    wide = torch.rand(2, 3, 8, 20, generator=g)
    check(histogram, wide[:, :, :, ::3], 32)  # H and W cannot share one stride: a copy
    check(histogram, wide[:, :, :1, ::2], 32)  # one row: a pixel stride of 2
    check(histogram, wide[:1, :1].expand(2, 3, 8, 20), 32)


def test_each_image_and_channel_is_counted_on_its_own(histogram):
    """Image i, channel c holds only bin 10 i + c (and image 1 some NaN): a plane read or written at
    another image's or channel's place moves counts between rows."""
    bins = 64
    b, c, h, w = 4, 3, 5, 7
    k = (10 * torch.arange(b).view(b, 1) + torch.arange(c).view(1, c)).view(b, c, 1, 1)
    images = (k.double() / (bins - 1)).expand(b, c, h, w).contiguous()
    images[1, 2, 0, :3] = float("nan")
    for x in (images.float(), images, k.expand(b, c, h, w).to(torch.int16)):
        got = check(histogram, x, bins)
        want = torch.zeros(b, c, bins, dtype=torch.int64)
        want.scatter_(2, k.view(b, c, 1), h * w)
        if x.is_floating_point():
            want[1, 2, 12] -= 3
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("bins", [256, 5000])
def test_c_loop_in_many_chunks_and_two_workers(monkeypatch, bins):
    """Chunks that cut the planes (and the C loop's 1024-value blocks) anywhere, dealt to two worker
    threads: every chunk's counts added to its plane's row, whichever thread runs it."""
    if not cpu_mod.native_available():
        pytest.skip("the compiled loop is not available")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(cpu_mod, "chunk_pixels", lambda bins: 1000)
    monkeypatch.setattr(cpu_mod, "MIN_WORK", 1)
    g = torch.Generator().manual_seed(4)
    images = torch.rand(2, 3, 41, 67, generator=g) * 1.2 - 0.1  # 2747 pixels a plane
    images[0, 0, 3, :100] = float("nan")
    plan = cpu_mod.schedule(6, 1, 41 * 67, images.device, 1000, 1)
    assert [len(jobs) for jobs in plan] == [9, 9]  # 3 chunks of each of 6 planes
    first = check(lambda x, n: lutkern.channel_histogram(x, n, backend="torch"), images, bins)
    again = lutkern.channel_histogram(images, bins, backend="torch")
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    check(lambda x, n: lutkern.channel_histogram(x, n, backend="torch"),
          (images.nan_to_num().clamp(0, 1) * 255).round().to(torch.uint8), 256)


@pytest.mark.parametrize("dtype", [torch.int16, torch.int32, torch.int64])
def test_c_loop_neither_counts_nor_writes_codes_outside_the_bins(dtype):
    """channel_histogram refuses such images before any counting; the C loop itself still keeps every
    write inside the output (a code is an index), and counts only the codes in range."""
    if not cpu_mod.native_available():
        pytest.skip("the compiled loop is not available")
    top = torch.iinfo(dtype).max
    codes = torch.tensor([-1, 0, 16, 3, top, -top - 1, 15, 17], dtype=dtype).view(1, 1, 1, 8)
    got = cpu_mod.channel_histogram_cpu(codes, 16)
    want = torch.zeros(1, 1, 16, dtype=torch.int64)
    want[0, 0, [0, 3, 15]] = 1
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("bins", [2, 256, 2000])
@pytest.mark.parametrize("per_pixel", [False, True], ids=["program-histograms", "per-pixel-atomics"])
def test_triton_with_several_programs_per_plane(monkeypatch, bins, per_pixel):
    """Launch settings that give each plane several programs of several steps, with a ragged end: each
    program's partial histogram is added to its plane's row. Both ways of counting, whatever the bins."""
    triton_device()
    import lutkern.ops.histogram_triton as triton_mod

    monkeypatch.setattr(triton_mod, "launch_settings", lambda planes, hw, device: (64, 128, 2))
    monkeypatch.setattr(triton_mod, "MAX_PROGRAM_BINS", 0 if per_pixel else 65536)
    g = torch.Generator().manual_seed(bins)
    images = torch.rand(2, 2, 13, 29, generator=g) * 1.2 - 0.1  # 377 pixels: 3 programs, the last 121 pixels
    images[1, 0, 5, :40] = float("nan")
    check(on_triton, images, bins)
    check(on_triton, images.double(), bins)
    check(on_triton, (images.nan_to_num().clamp(0, 1) * (bins - 1)).round().to(torch.int32), bins)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.uint8])
@pytest.mark.parametrize("bins", [256, 65536])
def test_triton_on_cuda_with_the_gpu_launch(dtype, bins):
    """On a GPU: photo-sized planes with the GPU's launch (many programs per plane, both ways of counting)
    against the torch ops on the same CUDA tensors (both tested against the oracle above), and the same
    counts on a second run."""
    if triton_device() != "cuda":
        pytest.skip("GPU only (the interpreter would take minutes)")
    if dtype == torch.uint8 and bins != 256:
        pytest.skip("uint8 takes 256 bins")
    g = torch.Generator(device="cuda").manual_seed(bins)
    images = torch.rand(2, 3, 1000, 1500, generator=g, device="cuda") * 1.2 - 0.1
    images[0, 1, :100] = float("nan")
    images = (images.clamp(0, 1) * 255).round().to(dtype) if dtype == torch.uint8 else images.to(dtype)
    got = lutkern.channel_histogram(images, bins, backend="triton")
    want = histogram_mod.channel_histogram_torch(images, bins)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(lutkern.channel_histogram(images, bins, backend="triton"), got, rtol=0, atol=0)


COMPILE_FOR_SM90 = """
import os
os.environ["TRITON_INTERPRET"] = "0"
try:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from lutkern.ops.histogram_triton import COMPILE_OPTIONS, _histogram_kernel

    ints = dict.fromkeys(["HW", "C", "stride_b", "stride_c", "stride_p", "bins", "chunk"], "i32")
    flags = dict.fromkeys(["NB", "PER_PIXEL", "BLOCK"], "constexpr")
    cases = [("*fp32", 256, False), ("*fp64", 1024, False), ("*fp16", 1, True), ("*u8", 256, False)]
    sources = [ASTSource(_histogram_kernel, {"x_ptr": ptr, "out_ptr": "*i64", **ints, **flags},
                         constexprs={"NB": nb, "PER_PIXEL": per_pixel, "BLOCK": 1024})
               for ptr, nb, per_pixel in cases]
except Exception as exc:  # another Triton's compile interface
    raise SystemExit(f"interface: {exc!r}")
for src in sources:
    options = {"num_warps": 4, **COMPILE_OPTIONS}
    ptx = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options).asm["ptx"]
    atomics = "red." in ptx or "atom." in ptx
    print("fma" if "fma." in ptx else "no-fma", "atomics" if atomics else "no-atomics")
"""


def test_triton_kernel_compiles_for_sm90_without_fused_multiply_adds():
    """What the interpreter cannot show: the kernel compiles for a Hopper GPU (Triton bundles ptxas; no GPU
    needed), every way of counting, and with COMPILE_OPTIONS no multiply is fused into an add (the
    interpreter never fuses, so ties would move on a GPU only)."""
    pytest.importorskip("triton")
    run = subprocess.run([sys.executable, "-c", COMPILE_FOR_SM90], capture_output=True, text=True)
    if run.returncode and "interface:" in run.stderr + run.stdout:
        pytest.skip(f"this Triton compiles through another interface: {run.stderr.strip()[-200:]}")
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["no-fma", "atomics"] * 4, run.stdout


def test_dispatch(monkeypatch):
    """Automatic on CPU tensors: the compiled loop, or torch ops with LUTKERN_NATIVE=0; what the backend
    resolves to "triton" (CUDA tensors, or an explicit request) runs the Triton kernel; an explicit
    "triton" that cannot run raises."""
    if triton_device() != "cpu":
        pytest.skip("runs the Triton kernel on CPU tensors")
    import lutkern.ops.histogram_triton as triton_mod

    calls = []

    def spy(name, real):
        def run(*args):
            calls.append(name)
            return real(*args)

        return run

    for module, name, label in [(histogram_mod, "channel_histogram_cpu", "native"),
                                (histogram_mod, "channel_histogram_torch", "eager"),
                                (triton_mod, "channel_histogram_triton", "triton")]:
        monkeypatch.setattr(module, name, spy(label, getattr(module, name)))
    images = torch.rand(3, 4, 5)
    monkeypatch.delenv("LUTKERN_BACKEND", raising=False)
    monkeypatch.delenv("LUTKERN_NATIVE", raising=False)
    automatic = "native" if cpu_mod.native_available() else "eager"
    lutkern.channel_histogram(images)
    monkeypatch.setenv("LUTKERN_NATIVE", "0")
    lutkern.channel_histogram(images)
    lutkern.channel_histogram(images, backend="triton")
    monkeypatch.setenv("LUTKERN_BACKEND", "triton")
    lutkern.channel_histogram(images)
    monkeypatch.delenv("LUTKERN_BACKEND")
    monkeypatch.setattr(histogram_mod, "resolve_backend", lambda backend, device: "triton")  # as on CUDA
    lutkern.channel_histogram(images)
    assert calls == [automatic, "eager", "triton", "triton", "triton"]
    monkeypatch.undo()
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="backend='triton'.*TRITON_INTERPRET"):
        lutkern.channel_histogram(images, backend="triton")


def test_import_neither_loads_triton_kernels_nor_builds_c():
    code = ("import sys, lutkern, lutkern.ops.histogram_cpu as c; "
            "print('lutkern.ops.histogram_triton' in sys.modules, c._library.cache_info().currsize)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "0"]


@pytest.mark.parametrize("bad, message", [
    (dict(images=[[0.0]]), "torch.Tensor"),
    (dict(images=torch.zeros(2, 2, dtype=torch.bool)), "dtype"),
    (dict(images=torch.zeros(5)), "shape"),
    (dict(images=torch.zeros(1, 1, 1), bins=1), "bins"),
    (dict(images=torch.zeros(1, 1, 1), bins=True), "bins"),
    (dict(images=torch.zeros(1, 1, 1), bins=70000), "bins"),
    (dict(images=torch.zeros(1, 1, 1, dtype=torch.uint8), bins=16), "256"),
    (dict(images=torch.full((1, 1, 1), 16, dtype=torch.int32), bins=16), r"\[0, 16\)"),
    (dict(images=torch.full((1, 1, 1), -1, dtype=torch.int16), bins=16), r"\[0, 16\)"),
    (dict(images=torch.tensor([[[0, 65536]]]), bins=65536), r"from 0 to 65536"),
    (dict(images=torch.zeros(1, 1, 1), backend="cuda"), "backend"),
])
def test_bad_input_is_refused_naming_the_problem(bad, message):
    with pytest.raises((TypeError, ValueError), match=message):
        lutkern.channel_histogram(**bad)
