// The one pybind11 module of abcc_fast: abcc_fast._C.
//
// Kernels live in csrc/cpu/*.cpp (plain C++ on raw pointers) and csrc/cuda/*.cu (plain CUDA with
// host launchers declared in csrc/cuda/launch.h). This file only converts tensors, checks what
// the kernels assume (device, dtype, contiguity, shapes) and calls them. User-facing validation
// with friendly messages happens in Python (abcc_fast/ops/*.py), before any of this runs.
//
// Argument lists: each op's parameter names are written once, in an `ArgNames` array below (outside
// the CUDA #ifdef, so every build has them). `def_op` derives the pybind11 annotations from that
// array and fails to compile when its length differs from the function's parameter count; the
// module exports all arrays as `_C.op_args` (CUDA ops included, also in a CPU-only build), the
// Python adapters call the ops by keyword, and tests/test_native_bindings.py binds every adapter's
// call against `_C.op_args`, so Python and C++ cannot drift apart unnoticed on a machine without a GPU.
#include <torch/extension.h>

#include <array>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include "cpu/soft_dtw.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

#ifdef ABCC_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda/launch.h"
#endif

namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

template <size_t N>
using ArgNames = std::array<const char*, N>;

// ---- argument lists, the one source of truth for C++ and Python ----
constexpr ArgNames<12> kSdtwCpuForwardArgs = {"D", "x", "y", "n", "m", "gamma", "bandwidth", "omega",
                                              "want_temporal", "save", "threads", "engine"};
constexpr ArgNames<16> kSdtwCpuBackwardArgs = {"D", "x", "y", "n", "m", "gamma", "bandwidth", "omega",
                                               "want_temporal", "r", "rt", "off", "grad_value", "grad_temporal",
                                               "threads", "engine"};
constexpr ArgNames<10> kSdtwCudaForwardArgs = {"D", "x", "y", "n", "m", "gamma", "bandwidth", "omega",
                                               "want_temporal", "save"};
constexpr ArgNames<14> kSdtwCudaBackwardArgs = {"D", "x", "y", "n", "m", "gamma", "bandwidth", "omega",
                                                "want_temporal", "ckpt", "ckpt_t", "base", "grad_value",
                                                "grad_temporal"};
constexpr ArgNames<7> kMeanflowTargetArgs = {"u_pred", "v", "du_dr", "r", "tau", "c", "p"};
constexpr ArgNames<7> kMeanflowIntegrateArgs = {"x0_solvent", "x0_sei", "u_solvent", "u_sei", "r", "taus",
                                                "project"};
constexpr ArgNames<14> kTwoStreamAttentionArgs = {"qa", "ka", "va", "qb", "kb", "vb", "tqa", "tka", "tva",
                                                  "tqb", "tkb", "tvb", "keep", "scale"};

template <typename F>
struct Arity;
template <typename R, typename... A>
struct Arity<R (*)(A...)> : std::integral_constant<size_t, sizeof...(A)> {};

template <typename F, size_t N, size_t... I>
void def_with_names(pybind11::module_& m, const char* name, F f, const char* doc, const ArgNames<N>& names,
                    std::index_sequence<I...>) {
  m.def(name, f, doc, pybind11::arg(names[I])...);
}

// m.def with keyword names from `names`; the name list must match the function's parameter count.
template <typename F, size_t N>
void def_op(pybind11::module_& m, const char* name, F f, const char* doc, const ArgNames<N>& names) {
  static_assert(Arity<F>::value == N, "def_op: the ArgNames list and the function's parameters differ in count");
  def_with_names(m, name, f, doc, names, std::make_index_sequence<N>{});
}

template <size_t N>
pybind11::tuple names_tuple(const ArgNames<N>& names) {
  pybind11::tuple out(N);
  for (size_t i = 0; i < N; ++i) out[i] = pybind11::str(names[i]);
  return out;
}

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

#define ABCC_CHECK_CPU(t) TORCH_CHECK(!(t).is_cuda(), #t " must be a CPU tensor")
#define ABCC_CHECK_CONTIG(t) TORCH_CHECK((t).is_contiguous(), #t " must be contiguous")

// ------------------------------------------------------------------------------------------
// soft-DTW / DILATE, CPU
// ------------------------------------------------------------------------------------------
template <typename T>
abcc::cpu::SdtwProblem<T> make_problem(const OptTensor& D, const OptTensor& x, const OptTensor& y,
                                       const Tensor& n, const Tensor& m, double gamma, double bandwidth,
                                       const OptTensor& omega, bool want_temporal, int64_t threads,
                                       int64_t engine) {
  abcc::cpu::SdtwProblem<T> p;
  p.threads = static_cast<int>(std::max<int64_t>(1, threads));
  TORCH_CHECK(engine >= 0 && engine <= 2, "engine must be 0 (auto), 1 (pairs) or 2 (lanes)");
  p.engine = static_cast<int>(engine);
  TORCH_CHECK(n.scalar_type() == at::kLong && m.scalar_type() == at::kLong, "lengths must be int64");
  ABCC_CHECK_CONTIG(n);
  ABCC_CHECK_CONTIG(m);
  p.n = n.data_ptr<int64_t>();
  p.m = m.data_ptr<int64_t>();
  p.gamma = gamma;
  p.bandwidth = bandwidth;
  p.want_temporal = want_temporal;
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

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> sdtw_cpu_forward(
    const OptTensor& D, const OptTensor& x, const OptTensor& y, const Tensor& n, const Tensor& m,
    double gamma, double bandwidth, const OptTensor& omega, bool want_temporal, bool save, int64_t threads,
    int64_t engine) {
  const Tensor& ref = D.has_value() ? *D : *x;
  const auto opts = ref.options();
  Tensor value, temporal, r, rt, off;
  AT_DISPATCH_FLOATING_TYPES(ref.scalar_type(), "sdtw_cpu_forward", [&] {
    auto p = make_problem<scalar_t>(D, x, y, n, m, gamma, bandwidth, omega, want_temporal, threads, engine);
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
std::tuple<Tensor, Tensor, Tensor> sdtw_cpu_backward(
    const OptTensor& D, const OptTensor& x, const OptTensor& y, const Tensor& n, const Tensor& m,
    double gamma, double bandwidth, const OptTensor& omega, bool want_temporal, const Tensor& r,
    const Tensor& rt, const Tensor& off, const OptTensor& grad_value, const OptTensor& grad_temporal,
    int64_t threads, int64_t engine) {
  const Tensor& ref = D.has_value() ? *D : *x;
  Tensor G, dx, dy;
  AT_DISPATCH_FLOATING_TYPES(ref.scalar_type(), "sdtw_cpu_backward", [&] {
    auto p = make_problem<scalar_t>(D, x, y, n, m, gamma, bandwidth, omega, want_temporal, threads, engine);
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
      G = at::empty({0}, ref.options());
      dx = at::zeros_like(*x);
      dy = at::zeros_like(*y);
    }
    {
      pybind11::gil_scoped_release nogil;
      abcc::cpu::sdtw_backward<scalar_t>(
          p, r.data_ptr<scalar_t>(), want_temporal ? rt.data_ptr<scalar_t>() : nullptr,
          off.data_ptr<double>(), gv, gt, D.has_value() ? G.data_ptr<scalar_t>() : nullptr,
          D.has_value() ? nullptr : dx.data_ptr<scalar_t>(), D.has_value() ? nullptr : dy.data_ptr<scalar_t>());
    }
  });
  return {G, dx, dy};
}

// ------------------------------------------------------------------------------------------
// CUDA ops (compiled only with a CUDA torch; see csrc/cuda/launch.h)
// ------------------------------------------------------------------------------------------
#ifdef ABCC_WITH_CUDA
// >>> soft-DTW CUDA bindings (owner: soft-DTW GPU backend)
#define ABCC_CHECK_CUDA_ON(t, dev) \
  TORCH_CHECK((t).is_cuda() && (t).device() == (dev), #t " must be a CUDA tensor on ", (dev))

template <typename T>
abcc::cuda::SdtwCudaProblem<T> make_cuda_problem(const OptTensor& D, const OptTensor& x, const OptTensor& y,
                                                 const Tensor& n, const Tensor& m, double gamma, double bandwidth,
                                                 const OptTensor& omega, bool want_temporal) {
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
  p.gamma = gamma;
  p.bandwidth = bandwidth;
  p.want_temporal = want_temporal;
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
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> sdtw_cuda_forward(
    const OptTensor& D, const OptTensor& x, const OptTensor& y, const Tensor& n, const Tensor& m,
    double gamma, double bandwidth, const OptTensor& omega, bool want_temporal, bool save) {
  TORCH_CHECK(D.has_value() || x.has_value(), "give either D or both x and y");
  const Tensor& ref = D.has_value() ? *D : *x;
  TORCH_CHECK(ref.is_cuda(), "sdtw_cuda_forward: inputs must be CUDA tensors");
  const c10::cuda::CUDAGuard guard(ref.device());
  const auto opts = ref.options();
  Tensor value, temporal, ckpt, ckpt_t, base;
  AT_DISPATCH_FLOATING_TYPES(ref.scalar_type(), "sdtw_cuda_forward", [&] {
    auto p = make_cuda_problem<scalar_t>(D, x, y, n, m, gamma, bandwidth, omega, want_temporal);
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
std::tuple<Tensor, Tensor, Tensor> sdtw_cuda_backward(
    const OptTensor& D, const OptTensor& x, const OptTensor& y, const Tensor& n, const Tensor& m,
    double gamma, double bandwidth, const OptTensor& omega, bool want_temporal, const Tensor& ckpt,
    const Tensor& ckpt_t, const Tensor& base, const OptTensor& grad_value, const OptTensor& grad_temporal) {
  TORCH_CHECK(D.has_value() || x.has_value(), "give either D or both x and y");
  const Tensor& ref = D.has_value() ? *D : *x;
  TORCH_CHECK(ref.is_cuda(), "sdtw_cuda_backward: inputs must be CUDA tensors");
  const c10::cuda::CUDAGuard guard(ref.device());
  Tensor G, dx, dy;
  AT_DISPATCH_FLOATING_TYPES(ref.scalar_type(), "sdtw_cuda_backward", [&] {
    auto p = make_cuda_problem<scalar_t>(D, x, y, n, m, gamma, bandwidth, omega, want_temporal);
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
// <<< soft-DTW CUDA bindings

// >>> MeanFlow CUDA bindings (owner: MeanFlow ops)
// The Python side (abcc_fast/ops/meanflow.py) validates shapes with friendly messages and passes
// contiguous float32 CUDA tensors; these checks guard the kernels' assumptions.
void mf_check(const Tensor& t, const Tensor& ref, const char* name) {
  TORCH_CHECK(t.is_cuda(), "meanflow: ", name, " must be a CUDA tensor");
  TORCH_CHECK(t.device() == ref.device(), "meanflow: ", name, " is on ", t.device(), " but the inputs on ", ref.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat, "meanflow: ", name, " must be float32, got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), "meanflow: ", name, " must be contiguous");
}

// Returns [u_tgt [B, W], err [B], weight [B]].
std::vector<Tensor> meanflow_target_cuda(const Tensor& u_pred, const Tensor& v, const Tensor& du_dr, const Tensor& r,
                                         const Tensor& tau, double c, double p) {
  TORCH_CHECK(u_pred.dim() == 2, "meanflow_target: u_pred must be [B, W], got ", u_pred.sizes());
  const int64_t B = u_pred.size(0), W = u_pred.size(1);
  TORCH_CHECK(W >= 1, "meanflow_target: W must be >= 1");
  TORCH_CHECK(c > 0, "meanflow_target: c must be > 0, got ", c);
  mf_check(u_pred, u_pred, "u_pred");
  mf_check(v, u_pred, "v");
  mf_check(du_dr, u_pred, "du_dr");
  mf_check(r, u_pred, "r");
  mf_check(tau, u_pred, "tau");
  TORCH_CHECK(v.sizes() == u_pred.sizes() && du_dr.sizes() == u_pred.sizes(),
              "meanflow_target: v ", v.sizes(), " and du_dr ", du_dr.sizes(), " must match u_pred ", u_pred.sizes());
  TORCH_CHECK(r.dim() == 1 && r.size(0) == B && tau.dim() == 1 && tau.size(0) == B,
              "meanflow_target: r and tau must be [B] = [", B, "], got ", r.sizes(), " and ", tau.sizes());
  const c10::cuda::CUDAGuard guard(u_pred.device());
  Tensor u_tgt = at::empty_like(u_pred);
  Tensor err = at::empty({B}, u_pred.options());
  Tensor weight = at::empty({B}, u_pred.options());
  const cudaError_t e = abcc::cuda::meanflow_target_cuda(
      u_pred.data_ptr<float>(), v.data_ptr<float>(), du_dr.data_ptr<float>(), r.data_ptr<float>(),
      tau.data_ptr<float>(), u_tgt.data_ptr<float>(), err.data_ptr<float>(), weight.data_ptr<float>(), B, W,
      static_cast<float>(c), static_cast<float>(p), c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(e == cudaSuccess, "meanflow_target: CUDA launch failed: ", cudaGetErrorString(e));
  return {u_tgt, err, weight};
}

// Returns [frames, solvent, sei], each [B, T, W]. x0_sei may be None (a zero SEI stream at r).
std::vector<Tensor> meanflow_integrate_cuda(const Tensor& x0_solvent, const OptTensor& x0_sei, const Tensor& u_solvent,
                                            const Tensor& u_sei, const Tensor& r, const Tensor& taus, bool project) {
  TORCH_CHECK(x0_solvent.dim() == 2 && u_solvent.dim() == 3,
              "meanflow_integrate: x0_solvent must be [B, W] and u_solvent [B, T, W], got ", x0_solvent.sizes(),
              " and ", u_solvent.sizes());
  const int64_t B = u_solvent.size(0), T = u_solvent.size(1), W = u_solvent.size(2);
  mf_check(x0_solvent, x0_solvent, "x0_solvent");
  mf_check(u_solvent, x0_solvent, "u_solvent");
  mf_check(u_sei, x0_solvent, "u_sei");
  mf_check(r, x0_solvent, "r");
  mf_check(taus, x0_solvent, "taus");
  TORCH_CHECK(x0_solvent.size(0) == B && x0_solvent.size(1) == W, "meanflow_integrate: x0_solvent ",
              x0_solvent.sizes(), " does not match u_solvent ", u_solvent.sizes());
  TORCH_CHECK(u_sei.sizes() == u_solvent.sizes(), "meanflow_integrate: u_sei ", u_sei.sizes(),
              " must match u_solvent ", u_solvent.sizes());
  TORCH_CHECK(r.dim() == 1 && r.size(0) == B, "meanflow_integrate: r must be [B] = [", B, "], got ", r.sizes());
  TORCH_CHECK(taus.dim() == 2 && taus.size(0) == B && taus.size(1) == T,
              "meanflow_integrate: taus must be [B, T] = [", B, ", ", T, "], got ", taus.sizes());
  const float* z0 = nullptr;
  if (x0_sei.has_value()) {
    mf_check(*x0_sei, x0_solvent, "x0_sei");
    TORCH_CHECK(x0_sei->sizes() == x0_solvent.sizes(), "meanflow_integrate: x0_sei ", x0_sei->sizes(),
                " must match x0_solvent ", x0_solvent.sizes());
    z0 = x0_sei->data_ptr<float>();
  }
  const c10::cuda::CUDAGuard guard(x0_solvent.device());
  Tensor frames = at::empty_like(u_solvent);
  Tensor solvent = at::empty_like(u_solvent);
  Tensor sei = at::empty_like(u_solvent);
  const cudaError_t e = abcc::cuda::meanflow_integrate_cuda(
      x0_solvent.data_ptr<float>(), z0, u_solvent.data_ptr<float>(), u_sei.data_ptr<float>(), r.data_ptr<float>(),
      taus.data_ptr<float>(), frames.data_ptr<float>(), solvent.data_ptr<float>(), sei.data_ptr<float>(), B, T, W,
      project, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(e == cudaSuccess, "meanflow_integrate: CUDA launch failed: ", cudaGetErrorString(e));
  return {frames, solvent, sei};
}
// <<< MeanFlow CUDA bindings

// >>> two-stream attention CUDA bindings (owner: attention op)
// Forward (tangents absent) or forward + JVP (all six tangents given) in one launch.
// Returns [oa, ob, lse] or [oa, ob, lse, toa, tob]; lse is fp32 [B, H, Na + Nb] (natural log).
std::vector<Tensor> two_stream_attention_cuda_forward(
    const Tensor& qa, const Tensor& ka, const Tensor& va, const Tensor& qb, const Tensor& kb, const Tensor& vb,
    const OptTensor& tqa, const OptTensor& tka, const OptTensor& tva, const OptTensor& tqb, const OptTensor& tkb,
    const OptTensor& tvb, const OptTensor& keep, double scale) {
  TORCH_CHECK(qa.dim() == 4 && qb.dim() == 4, "two_stream_attention: qa, qb must be [B, H, N, D]");
  const int64_t B = qa.size(0), H = qa.size(1), Na = qa.size(2), D = qa.size(3), Nb = qb.size(2);
  TORCH_CHECK(D == 32 || D == 64 || D == 128, "two_stream_attention: CUDA kernel needs D in {32, 64, 128}, got ", D);
  TORCH_CHECK(B * H <= 65535, "two_stream_attention: CUDA kernel needs B * H <= 65535, got ", B * H);
  int dtype = abcc::cuda::kTsaFloat32;
  switch (qa.scalar_type()) {
    case at::kFloat: dtype = abcc::cuda::kTsaFloat32; break;
    case at::kHalf: dtype = abcc::cuda::kTsaFloat16; break;
    case at::kBFloat16: dtype = abcc::cuda::kTsaBFloat16; break;
    default: TORCH_CHECK(false, "two_stream_attention: CUDA kernel takes float32, float16 or bfloat16, got ",
                         qa.scalar_type());
  }
  auto check = [&](const Tensor& t, int64_t n, const char* name) {
    TORCH_CHECK(t.is_cuda(), "two_stream_attention: ", name, " must be a CUDA tensor");
    TORCH_CHECK(t.device() == qa.device(), "two_stream_attention: ", name, " is on another device than qa");
    TORCH_CHECK(t.scalar_type() == qa.scalar_type(), "two_stream_attention: ", name, " has dtype ",
                t.scalar_type(), ", qa has ", qa.scalar_type());
    TORCH_CHECK(t.is_contiguous(), "two_stream_attention: ", name, " must be contiguous");
    TORCH_CHECK(t.dim() == 4 && t.size(0) == B && t.size(1) == H && t.size(2) == n && t.size(3) == D,
                "two_stream_attention: ", name, " has shape ", t.sizes(), ", expected [", B, ", ", H, ", ", n, ", ",
                D, "]");
  };
  check(qa, Na, "qa");
  check(ka, Na, "ka");
  check(va, Na, "va");
  check(qb, Nb, "qb");
  check(kb, Nb, "kb");
  check(vb, Nb, "vb");
  const int given = int(tqa.has_value()) + int(tka.has_value()) + int(tva.has_value()) + int(tqb.has_value()) +
                    int(tkb.has_value()) + int(tvb.has_value());
  TORCH_CHECK(given == 0 || given == 6, "two_stream_attention: give all six tangents or none, got ", given);
  const bool tangent = given == 6;
  if (tangent) {
    check(*tqa, Na, "tqa");
    check(*tka, Na, "tka");
    check(*tva, Na, "tva");
    check(*tqb, Nb, "tqb");
    check(*tkb, Nb, "tkb");
    check(*tvb, Nb, "tvb");
  }
  if (keep.has_value()) {
    TORCH_CHECK(keep->is_cuda() && keep->device() == qa.device(), "two_stream_attention: keep must be on qa's device");
    TORCH_CHECK(keep->scalar_type() == at::kChar, "two_stream_attention: keep must be int8, got ", keep->scalar_type());
    TORCH_CHECK(keep->is_contiguous(), "two_stream_attention: keep must be contiguous");
    TORCH_CHECK(keep->dim() == 2 && keep->size(0) == B && keep->size(1) == Na + Nb,
                "two_stream_attention: keep must be [B, Na + Nb], got ", keep->sizes());
  }

  c10::cuda::CUDAGuard guard(qa.device());
  Tensor oa = at::empty_like(qa);
  Tensor ob = at::empty_like(qb);
  Tensor lse = at::empty({B, H, Na + Nb}, qa.options().dtype(at::kFloat));
  Tensor toa, tob;
  abcc::cuda::TwoStreamAttentionArgs args;
  args.qa = qa.data_ptr();
  args.ka = ka.data_ptr();
  args.va = va.data_ptr();
  args.qb = qb.data_ptr();
  args.kb = kb.data_ptr();
  args.vb = vb.data_ptr();
  args.oa = oa.data_ptr();
  args.ob = ob.data_ptr();
  if (tangent) {
    toa = at::empty_like(qa);
    tob = at::empty_like(qb);
    args.tqa = tqa->data_ptr();
    args.tka = tka->data_ptr();
    args.tva = tva->data_ptr();
    args.tqb = tqb->data_ptr();
    args.tkb = tkb->data_ptr();
    args.tvb = tvb->data_ptr();
    args.toa = toa.data_ptr();
    args.tob = tob.data_ptr();
  }
  args.lse = lse.data_ptr<float>();
  args.keep = keep.has_value() ? keep->data_ptr<int8_t>() : nullptr;
  args.B = B;
  args.H = H;
  args.Na = Na;
  args.Nb = Nb;
  args.D = D;
  args.scale = static_cast<float>(scale);
  args.dtype = dtype;
  const cudaError_t err = abcc::cuda::two_stream_attention_forward(args, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "two_stream_attention: CUDA forward launch failed: ", cudaGetErrorString(err));
  if (tangent) return {oa, ob, lse, toa, tob};
  return {oa, ob, lse};
}
// <<< two-stream attention CUDA bindings
#endif

bool has_cuda() {
#ifdef ABCC_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string cpu_arch() {
#if defined(__AVX512F__)
  return "AVX-512";
#elif defined(__AVX2__)
  return "AVX2";
#elif defined(__AVX__)
  return "AVX";
#elif defined(__ARM_NEON)
  return "NEON";
#else
  return "generic";
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "abcc_fast native kernels (C++/OpenMP and, when built with it, CUDA)";
  m.def("omp_max_threads", &abcc::cpu::omp_max_threads, "OpenMP threads the CPU kernels use");
  m.def("cpu_arch", &cpu_arch, "SIMD level the CPU kernels were compiled for");
  m.def("has_cuda", &has_cuda, "whether this build contains the CUDA kernels");
  def_op(m, "sdtw_cpu_forward", &sdtw_cpu_forward, "soft-DTW / DILATE forward (CPU)", kSdtwCpuForwardArgs);
  def_op(m, "sdtw_cpu_backward", &sdtw_cpu_backward, "soft-DTW / DILATE backward (CPU)", kSdtwCpuBackwardArgs);
  pybind11::dict op_args;
  op_args["sdtw_cpu_forward"] = names_tuple(kSdtwCpuForwardArgs);
  op_args["sdtw_cpu_backward"] = names_tuple(kSdtwCpuBackwardArgs);
  op_args["sdtw_cuda_forward"] = names_tuple(kSdtwCudaForwardArgs);
  op_args["sdtw_cuda_backward"] = names_tuple(kSdtwCudaBackwardArgs);
  op_args["meanflow_target_cuda"] = names_tuple(kMeanflowTargetArgs);
  op_args["meanflow_integrate_cuda"] = names_tuple(kMeanflowIntegrateArgs);
  op_args["two_stream_attention_cuda_forward"] = names_tuple(kTwoStreamAttentionArgs);
  m.attr("op_args") = op_args;
#ifdef ABCC_WITH_CUDA
  // >>> CUDA module definitions (each owner adds its def_op lines inside its own block)
  // >>> soft-DTW CUDA defs
  def_op(m, "sdtw_cuda_forward", &sdtw_cuda_forward, "soft-DTW / DILATE forward (CUDA)", kSdtwCudaForwardArgs);
  def_op(m, "sdtw_cuda_backward", &sdtw_cuda_backward, "soft-DTW / DILATE backward (CUDA)", kSdtwCudaBackwardArgs);
  // <<< soft-DTW CUDA defs
  // >>> MeanFlow CUDA defs
  def_op(m, "meanflow_target_cuda", &meanflow_target_cuda,
         "MeanFlow target, squared error and adaptive weight (CUDA)", kMeanflowTargetArgs);
  def_op(m, "meanflow_integrate_cuda", &meanflow_integrate_cuda,
         "MeanFlow all-frames integration: jump per stream, stream sum, SEI projection (CUDA)",
         kMeanflowIntegrateArgs);
  // <<< MeanFlow CUDA defs
  // >>> two-stream attention CUDA defs
  def_op(m, "two_stream_attention_cuda_forward", &two_stream_attention_cuda_forward,
         "two-stream joint attention forward (+ JVP when the six tangents are given), CUDA", kTwoStreamAttentionArgs);
  // <<< two-stream attention CUDA defs
#endif
}
