// Host-side launchers of the CUDA kernels in csrc/cuda/*.cu.
//
// The .cu files are plain CUDA: raw pointers, sizes and a cudaStream_t, no torch headers. That is
// what lets CI compile every .cu file with nvcc even where torch is a CPU build (the CMake target
// abcc_cuda_check), and keeps tensor handling in csrc/bindings.cpp.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

namespace abcc {
namespace cuda {

// >>> soft-DTW launchers (csrc/cuda/soft_dtw.cu)
// Conventions of csrc/cpu/soft_dtw.h; every pointer is device memory (n, m: int64 [B] on the device).
template <typename T>
struct SdtwCudaProblem {
  int64_t B = 0, N = 0, M = 0;      // batch and padded lengths
  const int64_t* n = nullptr;       // [B] lengths of the first sequence
  const int64_t* m = nullptr;       // [B] lengths of the second
  double gamma = 1.0;
  double bandwidth = -1.0;          // < 0: no band
  const T* D = nullptr;             // [B, N, M] cost matrix, or null with x, y
  const T* x = nullptr;             // [B, N] univariate: cost (x_i - y_j)^2 on the fly
  const T* y = nullptr;             // [B, M]
  const T* omega = nullptr;         // [*, N, M] DILATE direction; null: ((i+1)/n - (j+1)/m)^2
  int64_t omega_batch_stride = 0;   // 0: one Omega shared by the batch
  bool want_temporal = false;
};

// Checkpoint interval S (diagonals): the forward saves diagonals sS-2, sS-1 for s >= 1.
constexpr int kSdtwSegment = 128;
// ceil((N+M-1)/S): checkpoint slots per pair; ckpt buffers are [B, segments, 2, N].
int64_t sdtw_cuda_num_segments(int64_t N, int64_t M);
// Dynamic shared memory one block needs (the launchers fail with cudaErrorInvalidConfiguration
// when it exceeds the device's opt-in limit: about N <= 4100 for the DILATE backward in float32).
size_t sdtw_cuda_shared_bytes(int64_t N, int64_t M, bool want_temporal, bool univariate, bool backward,
                              size_t elem_size);

// Forward: value [B], temporal [B] (want_temporal). With ckpt non-null (training) also writes
// ckpt / ckpt_t [B, segments, 2, N] (ckpt_t only with want_temporal) and base [B, N+M-1] (float64).
template <typename T>
cudaError_t sdtw_cuda_forward(const SdtwCudaProblem<T>& p, T* value, T* temporal, T* ckpt, T* ckpt_t,
                              double* base, cudaStream_t stream);

// Backward from the checkpoints: G = gv E + gt E' into G [B, N, M] (zeroed by the caller), or in
// univariate mode (G null) dL/dx, dL/dy into dx [B, N], dy [B, M] (zeroed by the caller).
// gv null: gv = 1; gt may be null. seg / seg_t: workspace [B, S+2, N+1] (seg_t with want_temporal).
template <typename T>
cudaError_t sdtw_cuda_backward(const SdtwCudaProblem<T>& p, const T* ckpt, const T* ckpt_t, const double* base,
                               const T* gv, const T* gt, T* seg, T* seg_t, T* G, T* dx, T* dy,
                               cudaStream_t stream);
// <<< soft-DTW launchers

// >>> MeanFlow launchers (csrc/cuda/meanflow.cu)
// float32, contiguous, device memory. Target: u_pred, v, du_dr, u_tgt [B, W]; r, tau, err, weight [B].
cudaError_t meanflow_target_cuda(const float* u_pred, const float* v, const float* du_dr, const float* r,
                                 const float* tau, float* u_tgt, float* err, float* weight, int64_t B, int64_t W,
                                 float c, float p, cudaStream_t stream);
// Integrate: x0_solvent [B, W], x0_sei [B, W] or null (0), u_solvent, u_sei, frames, solvent, sei
// [B, T, W], r [B], taus [B, T].
cudaError_t meanflow_integrate_cuda(const float* x0_solvent, const float* x0_sei, const float* u_solvent,
                                    const float* u_sei, const float* r, const float* taus, float* frames,
                                    float* solvent, float* sei, int64_t B, int64_t T, int64_t W, bool project,
                                    cudaStream_t stream);
// <<< MeanFlow launchers

// >>> two-stream attention launchers (csrc/cuda/two_stream_attention.cu)
enum TsaDtype : int { kTsaFloat32 = 0, kTsaFloat16 = 1, kTsaBFloat16 = 2 };

// Contiguous [B, H, Na, D] (stream a) and [B, H, Nb, D] (stream b) device buffers of one dtype.
// Tangent pointers (tqa ... tvb, toa, tob) all null for the primal only, all set for primal + JVP.
struct TwoStreamAttentionArgs {
  const void* qa = nullptr;
  const void* ka = nullptr;
  const void* va = nullptr;
  const void* qb = nullptr;
  const void* kb = nullptr;
  const void* vb = nullptr;
  const void* tqa = nullptr;
  const void* tka = nullptr;
  const void* tva = nullptr;
  const void* tqb = nullptr;
  const void* tkb = nullptr;
  const void* tvb = nullptr;
  void* oa = nullptr;
  void* ob = nullptr;
  void* toa = nullptr;
  void* tob = nullptr;
  float* lse = nullptr;         // [B, H, Na + Nb], natural log; +inf on rows without kept keys
  const int8_t* keep = nullptr;  // [B, Na + Nb], 1 = keep; null = keep all
  int64_t B = 0, H = 0, Na = 0, Nb = 0, D = 0;  // D in {32, 64, 128}; B * H <= 65535
  float scale = 1.f;
  int dtype = kTsaFloat32;
};

// Forward (and JVP) in one launch on `stream`. Returns the launch error (cudaSuccess if none).
cudaError_t two_stream_attention_forward(const TwoStreamAttentionArgs& args, cudaStream_t stream);
// <<< two-stream attention launchers

}  // namespace cuda
}  // namespace abcc
