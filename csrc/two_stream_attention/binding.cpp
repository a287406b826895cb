// Two-stream joint attention bindings: TwoStreamAttentionParams (the one argument contract, see
// csrc/common/binding.h) and, in a CUDA build, two_stream_attention_cuda_forward
// (csrc/two_stream_attention/two_stream_attention.cu).
#include "common/binding.h"

#ifdef ABCC_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "two_stream_attention/two_stream_attention_cuda.h"
#endif

namespace abcc {
namespace binding {
namespace {

// The arguments of the two-stream attention entry point: streams a [B, H, Na, D], b [B, H, Nb, D].
struct TwoStreamAttentionParams {
  Tensor qa, ka, va, qb, kb, vb;
  OptTensor tqa, tka, tva, tqb, tkb, tvb;  // all six (forward + JVP) or none
  OptTensor keep;                          // int8 [B, Na + Nb], 1 = keep; None = keep all
  double scale = 1.0;
};

#ifdef ABCC_WITH_CUDA
// Forward (tangents absent) or forward + JVP (all six tangents given) in one launch.
// Returns [oa, ob, lse] or [oa, ob, lse, toa, tob]; lse is fp32 [B, H, Na + Nb] (natural log).
std::vector<Tensor> two_stream_attention_cuda_forward(const TwoStreamAttentionParams& a) {
  const Tensor &qa = a.qa, &ka = a.ka, &va = a.va, &qb = a.qb, &kb = a.kb, &vb = a.vb;
  const OptTensor &tqa = a.tqa, &tka = a.tka, &tva = a.tva, &tqb = a.tqb, &tkb = a.tkb, &tvb = a.tvb, &keep = a.keep;
  const double scale = a.scale;
  for (const Tensor* t : {&qa, &ka, &va, &qb, &kb, &vb})
    TORCH_CHECK(t->defined(), "two_stream_attention: qa, ka, va, qb, kb and vb are required");
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
#endif

}  // namespace

void bind_two_stream_attention(py::module_& m, py::dict& op_args, py::dict& op_params) {
  ParamsType<TwoStreamAttentionParams> params(m, "TwoStreamAttentionParams",
                                              "Arguments of the two-stream attention entry point");
  params.field("qa", &TwoStreamAttentionParams::qa, "stream a queries [B, H, Na, D]")
      .field("ka", &TwoStreamAttentionParams::ka, "stream a keys")
      .field("va", &TwoStreamAttentionParams::va, "stream a values")
      .field("qb", &TwoStreamAttentionParams::qb, "stream b queries [B, H, Nb, D]")
      .field("kb", &TwoStreamAttentionParams::kb, "stream b keys")
      .field("vb", &TwoStreamAttentionParams::vb, "stream b values")
      .field("tqa", &TwoStreamAttentionParams::tqa, "tangent of qa or None")
      .field("tka", &TwoStreamAttentionParams::tka, "tangent of ka or None")
      .field("tva", &TwoStreamAttentionParams::tva, "tangent of va or None")
      .field("tqb", &TwoStreamAttentionParams::tqb, "tangent of qb or None")
      .field("tkb", &TwoStreamAttentionParams::tkb, "tangent of kb or None")
      .field("tvb", &TwoStreamAttentionParams::tvb, "tangent of vb or None")
      .field("keep", &TwoStreamAttentionParams::keep, "int8 [B, Na + Nb] key mask or None")
      .field("scale", &TwoStreamAttentionParams::scale, "logit scale")
      .finish();
  const std::vector<std::string> used = {"qa", "ka", "va", "qb", "kb", "vb", "tqa", "tka", "tva",
                                         "tqb", "tkb", "tvb", "keep", "scale"};
#ifdef ABCC_WITH_CUDA
  params.def_op(m, op_args, op_params, "two_stream_attention_cuda_forward", &two_stream_attention_cuda_forward,
                "two-stream joint attention forward (+ JVP when the six tangents are given), CUDA: "
                "[oa, ob, lse] or [oa, ob, lse, toa, tob]", used);
#else
  params.record(op_args, op_params, "two_stream_attention_cuda_forward", used);
#endif
}

}  // namespace binding
}  // namespace abcc
