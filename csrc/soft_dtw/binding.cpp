// soft-DTW / DILATE bindings: SoftDtwParams (the one argument contract, see csrc/common/binding.h)
// and the entry points sdtw_cpu_forward / sdtw_cpu_backward (csrc/soft_dtw/soft_dtw.cpp and
// soft_dtw_lanes.cpp) and, in a CUDA build, sdtw_cuda_forward / sdtw_cuda_backward
// (csrc/soft_dtw/soft_dtw.cu). This file converts tensors and checks what the kernels assume
// (device, dtype, contiguity, shapes); user-facing validation with friendly messages happens in
// abcc_fast/ops/soft_dtw.py before any of this runs.
#include "common/binding.h"
#include "soft_dtw/soft_dtw.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

#ifdef ABCC_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "soft_dtw/soft_dtw_cuda.h"
#endif

namespace abcc {
namespace binding {
namespace {

// The arguments of every soft-DTW entry point (each reads the subset listed in bind_soft_dtw).
struct SoftDtwParams {
  OptTensor D, x, y;          // cost matrix [B, N, M], or sequences [B, N] / [B, N, d] and [B, M] / [B, M, d]
  Tensor n, m;                // int64 [B] lengths
  double gamma = 1.0;
  double bandwidth = -1.0;    // < 0: no band
  OptTensor omega;            // DILATE direction [B or 1, N, M]; None: the default
  bool want_temporal = false;
  bool save = false;          // forward: keep the state the backward needs
  int64_t threads = 1;        // cpu: OpenMP threads
  int64_t engine = 0;         // cpu: 0 by shape, 1 pairs, 2 lanes, 3 lanes with blocked costs
  Tensor r, rt, off;          // cpu backward: the forward's saved state
  Tensor ckpt, ckpt_t, base;  // cuda backward: the forward's checkpoints and offsets
  OptTensor grad_value, grad_temporal;
  bool need_dx = true, need_dy = true;  // cpu backward with x, y: which of dL/dx, dL/dy to compute
};

// Asks Linux to back a large, fresh CPU buffer with 2 MiB pages where transparent huge pages are
// allowed on request ("madvise" mode, the usual default). The soft-DTW forward writes its saved
// state once, front to back, and every first touch of a 4 KiB page is a page fault: measured at
// N = 2048 (d = 1, 1 thread), saving added 7.5 ms to a 10.5 ms forward per pair with 4 KiB pages,
// 3.6 ms with 2 MiB pages. A no-op elsewhere and for buffers under 4 MiB.
void advise_huge_pages(const Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const size_t bytes = t.numel() * t.element_size();
  if (bytes < (size_t(4) << 20)) return;
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(t.data_ptr()) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(t.data_ptr()) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);  // advisory: errors ignored
#else
  (void)t;
#endif
}

template <typename T>
abcc::cpu::SdtwProblem<T> make_problem(const SoftDtwParams& a) {
  const OptTensor &D = a.D, &x = a.x, &y = a.y, &omega = a.omega;
  const Tensor &n = a.n, &m = a.m;
  const int64_t threads = a.threads, engine = a.engine;
  ABCC_CHECK_GIVEN(a, n, "soft-DTW");
  ABCC_CHECK_GIVEN(a, m, "soft-DTW");
  abcc::cpu::SdtwProblem<T> p;
  p.threads = static_cast<int>(std::max<int64_t>(1, threads));
  TORCH_CHECK(engine >= 0 && engine <= 3,
              "engine must be 0 (auto), 1 (pairs), 2 (lanes) or 3 (lanes, multivariate costs in diagonal blocks)");
  p.engine = static_cast<int>(engine);
  TORCH_CHECK(n.scalar_type() == at::kLong && m.scalar_type() == at::kLong, "lengths must be int64");
  ABCC_CHECK_CONTIG(n);
  ABCC_CHECK_CONTIG(m);
  p.n = n.data_ptr<int64_t>();
  p.m = m.data_ptr<int64_t>();
  p.gamma = a.gamma;
  p.bandwidth = a.bandwidth;
  p.want_temporal = a.want_temporal;
  if (D.has_value()) {
    ABCC_CHECK_CPU(*D);
    ABCC_CHECK_CONTIG(*D);
    TORCH_CHECK(D->dim() == 3, "D must be [B, N, M]");
    p.B = D->size(0);
    p.N = D->size(1);
    p.M = D->size(2);
    p.D = D->data_ptr<T>();
  } else {
    TORCH_CHECK(x.has_value() && y.has_value(), "give either D or both x and y");
    ABCC_CHECK_CPU(*x);
    ABCC_CHECK_CONTIG(*x);
    ABCC_CHECK_CONTIG(*y);
    TORCH_CHECK((x->dim() == 2 || x->dim() == 3) && y->dim() == x->dim() && x->size(0) == y->size(0) &&
                    (x->dim() == 2 || x->size(2) == y->size(2)),
                "x, y must be [B, N], [B, M] or [B, N, d], [B, M, d]");
    p.B = x->size(0);
    p.N = x->size(1);
    p.M = y->size(1);
    p.d = x->dim() == 3 ? x->size(2) : 1;
    TORCH_CHECK(p.d >= 1, "x, y need at least one feature");
    p.x = x->data_ptr<T>();
    p.y = y->data_ptr<T>();
  }
  TORCH_CHECK(n.numel() == p.B && m.numel() == p.B, "lengths must have B entries");
  if (omega.has_value()) {
    ABCC_CHECK_CONTIG(*omega);
    TORCH_CHECK(omega->size(-2) == p.N && omega->size(-1) == p.M, "omega must be [B or 1, N, M]");
    p.omega = omega->data_ptr<T>();
    p.omega_batch_stride = (omega->dim() == 3 && omega->size(0) == p.B && p.B > 1) ? p.N * p.M : 0;
  }
  return p;
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> sdtw_cpu_forward(const SoftDtwParams& a) {
  TORCH_CHECK(a.D.has_value() || a.x.has_value(), "sdtw_cpu_forward: give either D or both x and y");
  const Tensor& ref = a.D.has_value() ? *a.D : *a.x;
  const bool want_temporal = a.want_temporal, save = a.save;
  const auto opts = ref.options();
  Tensor value, temporal, r, rt, off;
  AT_DISPATCH_FLOATING_TYPES(ref.scalar_type(), "sdtw_cpu_forward", [&] {
    auto p = make_problem<scalar_t>(a);
    const int64_t rows = abcc::cpu::sdtw_store_rows(p);
    value = at::empty({p.B}, opts);
    temporal = want_temporal ? at::empty({p.B}, opts) : at::zeros({p.B}, opts);
    if (save) {
      r = at::empty({rows, p.N * p.M}, opts);
      rt = want_temporal ? at::empty({rows, p.N * p.M}, opts) : at::empty({0}, opts);
      advise_huge_pages(r);
      advise_huge_pages(rt);
      off = at::empty({rows, p.N + p.M - 1}, opts.dtype(at::kDouble));
    } else {
      r = at::empty({0}, opts);
      rt = at::empty({0}, opts);
      off = at::empty({0}, opts.dtype(at::kDouble));
    }
    {
      pybind11::gil_scoped_release nogil;
      abcc::cpu::sdtw_forward<scalar_t>(p, value.data_ptr<scalar_t>(),
                                        want_temporal ? temporal.data_ptr<scalar_t>() : nullptr,
                                        save ? r.data_ptr<scalar_t>() : nullptr,
                                        (save && want_temporal) ? rt.data_ptr<scalar_t>() : nullptr,
                                        save ? off.data_ptr<double>() : nullptr);
    }
  });
  return {value, temporal, r, rt, off};
}

// Returns (G, dx, dy): G = dL/dD when D is given (dx, dy empty), else dL/dx, dL/dy (G empty).
std::tuple<Tensor, Tensor, Tensor> sdtw_cpu_backward(const SoftDtwParams& a) {
  TORCH_CHECK(a.D.has_value() || a.x.has_value(), "sdtw_cpu_backward: give either D or both x and y");
  ABCC_CHECK_GIVEN(a, r, "sdtw_cpu_backward");
  ABCC_CHECK_GIVEN(a, rt, "sdtw_cpu_backward");
  ABCC_CHECK_GIVEN(a, off, "sdtw_cpu_backward");
  const OptTensor &D = a.D, &x = a.x, &y = a.y, &grad_value = a.grad_value, &grad_temporal = a.grad_temporal;
  const Tensor &r = a.r, &rt = a.rt, &off = a.off;
  const bool want_temporal = a.want_temporal;
  const Tensor& ref = D.has_value() ? *D : *x;
  Tensor G, dx, dy;
  AT_DISPATCH_FLOATING_TYPES(ref.scalar_type(), "sdtw_cpu_backward", [&] {
    auto p = make_problem<scalar_t>(a);
    const int64_t rows = abcc::cpu::sdtw_store_rows(p);
    TORCH_CHECK(r.numel() == rows * p.N * p.M, "saved R has the wrong size (forward ran without save?)");
    TORCH_CHECK(!want_temporal || rt.numel() == rows * p.N * p.M, "saved tangent has the wrong size");
    TORCH_CHECK(off.numel() == rows * (p.N + p.M - 1), "saved offsets have the wrong size");
    const scalar_t* gv = nullptr;
    const scalar_t* gt = nullptr;
    Tensor gv_c, gt_c;
    if (grad_value.has_value()) {
      gv_c = grad_value->contiguous();
      gv = gv_c.data_ptr<scalar_t>();
    }
    if (grad_temporal.has_value()) {
      gt_c = grad_temporal->contiguous();
      gt = gt_c.data_ptr<scalar_t>();
    }
    if (D.has_value()) {
      G = at::zeros_like(*D);
      dx = at::empty({0}, ref.options());
      dy = at::empty({0}, ref.options());
    } else {
      // a gradient the kernel writes in full needs no zeros first (zero-filling dx and dy was 3 % of
      // the samples in a perf profile of a B = 64, N = 32, d = 64 forward+backward loop)
      const bool full = abcc::cpu::sdtw_backward_writes_all(p);
      auto grad_like = [&](const Tensor& t, bool need) {
        return !need ? at::empty({0}, ref.options()) : full ? at::empty_like(t) : at::zeros_like(t);
      };
      G = at::empty({0}, ref.options());
      dx = grad_like(*x, a.need_dx);
      dy = grad_like(*y, a.need_dy);
    }
    {
      pybind11::gil_scoped_release nogil;
      abcc::cpu::sdtw_backward<scalar_t>(
          p, r.data_ptr<scalar_t>(), want_temporal ? rt.data_ptr<scalar_t>() : nullptr,
          off.data_ptr<double>(), gv, gt, D.has_value() ? G.data_ptr<scalar_t>() : nullptr,
          D.has_value() || !a.need_dx ? nullptr : dx.data_ptr<scalar_t>(),
          D.has_value() || !a.need_dy ? nullptr : dy.data_ptr<scalar_t>());
    }
  });
  return {G, dx, dy};
}

#ifdef ABCC_WITH_CUDA
#define ABCC_CHECK_CUDA_ON(t, dev) \
  TORCH_CHECK((t).is_cuda() && (t).device() == (dev), #t " must be a CUDA tensor on ", (dev))

template <typename T>
abcc::cuda::SdtwCudaProblem<T> make_cuda_problem(const SoftDtwParams& a) {
  const OptTensor &D = a.D, &x = a.x, &y = a.y, &omega = a.omega;
  const Tensor &n = a.n, &m = a.m;
  ABCC_CHECK_GIVEN(a, n, "soft-DTW (cuda)");
  ABCC_CHECK_GIVEN(a, m, "soft-DTW (cuda)");
  abcc::cuda::SdtwCudaProblem<T> p;
  TORCH_CHECK(D.has_value() || (x.has_value() && y.has_value()), "give either D or both x and y");
  const Tensor& ref = D.has_value() ? *D : *x;
  const auto dev = ref.device();
  TORCH_CHECK(n.scalar_type() == at::kLong && m.scalar_type() == at::kLong, "lengths must be int64");
  ABCC_CHECK_CUDA_ON(n, dev);
  ABCC_CHECK_CUDA_ON(m, dev);
  ABCC_CHECK_CONTIG(n);
  ABCC_CHECK_CONTIG(m);
  p.n = n.data_ptr<int64_t>();
  p.m = m.data_ptr<int64_t>();
  p.gamma = a.gamma;
  p.bandwidth = a.bandwidth;
  p.want_temporal = a.want_temporal;
  if (D.has_value()) {
    ABCC_CHECK_CUDA_ON(*D, dev);
    ABCC_CHECK_CONTIG(*D);
    TORCH_CHECK(D->dim() == 3, "D must be [B, N, M]");
    p.B = D->size(0);
    p.N = D->size(1);
    p.M = D->size(2);
    p.D = D->data_ptr<T>();
  } else {
    ABCC_CHECK_CUDA_ON(*x, dev);
    ABCC_CHECK_CUDA_ON(*y, dev);
    ABCC_CHECK_CONTIG(*x);
    ABCC_CHECK_CONTIG(*y);
    TORCH_CHECK(x->dim() == 2 && y->dim() == 2 && x->size(0) == y->size(0), "x, y must be [B, N], [B, M]");
    TORCH_CHECK(y->scalar_type() == x->scalar_type(), "x and y must have the same dtype");
    p.B = x->size(0);
    p.N = x->size(1);
    p.M = y->size(1);
    p.x = x->data_ptr<T>();
    p.y = y->data_ptr<T>();
  }
  TORCH_CHECK(p.N >= 1 && p.M >= 1, "sequences must be non-empty");
  TORCH_CHECK(p.N + p.M < (int64_t(1) << 30), "sequence lengths too large for the CUDA kernels");
  TORCH_CHECK(p.B <= int64_t(2147483647), "batch too large for one launch");
  TORCH_CHECK(n.numel() == p.B && m.numel() == p.B, "lengths must have B entries");
  if (omega.has_value()) {
    ABCC_CHECK_CUDA_ON(*omega, dev);
    ABCC_CHECK_CONTIG(*omega);
    TORCH_CHECK(omega->scalar_type() == ref.scalar_type(), "omega must have the dtype of the inputs");
    TORCH_CHECK(omega->dim() == 3 && omega->size(1) == p.N && omega->size(2) == p.M &&
                    (omega->size(0) == 1 || omega->size(0) == p.B),
                "omega must be [B or 1, N, M]");
    p.omega = omega->data_ptr<T>();
    p.omega_batch_stride = (omega->size(0) == p.B && p.B > 1) ? p.N * p.M : 0;
  }
  return p;
}

void check_sdtw_launch(cudaError_t err, const char* what, int64_t N, int64_t M, bool tang, bool univariate,
                       bool backward, size_t elem) {
  if (err == cudaErrorInvalidConfiguration) {
    TORCH_CHECK(false, what, ": N=", N, " is too long for the on-chip wavefront (one block needs ",
                abcc::cuda::sdtw_cuda_shared_bytes(N, M, tang, univariate, backward, elem),
                " bytes of shared memory, more than this GPU allows); use float32 instead of float64, ",
                "swap x and y so that the first sequence is the shorter one, or use backend='triton'");
  }
  TORCH_CHECK(err == cudaSuccess, what, ": CUDA error: ", cudaGetErrorString(err));
}

// Returns (value, temporal, ckpt, ckpt_t, base); ckpt/ckpt_t/base are empty without save.
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> sdtw_cuda_forward(const SoftDtwParams& a) {
  const OptTensor &D = a.D, &x = a.x;
  const bool want_temporal = a.want_temporal, save = a.save;
  TORCH_CHECK(D.has_value() || x.has_value(), "give either D or both x and y");
  const Tensor& ref = D.has_value() ? *D : *x;
  TORCH_CHECK(ref.is_cuda(), "sdtw_cuda_forward: inputs must be CUDA tensors");
  const c10::cuda::CUDAGuard guard(ref.device());
  const auto opts = ref.options();
  Tensor value, temporal, ckpt, ckpt_t, base;
  AT_DISPATCH_FLOATING_TYPES(ref.scalar_type(), "sdtw_cuda_forward", [&] {
    auto p = make_cuda_problem<scalar_t>(a);
    value = at::empty({p.B}, opts);
    temporal = at::zeros({p.B}, opts);
    const int64_t segs = abcc::cuda::sdtw_cuda_num_segments(p.N, p.M);
    if (save) {
      ckpt = at::empty({p.B, segs, 2, p.N}, opts);
      ckpt_t = want_temporal ? at::empty({p.B, segs, 2, p.N}, opts) : at::empty({0}, opts);
      base = at::empty({p.B, p.N + p.M - 1}, opts.dtype(at::kDouble));
    } else {
      ckpt = at::empty({0}, opts);
      ckpt_t = at::empty({0}, opts);
      base = at::empty({0}, opts.dtype(at::kDouble));
    }
    const cudaError_t err = abcc::cuda::sdtw_cuda_forward<scalar_t>(
        p, value.data_ptr<scalar_t>(), temporal.data_ptr<scalar_t>(), save ? ckpt.data_ptr<scalar_t>() : nullptr,
        (save && want_temporal) ? ckpt_t.data_ptr<scalar_t>() : nullptr, save ? base.data_ptr<double>() : nullptr,
        c10::cuda::getCurrentCUDAStream().stream());
    check_sdtw_launch(err, "sdtw_cuda_forward", p.N, p.M, want_temporal, p.D == nullptr, false, sizeof(scalar_t));
  });
  return {value, temporal, ckpt, ckpt_t, base};
}

// Returns (G, dx, dy): G = dL/dD when D is given (dx, dy empty), else dL/dx, dL/dy (G empty).
std::tuple<Tensor, Tensor, Tensor> sdtw_cuda_backward(const SoftDtwParams& a) {
  ABCC_CHECK_GIVEN(a, ckpt, "sdtw_cuda_backward");
  ABCC_CHECK_GIVEN(a, ckpt_t, "sdtw_cuda_backward");
  ABCC_CHECK_GIVEN(a, base, "sdtw_cuda_backward");
  const OptTensor &D = a.D, &x = a.x, &y = a.y, &grad_value = a.grad_value, &grad_temporal = a.grad_temporal;
  const Tensor &ckpt = a.ckpt, &ckpt_t = a.ckpt_t, &base = a.base;
  const bool want_temporal = a.want_temporal;
  TORCH_CHECK(D.has_value() || x.has_value(), "give either D or both x and y");
  const Tensor& ref = D.has_value() ? *D : *x;
  TORCH_CHECK(ref.is_cuda(), "sdtw_cuda_backward: inputs must be CUDA tensors");
  const c10::cuda::CUDAGuard guard(ref.device());
  Tensor G, dx, dy;
  AT_DISPATCH_FLOATING_TYPES(ref.scalar_type(), "sdtw_cuda_backward", [&] {
    auto p = make_cuda_problem<scalar_t>(a);
    const int64_t segs = abcc::cuda::sdtw_cuda_num_segments(p.N, p.M);
    const bool tang = want_temporal && grad_temporal.has_value();
    TORCH_CHECK(ckpt.numel() == p.B * segs * 2 * p.N && ckpt.scalar_type() == ref.scalar_type(),
                "saved checkpoints have the wrong size (forward ran without save?)");
    TORCH_CHECK(!tang || (ckpt_t.numel() == ckpt.numel() && ckpt_t.scalar_type() == ref.scalar_type()),
                "saved tangent checkpoints have the wrong size (forward ran without want_temporal?)");
    TORCH_CHECK(base.scalar_type() == at::kDouble && base.numel() == p.B * (p.N + p.M - 1),
                "saved offsets have the wrong size");
    ABCC_CHECK_CUDA_ON(ckpt, ref.device());
    ABCC_CHECK_CUDA_ON(base, ref.device());
    ABCC_CHECK_CONTIG(ckpt);
    ABCC_CHECK_CONTIG(base);
    if (tang) {
      ABCC_CHECK_CUDA_ON(ckpt_t, ref.device());
      ABCC_CHECK_CONTIG(ckpt_t);
    }
    const scalar_t* gv = nullptr;
    const scalar_t* gt = nullptr;
    Tensor gv_c, gt_c;
    if (grad_value.has_value()) {
      ABCC_CHECK_CUDA_ON(*grad_value, ref.device());
      gv_c = grad_value->to(ref.scalar_type()).contiguous();
      TORCH_CHECK(gv_c.numel() == p.B, "grad_value must have B entries");
      gv = gv_c.data_ptr<scalar_t>();
    }
    if (tang) {
      ABCC_CHECK_CUDA_ON(*grad_temporal, ref.device());
      gt_c = grad_temporal->to(ref.scalar_type()).contiguous();
      TORCH_CHECK(gt_c.numel() == p.B, "grad_temporal must have B entries");
      gt = gt_c.data_ptr<scalar_t>();
    }
    const auto opts = ref.options();
    Tensor seg = at::empty({p.B, abcc::cuda::kSdtwSegment + 2, p.N + 1}, opts);
    Tensor seg_t = tang ? at::empty({p.B, abcc::cuda::kSdtwSegment + 2, p.N + 1}, opts) : at::empty({0}, opts);
    if (D.has_value()) {
      G = at::zeros_like(*D);
      dx = at::empty({0}, opts);
      dy = at::empty({0}, opts);
    } else {
      G = at::empty({0}, opts);
      dx = at::zeros_like(*x);
      dy = at::zeros_like(*y);
    }
    const cudaError_t err = abcc::cuda::sdtw_cuda_backward<scalar_t>(
        p, ckpt.data_ptr<scalar_t>(), tang ? ckpt_t.data_ptr<scalar_t>() : nullptr, base.data_ptr<double>(), gv, gt,
        seg.data_ptr<scalar_t>(), tang ? seg_t.data_ptr<scalar_t>() : nullptr,
        D.has_value() ? G.data_ptr<scalar_t>() : nullptr, D.has_value() ? nullptr : dx.data_ptr<scalar_t>(),
        D.has_value() ? nullptr : dy.data_ptr<scalar_t>(), c10::cuda::getCurrentCUDAStream().stream());
    check_sdtw_launch(err, "sdtw_cuda_backward", p.N, p.M, tang, p.D == nullptr, true, sizeof(scalar_t));
  });
  return {G, dx, dy};
}
#endif

}  // namespace

void bind_soft_dtw(py::module_& m, py::dict& op_args, py::dict& op_params) {
  ParamsType<SoftDtwParams> params(m, "SoftDtwParams", "Arguments of the soft-DTW / DILATE entry points");
  params.field("D", &SoftDtwParams::D, "cost matrix [B, N, M] (or None with x, y)")
      .field("x", &SoftDtwParams::x, "first sequences [B, N] or [B, N, d] (or None with D)")
      .field("y", &SoftDtwParams::y, "second sequences [B, M] or [B, M, d]")
      .field("n", &SoftDtwParams::n, "int64 [B] lengths of the first sequences")
      .field("m", &SoftDtwParams::m, "int64 [B] lengths of the second")
      .field("gamma", &SoftDtwParams::gamma, "softmin temperature")
      .field("bandwidth", &SoftDtwParams::bandwidth, "Sakoe-Chiba band; < 0: none")
      .field("omega", &SoftDtwParams::omega, "DILATE direction [B or 1, N, M] or None (default)")
      .field("want_temporal", &SoftDtwParams::want_temporal, "also the DILATE temporal term")
      .field("save", &SoftDtwParams::save, "keep the state the backward needs")
      .field("threads", &SoftDtwParams::threads, "cpu: OpenMP threads")
      .field("engine", &SoftDtwParams::engine, "cpu: 0 by shape, 1 pairs, 2 lanes, 3 lanes with blocked costs")
      .field("r", &SoftDtwParams::r, "cpu backward: saved relative values")
      .field("rt", &SoftDtwParams::rt, "cpu backward: saved tangents")
      .field("off", &SoftDtwParams::off, "cpu backward: saved float64 diagonal offsets")
      .field("ckpt", &SoftDtwParams::ckpt, "cuda backward: checkpoints")
      .field("ckpt_t", &SoftDtwParams::ckpt_t, "cuda backward: tangent checkpoints")
      .field("base", &SoftDtwParams::base, "cuda backward: float64 diagonal offsets")
      .field("grad_value", &SoftDtwParams::grad_value, "backward: dL/dvalue [B] (None: 1)")
      .field("grad_temporal", &SoftDtwParams::grad_temporal, "backward: dL/dtemporal [B] or None")
      .field("need_dx", &SoftDtwParams::need_dx, "cpu backward: compute dL/dx (else an empty tensor)")
      .field("need_dy", &SoftDtwParams::need_dy, "cpu backward: compute dL/dy (else an empty tensor)")
      .finish();
  const std::vector<std::string> common = {"D", "x", "y", "n", "m", "gamma", "bandwidth", "omega", "want_temporal"};
  auto with = [&](std::vector<std::string> more) {
    std::vector<std::string> out = common;
    out.insert(out.end(), more.begin(), more.end());
    return out;
  };
  const auto cpu_fwd = with({"save", "threads", "engine"});
  const auto cpu_bwd =
      with({"r", "rt", "off", "grad_value", "grad_temporal", "threads", "engine", "need_dx", "need_dy"});
  const auto cuda_fwd = with({"save"});
  const auto cuda_bwd = with({"ckpt", "ckpt_t", "base", "grad_value", "grad_temporal"});
  params.def_op(m, op_args, op_params, "sdtw_cpu_forward", &sdtw_cpu_forward,
                "soft-DTW / DILATE forward (CPU): (value, temporal, r, rt, off)", cpu_fwd);
  params.def_op(m, op_args, op_params, "sdtw_cpu_backward", &sdtw_cpu_backward,
                "soft-DTW / DILATE backward (CPU): (G, dx, dy)", cpu_bwd);
#ifdef ABCC_WITH_CUDA
  params.def_op(m, op_args, op_params, "sdtw_cuda_forward", &sdtw_cuda_forward,
                "soft-DTW / DILATE forward (CUDA): (value, temporal, ckpt, ckpt_t, base)", cuda_fwd);
  params.def_op(m, op_args, op_params, "sdtw_cuda_backward", &sdtw_cuda_backward,
                "soft-DTW / DILATE backward (CUDA): (G, dx, dy)", cuda_bwd);
#else
  params.record(op_args, op_params, "sdtw_cuda_forward", cuda_fwd);
  params.record(op_args, op_params, "sdtw_cuda_backward", cuda_bwd);
#endif
}

}  // namespace binding
}  // namespace abcc
