// Two-stream (MM-DiT joint) attention, forward and forward + JVP in one pass, plain CUDA.
//
// Math: S = s Q K^T, P = softmax(S), O = P V over the keys of stream a then
// stream b (never concatenated); with tangents S' = s (Q' K^T + Q K'^T) and
// O' = P V' + (P * S') V - rowsum(P * S') O. Online softmax with one running max m and sum l;
// tangent state acc_t = sum p V' + (p s') V and r = sum p s', rescaled by the same exp(m_old - m_new):
// no exponential beyond the primal's. Epilogue O = acc / l, O' = (acc_t - r O) / l, LSE = m + log l.
//
// Design: one warp per query row, WARPS rows per block; key/value tiles of KT keys are staged in
// shared memory (fp32) and shared by the block's warps. In a tile, lane j scores key j (a full
// dot product against the row's q, held in shared memory), the warp reduces max and sums with
// shuffles, then every lane accumulates its D/32 output columns over the tile's keys. CUDA-core
// FP32 arithmetic; correctness first (tensor-core tiles are future work, see bench/).
//
// Masked keys and rows without any kept key: scores are -inf; m stays -inf and the shift used is 0,
// so p = 0 and alpha = 0 (never NaN); such rows store O = 0, O' = 0, LSE = +inf.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "two_stream_attention/two_stream_attention_cuda.h"

namespace abcc {
namespace cuda {
namespace {

constexpr int kWarps = 8;  // query rows per block
constexpr unsigned kFull = 0xffffffffu;

template <typename T>
__device__ __forceinline__ float to_float(T x);
template <>
__device__ __forceinline__ float to_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ float to_float<__half>(__half x) { return __half2float(x); }
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) x = fmaxf(x, __shfl_xor_sync(kFull, x, off));
  return x;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(kFull, x, off);
  return x;
}

template <typename T>
struct StreamPtrs {
  const T* q[2];
  const T* k[2];
  const T* v[2];
  const T* tq[2];
  const T* tk[2];
  const T* tv[2];
  T* o[2];
  T* to[2];
};

// grid = (ceil(Na / kWarps) + ceil(Nb / kWarps), B * H), block = 32 * kWarps threads.
template <typename T, int D, int KT, bool TANGENT>
__global__ void __launch_bounds__(32 * kWarps)
    two_stream_attention_fwd_kernel(StreamPtrs<T> ptr, float* __restrict__ lse, const int8_t* __restrict__ keep,
                                    int64_t H, int64_t Na, int64_t Nb, float scale) {
  static_assert(D % 32 == 0 && KT <= 32, "D must be a multiple of 32 and a tile at most a warp wide");
  constexpr int PER = D / 32;  // output columns per lane
  constexpr int KS = D + 1;    // padded key row: lane j reads row j without bank conflicts

  __shared__ float k_tile[KT * KS];
  __shared__ float v_tile[KT * D];
  __shared__ float tk_tile[TANGENT ? KT * KS : 1];
  __shared__ float tv_tile[TANGENT ? KT * D : 1];
  __shared__ float q_rows[kWarps * D];
  __shared__ float tq_rows[TANGENT ? kWarps * D : 1];
  __shared__ int keep_tile[KT];

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int64_t bh = blockIdx.y;
  const int64_t b = bh / H;
  const int64_t blocks_a = (Na + kWarps - 1) / kWarps;
  const int s_q = blockIdx.x < blocks_a ? 0 : 1;
  const int64_t row = (s_q == 0 ? blockIdx.x : blockIdx.x - blocks_a) * kWarps + warp;
  const int64_t n_q = s_q == 0 ? Na : Nb;
  const bool row_valid = row < n_q;
  const int64_t q_off = (bh * n_q + row) * D;

  // Ternaries, not ptr.x[s]: a runtime index into the parameter arrays would copy them to local memory.
  const T* q_ptr = s_q == 0 ? ptr.q[0] : ptr.q[1];
  const T* tq_ptr = s_q == 0 ? ptr.tq[0] : ptr.tq[1];
  for (int d = lane; d < D; d += 32) {
    q_rows[warp * D + d] = row_valid ? to_float(q_ptr[q_off + d]) : 0.f;
    if (TANGENT) tq_rows[warp * D + d] = row_valid ? to_float(tq_ptr[q_off + d]) : 0.f;
  }

  float acc[PER], acc_t[PER];
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    acc[i] = 0.f;
    acc_t[i] = 0.f;
  }
  float m = -INFINITY, l = 0.f, r = 0.f;

  for (int s_k = 0; s_k < 2; ++s_k) {
    const int64_t n_k = s_k == 0 ? Na : Nb;
    const int64_t kv_base = bh * n_k * D;
    const int64_t keep_base = b * (Na + Nb) + (s_k == 0 ? 0 : Na);
    const T* k_ptr = s_k == 0 ? ptr.k[0] : ptr.k[1];
    const T* v_ptr = s_k == 0 ? ptr.v[0] : ptr.v[1];
    const T* tk_ptr = s_k == 0 ? ptr.tk[0] : ptr.tk[1];
    const T* tv_ptr = s_k == 0 ? ptr.tv[0] : ptr.tv[1];
    for (int64_t k0 = 0; k0 < n_k; k0 += KT) {
      __syncthreads();  // the previous tile (and, first time, q_rows) is complete / consumed
      for (int idx = threadIdx.x; idx < KT * D; idx += blockDim.x) {
        const int j = idx / D;
        const int d = idx % D;
        const bool valid = k0 + j < n_k;
        const int64_t g = kv_base + (k0 + j) * D + d;
        k_tile[j * KS + d] = valid ? to_float(k_ptr[g]) : 0.f;
        v_tile[j * D + d] = valid ? to_float(v_ptr[g]) : 0.f;
        if (TANGENT) {
          tk_tile[j * KS + d] = valid ? to_float(tk_ptr[g]) : 0.f;
          tv_tile[j * D + d] = valid ? to_float(tv_ptr[g]) : 0.f;
        }
      }
      if (threadIdx.x < KT) {
        const int64_t key = k0 + threadIdx.x;
        keep_tile[threadIdx.x] = key < n_k && (keep == nullptr || keep[keep_base + key] != 0);
      }
      __syncthreads();

      // Lane j scores key j of the tile.
      float sc = -INFINITY, sp = 0.f;
      if (lane < KT && keep_tile[lane]) {
        float dot = 0.f, dot_t = 0.f;
        const float* krow = k_tile + lane * KS;
        const float* qrow = q_rows + warp * D;
#pragma unroll 8
        for (int d = 0; d < D; ++d) {
          dot = fmaf(qrow[d], krow[d], dot);
          if (TANGENT) dot_t = fmaf(tq_rows[warp * D + d], krow[d], fmaf(qrow[d], tk_tile[lane * KS + d], dot_t));
        }
        sc = dot * scale;
        sp = dot_t * scale;
      }
      const float m_new = fmaxf(m, warp_max(sc));
      const float m_use = m_new == -INFINITY ? 0.f : m_new;
      const float alpha = expf(m - m_use);  // m = -inf: 0
      const float p = sc == -INFINITY ? 0.f : expf(sc - m_use);
      const float psp = p * sp;
      l = l * alpha + warp_sum(p);
      if (TANGENT) r = r * alpha + warp_sum(psp);
#pragma unroll
      for (int i = 0; i < PER; ++i) {
        acc[i] *= alpha;
        if (TANGENT) acc_t[i] *= alpha;
      }
#pragma unroll 4
      for (int j = 0; j < KT; ++j) {
        const float pj = __shfl_sync(kFull, p, j);
        const float pspj = TANGENT ? __shfl_sync(kFull, psp, j) : 0.f;
#pragma unroll
        for (int i = 0; i < PER; ++i) {
          const int d = lane + 32 * i;
          const float vj = v_tile[j * D + d];
          acc[i] = fmaf(pj, vj, acc[i]);
          if (TANGENT) acc_t[i] = fmaf(pj, tv_tile[j * D + d], fmaf(pspj, vj, acc_t[i]));
        }
      }
      m = m_new;
    }
  }

  if (!row_valid) return;
  T* o_ptr = s_q == 0 ? ptr.o[0] : ptr.o[1];
  T* to_ptr = s_q == 0 ? ptr.to[0] : ptr.to[1];
  const float inv_l = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    const int d = lane + 32 * i;
    const float o = acc[i] * inv_l;
    o_ptr[q_off + d] = from_float<T>(o);
    if (TANGENT) to_ptr[q_off + d] = from_float<T>((acc_t[i] - r * o) * inv_l);
  }
  if (lane == 0) lse[bh * (Na + Nb) + (s_q == 0 ? 0 : Na) + row] = l > 0.f ? m + logf(l) : INFINITY;
}

template <typename T, int D, bool TANGENT>
cudaError_t launch(const TwoStreamAttentionArgs& a, cudaStream_t stream) {
  constexpr int KT = D <= 64 ? 32 : 16;  // keeps static shared memory under 48 KiB
  StreamPtrs<T> ptr;
  ptr.q[0] = static_cast<const T*>(a.qa);
  ptr.q[1] = static_cast<const T*>(a.qb);
  ptr.k[0] = static_cast<const T*>(a.ka);
  ptr.k[1] = static_cast<const T*>(a.kb);
  ptr.v[0] = static_cast<const T*>(a.va);
  ptr.v[1] = static_cast<const T*>(a.vb);
  ptr.tq[0] = static_cast<const T*>(a.tqa);
  ptr.tq[1] = static_cast<const T*>(a.tqb);
  ptr.tk[0] = static_cast<const T*>(a.tka);
  ptr.tk[1] = static_cast<const T*>(a.tkb);
  ptr.tv[0] = static_cast<const T*>(a.tva);
  ptr.tv[1] = static_cast<const T*>(a.tvb);
  ptr.o[0] = static_cast<T*>(a.oa);
  ptr.o[1] = static_cast<T*>(a.ob);
  ptr.to[0] = static_cast<T*>(a.toa);
  ptr.to[1] = static_cast<T*>(a.tob);
  const int64_t blocks_q = (a.Na + kWarps - 1) / kWarps + (a.Nb + kWarps - 1) / kWarps;
  const int64_t bh = a.B * a.H;
  if (bh > 65535 || blocks_q > 2147483647LL) return cudaErrorInvalidConfiguration;
  if (bh == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(blocks_q), static_cast<unsigned>(bh));
  two_stream_attention_fwd_kernel<T, D, KT, TANGENT>
      <<<grid, 32 * kWarps, 0, stream>>>(ptr, a.lse, a.keep, a.H, a.Na, a.Nb, a.scale);
  return cudaGetLastError();
}

template <typename T, bool TANGENT>
cudaError_t dispatch_d(const TwoStreamAttentionArgs& a, cudaStream_t stream) {
  switch (a.D) {
    case 32: return launch<T, 32, TANGENT>(a, stream);
    case 64: return launch<T, 64, TANGENT>(a, stream);
    case 128: return launch<T, 128, TANGENT>(a, stream);
    default: return cudaErrorInvalidValue;
  }
}

template <typename T>
cudaError_t dispatch_tangent(const TwoStreamAttentionArgs& a, cudaStream_t stream) {
  return a.tqa != nullptr ? dispatch_d<T, true>(a, stream) : dispatch_d<T, false>(a, stream);
}

}  // namespace

cudaError_t two_stream_attention_forward(const TwoStreamAttentionArgs& args, cudaStream_t stream) {
  const bool tangent = args.tqa != nullptr;
  if (tangent && (args.tka == nullptr || args.tva == nullptr || args.tqb == nullptr || args.tkb == nullptr ||
                  args.tvb == nullptr || args.toa == nullptr || args.tob == nullptr))
    return cudaErrorInvalidValue;
  switch (args.dtype) {
    case kTsaFloat32: return dispatch_tangent<float>(args, stream);
    case kTsaFloat16: return dispatch_tangent<__half>(args, stream);
    case kTsaBFloat16: return dispatch_tangent<__nv_bfloat16>(args, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace cuda
}  // namespace abcc
