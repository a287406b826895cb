// Soft-DTW and fused DILATE on the GPU: an on-chip anti-diagonal wavefront (plain CUDA, no torch).
//
// Conventions: those of csrc/soft_dtw/soft_dtw.h (cells, lengths, band, BIG sentinel, DILATE tangent).
//
// Design:
//  * one block per pair; thread t owns rows i = t, t + blockDim, ...; the three live anti-diagonals
//    (and their DILATE tangents) sit in shared memory, indexed by slot = i + 1 (slot 0 is row -1);
//    one __syncthreads per diagonal. R is never written to HBM.
//  * precision: diagonal k is kept relative to a per-pair float64 base b_k = b_{k-1} + min(diag k-1)
//    (the previous diagonal's minimum, found by warp shuffles plus one shared word per warp,
//    double-buffered so it needs no extra barrier). Every exponent is formed from O(local spread)
//    numbers, never from O(path cost) ones.
//  * forward only (save = false): O(N) shared memory and O(1) global memory per pair.
//  * training (save = true): the bases b_k [K] (float64) and, every S = kSdtwSegment diagonals, the
//    two diagonals the recurrence needs to restart (k = sS-2, sS-1) are checkpointed:
//    ceil(K/S) * 2 * N values per pair (N = M: 4N^2/S = N^2/32 at S = 128, i.e. 1/32 of a full R;
//    the same again for the DILATE tangent). The backward walks the segments from last to first:
//    it recomputes one segment forward (bit-identical arithmetic, bases read back, no reductions)
//    into a per-pair workspace of (S+2)(N+1) values, then runs the reverse sweep over it (the
//    FlashAttention trade: one extra forward sweep instead of O(NM) memory).
//  * the reverse sweep is in push form: each cell recomputes its soft-argmin weights from exactly
//    the values its forward step used (so they sum to 1 in float32; forming them from
//    r_s - cost_s - r_p loses eps |cost| / gamma per step and E drifts on long paths) and sends
//    E P_x (DILATE: P_x (E' + E (Q'_p - t_x) / g)) to its three predecessors; what the successor
//    diagonals sent lives in shared memory across segments: 5 (DILATE: 10) arrays of N+2.
//  * costs: a cost matrix D [B, N, M] (D-mode) or univariate sequences x [B, N], y [B, M] with
//    cost (x_i - y_j)^2 computed on the fly; in that mode dL/dx and dL/dy are accumulated in shared
//    memory during the reverse sweep (row i by its owner thread, column j once per diagonal).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "soft_dtw/soft_dtw_cuda.h"

namespace abcc {
namespace cuda {
namespace {

template <typename T> struct Num;
template <> struct Num<float> {
  static constexpr float big = 1e30f;
  static constexpr float half_big = 5e29f;
  __device__ static __forceinline__ float ex2(float v) { return exp2f(v); }
  __device__ static __forceinline__ float lg2(float v) { return log2f(v); }
};
template <> struct Num<double> {
  static constexpr double big = 1e300;
  static constexpr double half_big = 5e299;
  __device__ static __forceinline__ double ex2(double v) { return v < -1022.0 ? 0.0 : exp2(v); }
  __device__ static __forceinline__ double lg2(double v) { return log2(v); }
};

constexpr double kLog2e = 1.4426950408889634;

template <typename T>
struct Pair {
  int n, m, K;
  double w;  // bandwidth * max(n-1, m-1); < 0: no band
  const T* D;
  const T* x;
  const T* y;
  const T* omega;

  __device__ __forceinline__ Pair(const SdtwCudaProblem<T>& p, int b) {
    n = static_cast<int>(p.n[b]);
    m = static_cast<int>(p.m[b]);
    K = n + m - 1;
    w = p.bandwidth < 0 ? -1.0 : p.bandwidth * double(max(n - 1, m - 1));
    D = p.D ? p.D + int64_t(b) * p.N * p.M : nullptr;
    x = p.x ? p.x + int64_t(b) * p.N : nullptr;
    y = p.y ? p.y + int64_t(b) * p.M : nullptr;
    omega = p.omega ? p.omega + int64_t(b) * p.omega_batch_stride : nullptr;
  }
  // cell (i, j = k - i) inside the lengths and the band (i < n is the caller's loop bound)
  __device__ __forceinline__ bool valid(int i, int j) const {
    if (j < 0 || j >= m) return false;
    if (w < 0) return true;
    return fabs(double(i) * double(m - 1) - double(j) * double(n - 1)) <= w;
  }
  __device__ __forceinline__ T cost(int i, int j, int64_t M) const {
    if (D) return D[int64_t(i) * M + j];
    const T d = x[i] - y[j];
    return d * d;
  }
  __device__ __forceinline__ T om(int i, int j, int64_t M) const {
    if (omega) return omega[int64_t(i) * M + j];
    const T d = T(i + 1) * (T(1) / T(n)) - T(j + 1) * (T(1) / T(m));
    return d * d;
  }
};

// Unnormalised soft-argmin weights of a cell from its predecessors a = (i-1, j-1), bb = (i-1, j),
// c = (i, j-1): e_x = 2^((mn - x) s), mn = min. One function for the forward, the recompute and
// the backward, so the backward's weights are the forward's, bit for bit.
template <typename T>
__device__ __forceinline__ void soft_argmin(T a, T bb, T c, T s, T& mn, T& ea, T& eb, T& ec) {
  mn = min(a, min(bb, c));
  ea = Num<T>::ex2((mn - a) * s);
  eb = Num<T>::ex2((mn - bb) * s);
  ec = Num<T>::ex2((mn - c) * s);
}

// One forward cell (relative to b_k). Writes the stored value v (BIG when dead) and its tangent tv.
template <typename T, bool TANG>
__device__ __forceinline__ void forward_cell(T a, T bb, T c, T ta, T tb, T tc, T cost, T om, T s, T inv_s,
                                             T& v, T& tv) {
  T mn, ea, eb, ec;
  soft_argmin(a, bb, c, s, mn, ea, eb, ec);
  if (mn >= Num<T>::half_big) {
    v = Num<T>::big;
    tv = T(0);
    return;
  }
  const T S = ea + eb + ec;
  v = cost + (mn - Num<T>::lg2(S) * inv_s);
  tv = TANG ? om + (ea * ta + eb * tb + ec * tc) / S : T(0);
}

__host__ __device__ __forceinline__ int64_t num_segments(int64_t K) { return (K + kSdtwSegment - 1) / kSdtwSegment; }

// ---------------------------------------------------------------------------------------------
// forward: value, DILATE tangent, optional checkpoints
// ---------------------------------------------------------------------------------------------
template <typename T, bool TANG>
__global__ void __launch_bounds__(1024) sdtw_forward_kernel(SdtwCudaProblem<T> p, T* value, T* temporal,
                                                             T* ckpt, T* ckpt_t, double* base_out) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ T warp_min[2][32];
  const int b = blockIdx.x;
  const Pair<T> pr(p, b);
  const int n = pr.n, K = pr.K;
  const int64_t W = p.N + 1;  // slots per diagonal
  const int64_t Kmax = p.N + p.M - 1;
  const int64_t nseg = num_segments(Kmax);
  T* Rd = reinterpret_cast<T*>(smem_raw);  // [3][W]
  T* Td = Rd + 3 * W;                      // [3][W] (TANG)
  const int tid = threadIdx.x, nthr = blockDim.x, lane = tid & 31, warp = tid >> 5;
  const int nwarps = (nthr + 31) >> 5;
  const T BIG = Num<T>::big, HALF_BIG = Num<T>::half_big;
  const T s = T(kLog2e / p.gamma), inv_s = T(p.gamma / kLog2e);
  T* ck = ckpt ? ckpt + int64_t(b) * nseg * 2 * p.N : nullptr;
  T* ckt = (TANG && ckpt_t) ? ckpt_t + int64_t(b) * nseg * 2 * p.N : nullptr;

  for (int64_t t = tid; t < 3 * W; t += nthr) {
    Rd[t] = BIG;
    if (TANG) Td[t] = T(0);
  }
  __syncthreads();
  if (tid == 0) Rd[1 * W + 0] = T(0);  // diagonal -2 (buffer 1), row -1: R_{-1,-1} = 0
  __syncthreads();

  double base_m1 = 0.0, base_m2 = 0.0;
  T rmin_prev = T(0);
  for (int k = 0; k < K; ++k) {
    const double base_k = base_m1 + double(rmin_prev);
    const T sh1 = T(base_k - base_m1);  // diagonal k-1: stored - sh1 is relative to b_k
    const T c2 = T(base_m2 - base_k);   // diagonal k-2: stored + c2
    T* cur = Rd + (k % 3) * W;
    const T* p1 = Rd + ((k + 2) % 3) * W;
    const T* p2 = Rd + ((k + 1) % 3) * W;
    T* tcur = Td + (k % 3) * W;
    const T* tp1 = Td + ((k + 2) % 3) * W;
    const T* tp2 = Td + ((k + 1) % 3) * W;
    const bool ck0 = ck && (k + 2) % kSdtwSegment == 0 && (k + 2) < K;  // checkpoint slot 0 of segment (k+2)/S
    const bool ck1 = ck && (k + 1) % kSdtwSegment == 0 && (k + 1) < K;  // slot 1 of segment (k+1)/S
    T lmin = BIG;
    for (int i = tid; i < n; i += nthr) {
      const int j = k - i;
      T v = BIG, tv = T(0);
      if (pr.valid(i, j)) {
        const T cost = pr.cost(i, j, p.M);
        const T om = TANG ? pr.om(i, j, p.M) : T(0);
        forward_cell<T, TANG>(p2[i] + c2, p1[i] - sh1, p1[i + 1] - sh1, TANG ? tp2[i] : T(0),
                              TANG ? tp1[i] : T(0), TANG ? tp1[i + 1] : T(0), cost, om, s, inv_s, v, tv);
      }
      cur[i + 1] = v;
      if (TANG) tcur[i + 1] = tv;
      lmin = min(lmin, v);
      if (ck0) {
        ck[((k + 2) / kSdtwSegment * 2 + 0) * int64_t(p.N) + i] = v;
        if (TANG) ckt[((k + 2) / kSdtwSegment * 2 + 0) * int64_t(p.N) + i] = tv;
      }
      if (ck1) {
        ck[((k + 1) / kSdtwSegment * 2 + 1) * int64_t(p.N) + i] = v;
        if (TANG) ckt[((k + 1) / kSdtwSegment * 2 + 1) * int64_t(p.N) + i] = tv;
      }
      if (k == K - 1 && i == n - 1) {
        value[b] = T(base_k + double(v));
        if (TANG) temporal[b] = tv;
      }
    }
    if (tid == 0) {
      cur[0] = BIG;  // row -1 of this diagonal
      if (TANG) tcur[0] = T(0);
      if (base_out) base_out[int64_t(b) * Kmax + k] = base_k;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) lmin = min(lmin, __shfl_xor_sync(0xffffffffu, lmin, off));
    if (lane == 0) warp_min[k & 1][warp] = lmin;
    __syncthreads();
    T r = BIG;
    for (int w = 0; w < nwarps; ++w) r = min(r, warp_min[k & 1][w]);
    rmin_prev = r >= HALF_BIG ? T(0) : r;
    base_m2 = base_m1;
    base_m1 = base_k;
  }
}

// ---------------------------------------------------------------------------------------------
// backward: segment recompute from checkpoints + reverse sweep carrying E (and E')
// ---------------------------------------------------------------------------------------------
template <typename T, bool TANG>
__global__ void __launch_bounds__(1024) sdtw_backward_kernel(SdtwCudaProblem<T> p, const T* ckpt, const T* ckpt_t,
                                                              const double* base, const T* gv, const T* gt,
                                                              T* seg, T* seg_t, T* G, T* dx, T* dy) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int b = blockIdx.x;
  const Pair<T> pr(p, b);
  const int n = pr.n, m = pr.m, K = pr.K;
  const int64_t N = p.N, M = p.M;
  const int64_t Kmax = N + M - 1;
  const int64_t nseg_alloc = num_segments(Kmax);
  const int64_t W = N + 1;   // slots of a recomputed diagonal (slot 0: row -1)
  const int64_t WE = N + 2;  // slots of a reverse-sweep diagonal (slot n+1 stays 0)
  // Push form: cell (i, j) sends E P_a, E P_b, E P_c to (i-1, j-1), (i-1, j), (i, j-1). A cell
  // pulls E_p = PB_{k+1}[i+1] + PC_{k+1}[i] + PA_{k+2}[i+1]; Z_k[i] = PB_k[i] + PA_{k+1}[i] folds the
  // two-diagonal-old term in, so that PA needs one buffer only, private to the row's owner thread.
  T* Z = reinterpret_cast<T*>(smem_raw);  // [2][WE] by parity of k
  T* PC = Z + 2 * WE;                     // [2][WE]
  T* PA = PC + 2 * WE;                    // [WE]
  T* ZT = PA + WE;                        // tangents of the three (TANG)
  T* PCT = ZT + (TANG ? 2 * WE : 0);
  T* PAT = PCT + (TANG ? 2 * WE : 0);
  T* dxs = PAT + (TANG ? WE : 0);         // [N] (univariate mode)
  T* dys = dxs + (dx ? N : 0);            // [M] (univariate mode)
  const int tid = threadIdx.x, nthr = blockDim.x;
  const T BIG = Num<T>::big;
  const T s = T(kLog2e / p.gamma), inv_s = T(p.gamma / kLog2e), inv_g = T(1.0 / p.gamma);
  const double* bs = base + int64_t(b) * Kmax;
  const T* ck = ckpt + int64_t(b) * nseg_alloc * 2 * N;
  const T* ckt = TANG ? ckpt_t + int64_t(b) * nseg_alloc * 2 * N : nullptr;
  T* sg = seg + int64_t(b) * (kSdtwSegment + 2) * W;
  T* sgt = TANG ? seg_t + int64_t(b) * (kSdtwSegment + 2) * W : nullptr;
  const T g_value = gv ? gv[b] : T(1);
  const T g_temporal = (TANG && gt) ? gt[b] : T(0);
  T* Gb = G ? G + int64_t(b) * N * M : nullptr;

  const int64_t zero_count = (TANG ? 10 : 5) * WE + (dx ? N + M : 0);
  for (int64_t t = tid; t < zero_count; t += nthr) Z[t] = T(0);
  __syncthreads();

  for (int sgi = static_cast<int>(num_segments(K)) - 1; sgi >= 0; --sgi) {
    const int k0 = sgi * kSdtwSegment;
    const int k1 = min(k0 + kSdtwSegment, K);
    // rows 0, 1 of the workspace: diagonals k0-2, k0-1 (for the first segment: the DP's borders)
    for (int slot = tid; slot <= n; slot += nthr) {
      T v0, v1, t0 = T(0), t1 = T(0);
      if (sgi == 0) {
        v0 = slot == 0 ? T(0) : BIG;  // R_{-1,-1} = 0
        v1 = BIG;
      } else if (slot == 0) {
        v0 = BIG;
        v1 = BIG;
      } else {
        v0 = ck[(int64_t(sgi) * 2 + 0) * N + slot - 1];
        v1 = ck[(int64_t(sgi) * 2 + 1) * N + slot - 1];
        if (TANG) {
          t0 = ckt[(int64_t(sgi) * 2 + 0) * N + slot - 1];
          t1 = ckt[(int64_t(sgi) * 2 + 1) * N + slot - 1];
        }
      }
      sg[slot] = v0;
      sg[W + slot] = v1;
      if (TANG) {
        sgt[slot] = t0;
        sgt[W + slot] = t1;
      }
    }
    __syncthreads();
    // recompute diagonals k0 .. k1-1 into rows 2 .. (the forward's arithmetic, bases read back)
    for (int k = k0; k < k1; ++k) {
      const double base_k = bs[k];
      const double base_m1 = k >= 1 ? bs[k - 1] : 0.0;
      const double base_m2 = k >= 2 ? bs[k - 2] : 0.0;
      const T sh1 = T(base_k - base_m1);
      const T c2 = T(base_m2 - base_k);
      const int64_t row = k - k0 + 2;
      T* cur = sg + row * W;
      const T* p1 = cur - W;
      const T* p2 = cur - 2 * W;
      T* tcur = TANG ? sgt + row * W : nullptr;
      const T* tp1 = TANG ? tcur - W : nullptr;
      const T* tp2 = TANG ? tcur - 2 * W : nullptr;
      for (int i = tid; i < n; i += nthr) {
        const int j = k - i;
        T v = BIG, tv = T(0);
        if (pr.valid(i, j)) {
          const T cost = pr.cost(i, j, M);
          const T om = TANG ? pr.om(i, j, M) : T(0);
          forward_cell<T, TANG>(p2[i] + c2, p1[i] - sh1, p1[i + 1] - sh1, TANG ? tp2[i] : T(0),
                                TANG ? tp1[i] : T(0), TANG ? tp1[i + 1] : T(0), cost, om, s, inv_s, v, tv);
        }
        cur[i + 1] = v;
        if (TANG) tcur[i + 1] = tv;
      }
      if (tid == 0) {
        cur[0] = BIG;
        if (TANG) tcur[0] = T(0);
      }
      __syncthreads();
    }
    // reverse sweep over the segment
    for (int k = k1 - 1; k >= k0; --k) {
      const double base_k = bs[k];
      const double base_m1 = k >= 1 ? bs[k - 1] : 0.0;
      const double base_m2 = k >= 2 ? bs[k - 2] : 0.0;
      const T sh1 = T(base_k - base_m1);
      const T c2 = T(base_m2 - base_k);
      const int64_t row = k - k0 + 2;
      const T* p1 = sg + (row - 1) * W;
      const T* p2 = sg + (row - 2) * W;
      const T* tcur = TANG ? sgt + row * W : nullptr;
      const T* tp1 = TANG ? tcur - W : nullptr;
      const T* tp2 = TANG ? tcur - 2 * W : nullptr;
      T* Z0 = Z + (k & 1) * WE;
      const T* Z1 = Z + ((k + 1) & 1) * WE;
      T* PC0 = PC + (k & 1) * WE;
      const T* PC1 = PC + ((k + 1) & 1) * WE;
      T* ZT0 = ZT + (k & 1) * WE;
      const T* ZT1 = ZT + ((k + 1) & 1) * WE;
      T* PCT0 = PCT + (k & 1) * WE;
      const T* PCT1 = PCT + ((k + 1) & 1) * WE;
      for (int i = tid; i < n; i += nthr) {
        const int j = k - i;
        T pa = T(0), pb = T(0), pc = T(0), pta = T(0), ptb = T(0), ptc = T(0);
        if (pr.valid(i, j)) {
          const bool terminal = i == n - 1 && j == m - 1;
          const T e = terminal ? T(1) : Z1[i + 2] + PC1[i + 1];  // E_{n-1,m-1} = dR/dR = 1
          const T et = (TANG && !terminal) ? ZT1[i + 2] + PCT1[i + 1] : T(0);
          T mn, ea, eb, ec;
          soft_argmin(p2[i] + c2, p1[i] - sh1, p1[i + 1] - sh1, s, mn, ea, eb, ec);
          if (mn < Num<T>::half_big) {
            const T inv_S = T(1) / (ea + eb + ec);
            const T wa = ea * inv_S, wb = eb * inv_S, wc = ec * inv_S;
            pa = e * wa;
            pb = e * wb;
            pc = e * wc;
            if (TANG) {
              // d/dOmega of P_x = P_x (Q'_p - t_x) / g, Q'_p = R'_p - Omega_p
              const T qt = tcur[i + 1] - pr.om(i, j, M);
              pta = wa * (et + e * (qt - tp2[i]) * inv_g);
              ptb = wb * (et + e * (qt - tp1[i]) * inv_g);
              ptc = wc * (et + e * (qt - tp1[i + 1]) * inv_g);
            }
          }
          const T grad = g_value * e + g_temporal * et;
          if (Gb) {
            Gb[int64_t(i) * M + j] = grad;
          } else {
            const T gd = T(2) * grad * (pr.x[i] - pr.y[j]);
            dxs[i] += gd;  // row i: only this thread
            dys[j] -= gd;  // column j: one cell per diagonal, diagonals separated by barriers
          }
        }
        Z0[i + 1] = pb + PA[i + 1];  // PA[i + 1] still holds PA_{k+1}[i] (this thread's row)
        PC0[i + 1] = pc;
        PA[i + 1] = pa;
        if (TANG) {
          ZT0[i + 1] = ptb + PAT[i + 1];
          PCT0[i + 1] = ptc;
          PAT[i + 1] = pta;
        }
      }
      __syncthreads();
    }
  }
  if (dx) {
    for (int i = tid; i < n; i += nthr) dx[int64_t(b) * N + i] = dxs[i];
    for (int j = tid; j < m; j += nthr) dy[int64_t(b) * M + j] = dys[j];
  }
}

int threads_for(int64_t N) {
  const int64_t t = ((std::max<int64_t>(N, 1) + 31) / 32) * 32;
  return static_cast<int>(std::min<int64_t>(t, 1024));
}

cudaError_t prepare_smem(const void* kernel, size_t bytes) {
  int dev = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) return err;
  int optin = 0;
  err = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  if (err != cudaSuccess) return err;
  if (bytes > static_cast<size_t>(optin)) return cudaErrorInvalidConfiguration;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}

}  // namespace

int64_t sdtw_cuda_num_segments(int64_t N, int64_t M) { return num_segments(N + M - 1); }

size_t sdtw_cuda_shared_bytes(int64_t N, int64_t M, bool want_temporal, bool univariate, bool backward,
                              size_t elem_size) {
  if (!backward) return size_t(3 * (N + 1) * (want_temporal ? 2 : 1)) * elem_size;
  return size_t((want_temporal ? 10 : 5) * (N + 2) + (univariate ? N + M : 0)) * elem_size;
}

template <typename T>
cudaError_t sdtw_cuda_forward(const SdtwCudaProblem<T>& p, T* value, T* temporal, T* ckpt, T* ckpt_t,
                              double* base, cudaStream_t stream) {
  if (p.B == 0) return cudaSuccess;
  const bool tang = p.want_temporal;
  const size_t smem = sdtw_cuda_shared_bytes(p.N, p.M, tang, p.D == nullptr, false, sizeof(T));
  const void* kernel = tang ? reinterpret_cast<const void*>(&sdtw_forward_kernel<T, true>)
                            : reinterpret_cast<const void*>(&sdtw_forward_kernel<T, false>);
  cudaError_t err = prepare_smem(kernel, smem);
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned>(p.B)), block(threads_for(p.N));
  if (tang) {
    sdtw_forward_kernel<T, true><<<grid, block, smem, stream>>>(p, value, temporal, ckpt, ckpt_t, base);
  } else {
    sdtw_forward_kernel<T, false><<<grid, block, smem, stream>>>(p, value, temporal, ckpt, nullptr, base);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t sdtw_cuda_backward(const SdtwCudaProblem<T>& p, const T* ckpt, const T* ckpt_t, const double* base,
                               const T* gv, const T* gt, T* seg, T* seg_t, T* G, T* dx, T* dy,
                               cudaStream_t stream) {
  if (p.B == 0) return cudaSuccess;
  const bool tang = p.want_temporal && ckpt_t != nullptr && seg_t != nullptr;
  const size_t smem = sdtw_cuda_shared_bytes(p.N, p.M, tang, G == nullptr, true, sizeof(T));
  const void* kernel = tang ? reinterpret_cast<const void*>(&sdtw_backward_kernel<T, true>)
                            : reinterpret_cast<const void*>(&sdtw_backward_kernel<T, false>);
  cudaError_t err = prepare_smem(kernel, smem);
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned>(p.B)), block(threads_for(p.N));
  if (tang) {
    sdtw_backward_kernel<T, true><<<grid, block, smem, stream>>>(p, ckpt, ckpt_t, base, gv, gt, seg, seg_t, G, dx, dy);
  } else {
    sdtw_backward_kernel<T, false><<<grid, block, smem, stream>>>(p, ckpt, nullptr, base, gv, nullptr, seg, nullptr,
                                                                  G, dx, dy);
  }
  return cudaGetLastError();
}

template cudaError_t sdtw_cuda_forward<float>(const SdtwCudaProblem<float>&, float*, float*, float*, float*, double*,
                                              cudaStream_t);
template cudaError_t sdtw_cuda_forward<double>(const SdtwCudaProblem<double>&, double*, double*, double*, double*,
                                               double*, cudaStream_t);
template cudaError_t sdtw_cuda_backward<float>(const SdtwCudaProblem<float>&, const float*, const float*,
                                               const double*, const float*, const float*, float*, float*, float*,
                                               float*, float*, cudaStream_t);
template cudaError_t sdtw_cuda_backward<double>(const SdtwCudaProblem<double>&, const double*, const double*,
                                                const double*, const double*, const double*, double*, double*,
                                                double*, double*, double*, cudaStream_t);

}  // namespace cuda
}  // namespace abcc
