// Host-side launchers of the MeanFlow CUDA kernels (csrc/meanflow/meanflow.cu).
//
// The .cu files are plain CUDA: raw pointers, sizes and a cudaStream_t, no torch headers. That is
// what lets CI compile every .cu file with nvcc even where torch is a CPU build (the CMake target
// abcc_cuda_check), and keeps tensor handling in the op's binding (csrc/meanflow/binding.cpp).
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

namespace abcc {
namespace cuda {

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

}  // namespace cuda
}  // namespace abcc
