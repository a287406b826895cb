// Soft-DTW and fused DILATE on the CPU (C++, OpenMP over pairs, SIMD along anti-diagonals).
//
// Conventions shared by every backend of abcc_fast.ops.soft_dtw (see abcc_fast/ops/soft_dtw.py):
//  * cells (i, j) are 0-based, i < n_b, j < m_b (per-pair lengths; padded sizes N, M);
//  * R_ij = cost_ij + softmin_g(R_{i-1,j-1}, R_{i-1,j}, R_{i,j-1}), R_{-1,-1} = 0, other borders +inf;
//  * Sakoe-Chiba band on the normalised diagonal: cell allowed iff
//      |i (m-1) - j (n-1)| <= bandwidth * max(n-1, m-1)   (bandwidth < 0: no band);
//  * DILATE temporal term = <E, Omega>, carried as a forward-mode tangent of R in direction Omega;
//    default Omega_ij = ((i+1)/n - (j+1)/m)^2.
//
// Precision: each anti-diagonal k is stored relative to its own minimum,
// R_ij = off_k + r_ij, with the running offsets off_k in float64. Every exponent the backward
// needs, (R_s - cost_s - R_p)/g, is then formed from O(local spread) numbers, not O(path cost) ones.
#pragma once
#include <cstdint>

namespace abcc {
namespace cpu {

template <typename T>
struct SdtwProblem {
  int64_t B = 0, N = 0, M = 0;      // batch and padded lengths
  const int64_t* n = nullptr;       // [B] lengths of the first sequence
  const int64_t* m = nullptr;       // [B] lengths of the second
  double gamma = 1.0;
  double bandwidth = -1.0;          // < 0: no band
  // Cost source: either a cost matrix D [B, N, M] or sequences x [B, N, d], y [B, M, d] with the
  // cost ||x_i - y_j||^2 computed inside the sweep (no [N, M] buffer at all in forward-only
  // calls): exact differences (x_i - y_j)^2 for d = 1, the GEMM form ||x_i||^2 + ||y_j||^2 -
  // 2 x_i.y_j clamped at 0 for d > 1 (see soft_dtw_features.h).
  const T* D = nullptr;
  const T* x = nullptr;
  const T* y = nullptr;
  int64_t d = 1;                    // features per time step of x and y
  // DILATE: tangent direction. nullptr with want_temporal: the default Omega above.
  const T* omega = nullptr;         // [*, N, M]
  int64_t omega_batch_stride = 0;   // 0: one Omega shared by the batch
  bool want_temporal = false;
  // Engine: 0 chooses by shape (sdtw_lane_width), 1 one pair at a time, 2 pairs across SIMD lanes
  // (only when every pair has the padded lengths N, M; otherwise the pair engine runs), 3 as 2
  // with multivariate costs in diagonal blocks even for short series (for tests of that path).
  int engine = 0;
  // OpenMP threads over pairs; 1 runs on the calling thread without entering a parallel region
  // (required in a forked child, whose inherited OpenMP pool is dead).
  int threads = 1;
};

// Forward. value[B]; temporal[B] when want_temporal. When r_store is non-null the relative
// anti-diagonals are saved for the backward: r_store / rt_store [rows, N*M] (diagonal-major,
// compact), off_store [rows, N+M-1] (float64), rows = sdtw_store_rows(p). Without them only three rotating diagonals are used.
template <typename T>
void sdtw_forward(const SdtwProblem<T>& p, T* value, T* temporal, T* r_store, T* rt_store,
                  double* off_store);

// Backward. Given dL/dvalue (gv [B]) and dL/dtemporal (gt [B], may be null), writes either
// G = dL/dD into G [B, N, M] (must be zeroed by the caller: padding and out-of-band cells keep 0)
// or, given x and y, dL/dx and dL/dy into dx [B, N, d], dy [B, M, d] (zeroed by the caller unless
// sdtw_backward_writes_all(p)); a null dx or dy is not computed.
// When gv is null and G is given, G receives the expected alignment E itself (gv = 1).
template <typename T>
void sdtw_backward(const SdtwProblem<T>& p, const T* r_store, const T* rt_store,
                   const double* off_store, const T* gv, const T* gt, T* G, T* dx, T* dy);

// Whether the backward with x, y stores every element of dx and dy (then they need no zeros
// first): every pair at the full lengths N, M, and an engine that stores rather than accumulates
// (the lane engine; the pair engine for d > 1).
template <typename T>
bool sdtw_backward_writes_all(const SdtwProblem<T>& p);

// Pairs per SIMD group when the lane engine runs for p, 0 when the pair engine does.
template <typename T>
int64_t sdtw_lane_width(const SdtwProblem<T>& p);

// Rows of the saved state (r_store, rt_store [rows, N*M], off_store [rows, N+M-1]): B, or B
// rounded up to whole lane groups when the lane engine runs (its layout is [group][cell][lane]).
template <typename T>
int64_t sdtw_store_rows(const SdtwProblem<T>& p) {
  const int64_t w = sdtw_lane_width(p);
  return w > 0 ? (p.B + w - 1) / w * w : p.B;
}

int omp_max_threads();

}  // namespace cpu
}  // namespace abcc
