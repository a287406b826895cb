// Host-side launchers of the soft-DTW / DILATE CUDA kernels (csrc/soft_dtw/soft_dtw.cu).
//
// The .cu files are plain CUDA: raw pointers, sizes and a cudaStream_t, no torch headers. That is
// what lets CI compile every .cu file with nvcc even where torch is a CPU build (the CMake target
// abcc_cuda_check), and keeps tensor handling in the op's binding (csrc/soft_dtw/binding.cpp).
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

namespace abcc {
namespace cuda {

// Conventions of csrc/soft_dtw/soft_dtw.h; every pointer is device memory (n, m: int64 [B] on the device).
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

}  // namespace cuda
}  // namespace abcc
