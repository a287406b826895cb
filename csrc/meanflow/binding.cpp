// MeanFlow bindings: MeanflowParams (the one argument contract, see csrc/common/binding.h) and,
// in a CUDA build, meanflow_target_cuda / meanflow_integrate_cuda (csrc/meanflow/meanflow.cu).
// The Python side (abcc_fast/ops/meanflow.py) validates shapes with friendly messages and passes
// contiguous float32 CUDA tensors; the checks here guard the kernels' assumptions.
#include "common/binding.h"

#ifdef ABCC_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "meanflow/meanflow_cuda.h"
#endif

namespace abcc {
namespace binding {
namespace {

// The arguments of the MeanFlow entry points (target: u_pred ... p; integrate: x0_solvent ... project;
// r is the second time of both).
struct MeanflowParams {
  Tensor u_pred, v, du_dr, r, tau;   // target: [B, W] x 3, r and tau [B]
  double c = 1.0, p = 1.0;           // target: adaptive weight constants
  Tensor x0_solvent;                 // integrate: [B, W]
  OptTensor x0_sei;                  // integrate: [B, W] or None (zero SEI stream at r)
  Tensor u_solvent, u_sei, taus;     // integrate: [B, T, W] x 2, [B, T]
  bool project = false;              // integrate: SEI projection
};

#ifdef ABCC_WITH_CUDA
void mf_check(const Tensor& t, const Tensor& ref, const char* name) {
  TORCH_CHECK(t.is_cuda(), "meanflow: ", name, " must be a CUDA tensor");
  TORCH_CHECK(t.device() == ref.device(), "meanflow: ", name, " is on ", t.device(), " but the inputs on ", ref.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat, "meanflow: ", name, " must be float32, got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), "meanflow: ", name, " must be contiguous");
}

// Returns [u_tgt [B, W], err [B], weight [B]].
std::vector<Tensor> meanflow_target_cuda(const MeanflowParams& a) {
  const Tensor &u_pred = a.u_pred, &v = a.v, &du_dr = a.du_dr, &r = a.r, &tau = a.tau;
  const double c = a.c, p = a.p;
  for (const Tensor* t : {&u_pred, &v, &du_dr, &r, &tau})
    TORCH_CHECK(t->defined(), "meanflow_target: u_pred, v, du_dr, r and tau are required");
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
std::vector<Tensor> meanflow_integrate_cuda(const MeanflowParams& a) {
  const Tensor &x0_solvent = a.x0_solvent, &u_solvent = a.u_solvent, &u_sei = a.u_sei, &r = a.r, &taus = a.taus;
  const OptTensor& x0_sei = a.x0_sei;
  const bool project = a.project;
  for (const Tensor* t : {&x0_solvent, &u_solvent, &u_sei, &r, &taus})
    TORCH_CHECK(t->defined(), "meanflow_integrate: x0_solvent, u_solvent, u_sei, r and taus are required");
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
#endif

}  // namespace

void bind_meanflow(py::module_& m, py::dict& op_args, py::dict& op_params) {
  ParamsType<MeanflowParams> params(m, "MeanflowParams", "Arguments of the MeanFlow entry points");
  params.field("u_pred", &MeanflowParams::u_pred, "target: predicted average velocity [B, W]")
      .field("v", &MeanflowParams::v, "target: instantaneous velocity [B, W]")
      .field("du_dr", &MeanflowParams::du_dr, "target: total derivative of u along r [B, W]")
      .field("r", &MeanflowParams::r, "the second time [B]")
      .field("tau", &MeanflowParams::tau, "target: the first time [B]")
      .field("c", &MeanflowParams::c, "target: adaptive weight constant c")
      .field("p", &MeanflowParams::p, "target: adaptive weight power p")
      .field("x0_solvent", &MeanflowParams::x0_solvent, "integrate: solvent stream at r [B, W]")
      .field("x0_sei", &MeanflowParams::x0_sei, "integrate: SEI stream at r [B, W] or None")
      .field("u_solvent", &MeanflowParams::u_solvent, "integrate: solvent velocities [B, T, W]")
      .field("u_sei", &MeanflowParams::u_sei, "integrate: SEI velocities [B, T, W]")
      .field("taus", &MeanflowParams::taus, "integrate: frame times [B, T]")
      .field("project", &MeanflowParams::project, "integrate: project the SEI stream")
      .finish();
  const std::vector<std::string> target = {"u_pred", "v", "du_dr", "r", "tau", "c", "p"};
  const std::vector<std::string> integrate = {"x0_solvent", "x0_sei", "u_solvent", "u_sei", "r", "taus", "project"};
#ifdef ABCC_WITH_CUDA
  params.def_op(m, op_args, op_params, "meanflow_target_cuda", &meanflow_target_cuda,
                "MeanFlow target, squared error and adaptive weight (CUDA): [u_tgt, err, weight]", target);
  params.def_op(m, op_args, op_params, "meanflow_integrate_cuda", &meanflow_integrate_cuda,
                "MeanFlow all-frames integration: jump per stream, stream sum, SEI projection (CUDA): "
                "[frames, solvent, sei]", integrate);
#else
  params.record(op_args, op_params, "meanflow_target_cuda", target);
  params.record(op_args, op_params, "meanflow_integrate_cuda", integrate);
#endif
}

}  // namespace binding
}  // namespace abcc
