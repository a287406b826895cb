"""GPU-only checks of how the fused backends treat devices: kernels launch on the inputs' device
(not the current one), soft-DTW's argument checks do not wait for the GPU, and the NaN check that
is skipped on CUDA for that reason comes back under anomaly mode. Skipped without a GPU."""
import pytest
import torch

from abcc_fast.ops import backends, dilate, meanflow_integrate, soft_dtw, two_stream_attention

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

GPU = [b for b in ("triton", "cuda") if backends()[b].available] if torch.cuda.is_available() else []


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
@pytest.mark.parametrize("backend", GPU)
def test_second_device_while_the_first_is_current(backend):
    torch.cuda.set_device(0)
    dev = torch.device("cuda", 1)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, 40, generator=g), torch.randn(3, 30, generator=g)
    got = soft_dtw(x.to(dev), y.to(dev), 0.1, backend=backend)
    assert got.device == dev
    torch.testing.assert_close(got.cpu(), soft_dtw(x, y, 0.1, backend="reference"), rtol=1e-5, atol=1e-5)
    xs = [torch.randn(2, 2, n, 64, generator=g) for n in (33, 33, 33, 17, 17, 17)]
    oa, ob = two_stream_attention(*(t.to(dev) for t in xs), backend="triton")
    ra, rb = two_stream_attention(*xs, backend="reference")
    torch.testing.assert_close(oa.cpu(), ra, rtol=1e-4, atol=1e-4)
    x0, us, uz = torch.randn(2, 9, generator=g), torch.randn(2, 3, 9, generator=g), torch.randn(2, 3, 9, generator=g)
    r, taus = torch.zeros(2), torch.rand(2, 3, generator=g)
    f, _, _ = meanflow_integrate(x0.to(dev), us.to(dev), uz.to(dev), r.to(dev), taus.to(dev), backend=backend)
    torch.testing.assert_close(f.cpu(), meanflow_integrate(x0, us, uz, r, taus, backend="reference")[0])


@pytest.mark.parametrize("backend", GPU)
def test_soft_dtw_call_does_not_sync_with_the_host(backend):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 64, generator=g).cuda().requires_grad_(True)
    y = torch.randn(4, 48, generator=g).cuda()
    soft_dtw(x, y, 0.1, backend=backend)  # warm-up: kernel compilation, allocator
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss, _, _ = dilate(x, y, 0.5, 0.1, lengths=(torch.tensor([64, 50, 3, 64]), torch.tensor([48] * 4)),
                            backend=backend)
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_nan_check_on_cuda_runs_under_anomaly_mode():
    x = torch.tensor([[1.0, float("nan"), 2.0]], device="cuda")
    y = torch.randn(1, 4, device="cuda")
    with torch.autograd.set_detect_anomaly(True):
        with pytest.raises(ValueError, match="NaN or Inf"):
            soft_dtw(x, y, 0.1)
