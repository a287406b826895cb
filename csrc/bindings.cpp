// The one pybind11 module of abcc_fast: abcc_fast._C.
//
// Kernels live in csrc/cpu/*.cpp (plain C++ on raw pointers) and csrc/cuda/*.cu (plain CUDA with
// host launchers declared in csrc/cuda/launch.h). This file only converts tensors, checks what
// the kernels assume (device, dtype, contiguity, shapes) and calls them. User-facing validation
// with friendly messages happens in Python (abcc_fast/ops/*.py), before any of this runs.
#include <torch/extension.h>

#include <optional>
#include <string>
#include <tuple>

#include "cpu/soft_dtw.h"

#ifdef ABCC_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda/launch.h"
#endif

namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

#define ABCC_CHECK_CPU(t) TORCH_CHECK(!(t).is_cuda(), #t " must be a CPU tensor")
#define ABCC_CHECK_CONTIG(t) TORCH_CHECK((t).is_contiguous(), #t " must be contiguous")

// ------------------------------------------------------------------------------------------
// soft-DTW / DILATE, CPU
// ------------------------------------------------------------------------------------------
template <typename T>
abcc::cpu::SdtwProblem<T> make_problem(const OptTensor& D, const OptTensor& x, const OptTensor& y,
                                       const Tensor& n, const Tensor& m, double gamma, double bandwidth,
                                       const OptTensor& omega, bool want_temporal) {
  abcc::cpu::SdtwProblem<T> p;
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
    TORCH_CHECK(x->dim() == 2 && y->dim() == 2 && x->size(0) == y->size(0), "x, y must be [B, N], [B, M]");
    p.B = x->size(0);
    p.N = x->size(1);
    p.M = y->size(1);
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
    double gamma, double bandwidth, const OptTensor& omega, bool want_temporal, bool save) {
  const Tensor& ref = D.has_value() ? *D : *x;
  const auto opts = ref.options();
  Tensor value, temporal, r, rt, off;
  AT_DISPATCH_FLOATING_TYPES(ref.scalar_type(), "sdtw_cpu_forward", [&] {
    auto p = make_problem<scalar_t>(D, x, y, n, m, gamma, bandwidth, omega, want_temporal);
    value = at::empty({p.B}, opts);
    temporal = want_temporal ? at::empty({p.B}, opts) : at::zeros({p.B}, opts);
    if (save) {
      r = at::empty({p.B, p.N * p.M}, opts);
      rt = want_temporal ? at::empty({p.B, p.N * p.M}, opts) : at::empty({0}, opts);
      off = at::empty({p.B, p.N + p.M - 1}, opts.dtype(at::kDouble));
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
    const Tensor& rt, const Tensor& off, const OptTensor& grad_value, const OptTensor& grad_temporal) {
  const Tensor& ref = D.has_value() ? *D : *x;
  Tensor G, dx, dy;
  AT_DISPATCH_FLOATING_TYPES(ref.scalar_type(), "sdtw_cpu_backward", [&] {
    auto p = make_problem<scalar_t>(D, x, y, n, m, gamma, bandwidth, omega, want_temporal);
    TORCH_CHECK(r.numel() == p.B * p.N * p.M, "saved R has the wrong size (forward ran without save?)");
    TORCH_CHECK(!want_temporal || rt.numel() == p.B * p.N * p.M, "saved tangent has the wrong size");
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
// <<< soft-DTW CUDA bindings

// >>> two-stream attention CUDA bindings (owner: attention op)
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
  m.def("sdtw_cpu_forward", &sdtw_cpu_forward, "soft-DTW / DILATE forward (CPU)",
        pybind11::arg("D"), pybind11::arg("x"), pybind11::arg("y"), pybind11::arg("n"), pybind11::arg("m"),
        pybind11::arg("gamma"), pybind11::arg("bandwidth"), pybind11::arg("omega"),
        pybind11::arg("want_temporal"), pybind11::arg("save"));
  m.def("sdtw_cpu_backward", &sdtw_cpu_backward, "soft-DTW / DILATE backward (CPU)",
        pybind11::arg("D"), pybind11::arg("x"), pybind11::arg("y"), pybind11::arg("n"), pybind11::arg("m"),
        pybind11::arg("gamma"), pybind11::arg("bandwidth"), pybind11::arg("omega"),
        pybind11::arg("want_temporal"), pybind11::arg("r"), pybind11::arg("rt"), pybind11::arg("off"),
        pybind11::arg("grad_value"), pybind11::arg("grad_temporal"));
#ifdef ABCC_WITH_CUDA
  // >>> CUDA module definitions (each owner adds its m.def lines inside its own block)
  // >>> soft-DTW CUDA defs
  // <<< soft-DTW CUDA defs
  // >>> two-stream attention CUDA defs
  // <<< two-stream attention CUDA defs
#endif
}
