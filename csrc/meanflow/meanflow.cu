// MeanFlow helpers in plain CUDA (launchers declared in csrc/meanflow/meanflow_cuda.h; tensor wrappers in
// csrc/meanflow/binding.cpp; Python entry abcc_fast/ops/meanflow.py, which documents the equations).
//
// meanflow_target:    one block per sample row b:
//                       u_tgt = v + (tau_b - r_b) du_dr            (written)
//                       err_b = mean_w (u_pred - u_tgt)^2           (block reduction)
//                       w_b   = (err_b + c)^-p                      (adaptive weight)
// meanflow_integrate: one thread per (b, k, w) element, grid-stride:
//                       y = y_r + (tau_bk - r_b) u_solvent,  z = z_r + (tau_bk - r_b) u_sei,
//                       z = max(z, 0) (project),  x = y + z.
// float32 throughout (the Python side casts), contiguous row-major tensors.
#include <cstdint>

#include <cuda_runtime.h>

#include "meanflow/meanflow_cuda.h"

namespace abcc {
namespace cuda {
namespace {

constexpr int kTargetThreads = 256;
constexpr int kIntegrateThreads = 256;

__inline__ __device__ float warp_sum(float x) {
  for (int off = 16; off > 0; off >>= 1) x += __shfl_down_sync(0xffffffffu, x, off);
  return x;
}

__global__ void meanflow_target_kernel(const float* __restrict__ u_pred, const float* __restrict__ v,
                                       const float* __restrict__ du_dr, const float* __restrict__ r,
                                       const float* __restrict__ tau, float* __restrict__ u_tgt,
                                       float* __restrict__ err, float* __restrict__ weight, int64_t W, float c,
                                       float p) {
  const int64_t row = blockIdx.x;
  const float dt = tau[row] - r[row];
  const int64_t base = row * W;
  float acc = 0.f;
  for (int64_t i = threadIdx.x; i < W; i += blockDim.x) {
    const float t = fmaf(dt, du_dr[base + i], v[base + i]);
    u_tgt[base + i] = t;
    const float d = u_pred[base + i] - t;
    acc = fmaf(d, d, acc);
  }
  __shared__ float partial[kTargetThreads / 32];
  acc = warp_sum(acc);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = acc;
  __syncthreads();
  if (warp == 0) {
    const int n_warps = blockDim.x >> 5;
    float s = lane < n_warps ? partial[lane] : 0.f;
    s = warp_sum(s);
    if (lane == 0) {
      const float e = s / static_cast<float>(W);
      err[row] = e;
      weight[row] = expf(-p * logf(e + c));  // (e + c)^-p, e + c > 0 since c > 0
    }
  }
}

__global__ void meanflow_integrate_kernel(const float* __restrict__ y0, const float* __restrict__ z0,
                                          const float* __restrict__ u_solvent, const float* __restrict__ u_sei,
                                          const float* __restrict__ r, const float* __restrict__ taus,
                                          float* __restrict__ frames, float* __restrict__ solvent,
                                          float* __restrict__ sei, int64_t B, int64_t T, int64_t W, bool project) {
  const int64_t total = B * T * W;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t w = i % W;
    const int64_t bt = i / W;
    const int64_t b = bt / T;
    const float dt = taus[bt] - r[b];
    const float y = fmaf(dt, u_solvent[i], y0[b * W + w]);
    float z = dt * u_sei[i];
    if (z0 != nullptr) z += z0[b * W + w];
    if (project) z = fmaxf(z, 0.f);
    solvent[i] = y;
    sei[i] = z;
    frames[i] = y + z;
  }
}

}  // namespace

cudaError_t meanflow_target_cuda(const float* u_pred, const float* v, const float* du_dr, const float* r,
                                 const float* tau, float* u_tgt, float* err, float* weight, int64_t B, int64_t W,
                                 float c, float p, cudaStream_t stream) {
  if (B == 0) return cudaSuccess;
  if (B > 2147483647LL || W <= 0) return cudaErrorInvalidValue;
  meanflow_target_kernel<<<static_cast<unsigned int>(B), kTargetThreads, 0, stream>>>(u_pred, v, du_dr, r, tau,
                                                                                     u_tgt, err, weight, W, c, p);
  return cudaGetLastError();
}

cudaError_t meanflow_integrate_cuda(const float* x0_solvent, const float* x0_sei, const float* u_solvent,
                                    const float* u_sei, const float* r, const float* taus, float* frames,
                                    float* solvent, float* sei, int64_t B, int64_t T, int64_t W, bool project,
                                    cudaStream_t stream) {
  const int64_t total = B * T * W;
  if (total == 0) return cudaSuccess;
  int64_t blocks = (total + kIntegrateThreads - 1) / kIntegrateThreads;
  if (blocks > 65535LL * 32) blocks = 65535LL * 32;  // grid-stride loop covers the rest
  meanflow_integrate_kernel<<<static_cast<unsigned int>(blocks), kIntegrateThreads, 0, stream>>>(
      x0_solvent, x0_sei, u_solvent, u_sei, r, taus, frames, solvent, sei, B, T, W, project);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace abcc
