// Multivariate soft-DTW costs inside the CPU sweeps: D_ij = ||x_i - y_j||^2 for x [n, d], y [m, d]
// without a [n, m] cost matrix. Internal to soft_dtw.cpp (pair engine) and soft_dtw_lanes.cpp
// (lane engine).
//
// Both engines walk anti-diagonals. The costs of S consecutive anti-diagonals (a "block") are
// computed at once into a small buffer, in the GEMM form ||x_i||^2 + ||y_j||^2 - 2 x_i.y_j (clamped
// at 0, as abcc_fast.ops.soft_dtw.pairwise_sq_dist), by a register-blocked kernel (`dots`): one
// vector of kLanes cells times S diagonals accumulates over the d features, each x vector loaded
// once for S multiply-adds. A vector is kLanes consecutive rows i of one pair (pair engine) or one
// cell of kLanes pairs (lane engine); the kernels only see base pointers and strides.
//
// The backward fills the same kind of block with G = dL/dD of S diagonals and folds it into
// dL/dx_i = 2 (x_i sum_j G_ij - sum_j G_ij y_j) and dL/dy_j = 2 (y_j sum_i G_ij - sum_i G_ij x_i):
// the row and column sums are kept per cell, the two weighted sums by `gemv_acc`.
//
// Short series in the lane engine skip the blocks: the costs of the whole [n, m] matrix of a group
// are computed before the sweep, and its G folded after it, by register tiles (`tile_dots`,
// `tile_fold`: 4 x 4 accumulators, each loaded vector used four times, as in a GEMM micro-kernel,
// where a block reuses only the x vector). Measured at B = 64, N = 32, d = 64 (float32, one
// thread, one session): forward + backward 1.44 -> 1.01 ms together with skipping unneeded gradients.
//
// Layouts keep every vector the kernels read contiguous: the pair engine stores features
// feature-major with y reversed, xT[c][P + i], yT[c][P + m-1-j]; the lane engine row-major with
// lanes innermost, xl[P + i][c][lane], yl[P + m-1-j][c][lane]. P zero rows/columns on each side let
// a vector or a block overhang the matrix (band edges, the last block) without bounds checks; the
// results there are never used.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "soft_dtw/soft_dtw_common.h"
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace abcc {
namespace cpu {
namespace detail {

// Diagonals per block: S accumulators of kLanes values stay in vector registers.
template <typename T> struct BlockSize;
template <> struct BlockSize<float> { static constexpr int S = 16; };
template <> struct BlockSize<double> { static constexpr int S = 12; };

// kLanes values. Floats: one GCC/Clang generic vector (one 512-bit register on AVX-512, split in
// halves or quarters on narrower units). Doubles: two generic vectors of kLanes / 2. A single
// 1024-bit generic vector of doubles is legal but GCC 12 keeps such values in memory: the float64
// `dots` kernel stored and reloaded all its accumulators on every feature (measured 3.4x the float32
// time per cell instead of ~2x); as a pair of native vectors they stay in registers.
template <typename T> struct LaneVector;
template <> struct LaneVector<float> { typedef float type __attribute__((vector_size(kLanes * sizeof(float)))); };
struct DoubleLanes {
  typedef double half __attribute__((vector_size(kLanes / 2 * sizeof(double))));
  half lo, hi;
  friend DoubleLanes operator+(DoubleLanes a, DoubleLanes b) { return {a.lo + b.lo, a.hi + b.hi}; }
  friend DoubleLanes operator-(DoubleLanes a, DoubleLanes b) { return {a.lo - b.lo, a.hi - b.hi}; }
  friend DoubleLanes operator*(DoubleLanes a, DoubleLanes b) { return {a.lo * b.lo, a.hi * b.hi}; }
  friend DoubleLanes operator+(DoubleLanes a, double s) { return {a.lo + s, a.hi + s}; }
  friend DoubleLanes operator*(double s, DoubleLanes a) { return {s * a.lo, s * a.hi}; }
  DoubleLanes& operator+=(DoubleLanes b) { return *this = *this + b; }
};
template <> struct LaneVector<double> { typedef DoubleLanes type; };
template <typename T> using Vec = typename LaneVector<T>::type;
static_assert(sizeof(Vec<double>) == kLanes * sizeof(double), "a lane vector holds kLanes values");

template <typename T>
inline Vec<T> vload(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T>
inline void vstore(T* p, const Vec<T>& v) {
  std::memcpy(p, &v, sizeof(v));
}
// per half: one memcpy of the whole pair went through a stack copy
template <>
inline Vec<double> vload<double>(const double* p) {
  Vec<double> v;
  std::memcpy(&v.lo, p, sizeof(v.lo));
  std::memcpy(&v.hi, p + kLanes / 2, sizeof(v.hi));
  return v;
}
template <>
inline void vstore<double>(double* p, const Vec<double>& v) {
  std::memcpy(p, &v.lo, sizeof(v.lo));
  std::memcpy(p + kLanes / 2, &v.hi, sizeof(v.hi));
}

// out[kk] = sum_{c < d} X[c xs] * Y[c ys + kk yk]  (vectors), kk < S
template <typename T, int S>
inline void dots(const T* X, int64_t xs, const T* Y, int64_t ys, int64_t yk, int64_t d, Vec<T>* out) {
  Vec<T> acc[S];
  for (int kk = 0; kk < S; ++kk) acc[kk] = Vec<T>{} ;
  for (int64_t c = 0; c < d; ++c) {
    const Vec<T> xv = vload(X + c * xs);
    const T* yc = Y + c * ys;
#pragma GCC unroll 16
    for (int kk = 0; kk < S; ++kk) acc[kk] += xv * vload(yc + kk * yk);
  }
  for (int kk = 0; kk < S; ++kk) out[kk] = acc[kk];
}

// OUT[c os] += sum_{kk < S} W[kk] * Z[c zs + kk zk]  (vectors), c < d
template <typename T, int S>
inline void gemv_acc(const Vec<T>* W, const T* Z, int64_t zs, int64_t zk, int64_t d, T* OUT, int64_t os) {
  for (int64_t c = 0; c < d; ++c) {
    const T* zc = Z + c * zs;
    Vec<T> s0 = W[0] * vload(zc), s1 = W[1] * vload(zc + zk);  // two chains: shorter dependency
#pragma GCC unroll 16
    for (int kk = 2; kk < S; kk += 2) {
      s0 += W[kk] * vload(zc + kk * zk);
      s1 += W[kk + 1] * vload(zc + (kk + 1) * zk);
    }
    T* o = OUT + c * os;
    vstore(o, vload(o) + s0 + s1);
  }
}

inline Vec<float> clamp0(const Vec<float>& v) { return v > Vec<float>{} ? v : Vec<float>{}; }
inline Vec<double> clamp0(const Vec<double>& v) {
  const DoubleLanes::half z{};
  return {v.lo > z ? v.lo : z, v.hi > z ? v.hi : z};
}

// GCC 12 reports the self-initialised placeholder inside its own AVX-512 unpack intrinsics as "may
// be used uninitialized" wherever they are inlined; a false positive, silenced from here on in the
// two files that include this header (push/pop around the helper does not reach inlined copies).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// out[k][l] = in[l][k] for k, l < kLanes (row pointers, unaligned). The lane engine's layout
// changes (x [pair][i][c] <-> [i][c][lane]) are such transposes; scalar, each element is one
// store to another cache line, which measured 4x slower than the 64 AVX-512 shuffles here.
inline void transpose_lanes(const float* const* in, float* const* out) {
#if defined(__AVX512F__)
  static_assert(kLanes == 16, "the AVX-512 transpose is 16 x 16");
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(in[i]);
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), e = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, e));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, e));
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) {
      t[8 * i + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + j + 4], 0x88);
      t[8 * i + j + 4] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + j + 4], 0xdd);
    }
  for (int j = 0; j < 8; ++j) {
    _mm512_storeu_ps(out[j], _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88));
    _mm512_storeu_ps(out[j + 8], _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd));
  }
#else
  for (int64_t k = 0; k < kLanes; ++k)
    for (int64_t l = 0; l < kLanes; ++l) out[k][l] = in[l][k];
#endif
}
inline void transpose_lanes(const double* const* in, double* const* out) {
  for (int64_t k = 0; k < kLanes; ++k)
    for (int64_t l = 0; l < kLanes; ++l) out[k][l] = in[l][k];
}

// Union of the cell rows i of diagonals [k0, k1) and of their reversed columns m-1-j
// (empty: lo > hi).
inline void block_ranges(const Diagonals& diag, int64_t m, int64_t k0, int64_t k1, int64_t& ilo, int64_t& ihi,
                         int64_t& jlo, int64_t& jhi) {
  ilo = jlo = INT64_MAX;
  ihi = jhi = INT64_MIN;
  for (int64_t k = k0; k < k1; ++k) {
    if (diag.lo[k] > diag.hi[k]) continue;
    ilo = std::min(ilo, diag.lo[k]);
    ihi = std::max(ihi, diag.hi[k]);
    jlo = std::min(jlo, m - 1 - k + diag.lo[k]);
    jhi = std::max(jhi, m - 1 - k + diag.hi[k]);
  }
}

// out[c] += sum_{kk < S} g[kk] rows[kk dp + c] for c < dp (a multiple of kLanes): S consecutive
// rows of a row-major [*, dp] array, weighted, added into one row.
template <typename T, int S>
inline void fold_rows(const T* g, const T* rows, int64_t dp, T* out) {
  Vec<T> gv[S];
  for (int kk = 0; kk < S; ++kk) gv[kk] = Vec<T>{} + g[kk];
  for (int64_t c0 = 0; c0 < dp; c0 += kLanes) {
    Vec<T> s0 = gv[0] * vload(rows + c0), s1 = gv[1] * vload(rows + dp + c0);
#pragma GCC unroll 16
    for (int kk = 2; kk < S; kk += 2) {
      s0 += gv[kk] * vload(rows + kk * dp + c0);
      s1 += gv[kk + 1] * vload(rows + (kk + 1) * dp + c0);
    }
    vstore(out + c0, vload(out + c0) + s0 + s1);
  }
}

// Register tiles for the lane engine's whole-matrix mode (vectors across the lanes, so the
// blocking is the one a GEMM micro-kernel uses): TA x TB accumulators, each loaded vector used
// TB or TA times. Floats 4 x 4 (16 accumulators, 8 loads, one 512-bit register each); doubles
// 4 x 2 (a vector of doubles is two registers).
template <typename T> struct LaneTile;
template <> struct LaneTile<float> { static constexpr int A = 4, B = 4; };
template <> struct LaneTile<double> { static constexpr int A = 4, B = 2; };

// acc[a][b] = sum_{k < K} U[a ua + k uk] * V[b vb + k vk] (vectors), a < TA, b < TB: a register
// tile of outer products summed over k.
template <typename T, int TA, int TB>
inline void tile_outer(const T* U, int64_t ua, int64_t uk, const T* V, int64_t vb, int64_t vk, int64_t K,
                       Vec<T> (&acc)[TA][TB]) {
  for (int a = 0; a < TA; ++a)
    for (int b = 0; b < TB; ++b) acc[a][b] = Vec<T>{};
  for (int64_t k = 0; k < K; ++k) {
    Vec<T> uv[TA], vv[TB];
    for (int a = 0; a < TA; ++a) uv[a] = vload(U + a * ua + k * uk);
    for (int b = 0; b < TB; ++b) vv[b] = vload(V + b * vb + k * vk);
    for (int a = 0; a < TA; ++a)
      for (int b = 0; b < TB; ++b) acc[a][b] += uv[a] * vv[b];
  }
}

// The dot products of TA rows of X with TB rows of Y (rows xa, yb apart; features at stride
// kLanes within a row, the lane layout): acc[a][b] = sum_{c < d} X[a xa + c L] * Y[b yb + c L].
template <typename T, int TA, int TB>
inline void tile_dots(const T* X, int64_t xa, const T* Y, int64_t yb, int64_t d, Vec<T> (&acc)[TA][TB]) {
  tile_outer<T, TA, TB>(X, xa, kLanes, Y, yb, kLanes, d, acc);
}

// O[a oa + b L] = sum_{r < R} G[a ga + r gr] * Z[r zr + b L] for a < TA, b < TB: TA output rows
// (one feature vector each of TB) as G-weighted sums of R rows of Z, stored (not added).
template <typename T, int TA, int TB>
inline void tile_fold(const T* G, int64_t ga, int64_t gr, const T* Z, int64_t zr, int64_t R, T* O, int64_t oa) {
  Vec<T> acc[TA][TB];
  tile_outer<T, TA, TB>(G, ga, gr, Z, kLanes, zr, R, acc);
  for (int a = 0; a < TA; ++a)
    for (int b = 0; b < TB; ++b) vstore(O + a * oa + b * kLanes, acc[a][b]);
}

// ---- pair engine: one pair, vectors along i (forward) or along the features (backward) ----
template <typename T>
struct PairFeatures {
  static constexpr int S = BlockSize<T>::S;
  static constexpr int64_t P = S + 2 * kLanes;
  int64_t n = 0, m = 0, d = 0, dp = 0, NX = 0, MY = 0;
  // forward: feature-major, y reversed, xT[c][P + i], yT[c][P + m-1-j], norms xx[P + i], yy[P + m-1-j]
  std::vector<T> xT, yT, xx, yy;
  std::vector<T> blk;  // [S][NX]: costs (forward) or G (backward) of a block, row i at P + i
  // backward: row-major with dp >= d features (zero-padded to whole vectors) and P zero rows on
  // each side, xr[P + i][c], yr[P + j][c]; the folds sum_j G_ij y_j -> dxa[i][c], sum_i G_ij x_i ->
  // dya[j][c]; rowsum[P + i] = sum_j G_ij, colsum[P + m-1-j] = sum_i G_ij
  std::vector<T> xr, yr, dxa, dya, rowsum, colsum;

  bool fold_x = true, fold_y = true;  // backward: which of dL/dx, dL/dy to compute

  void init(const T* x, const T* y, int64_t n_, int64_t m_, int64_t d_, bool backward, bool want_dx = true,
            bool want_dy = true) {
    n = n_, m = m_, d = d_, fold_x = want_dx, fold_y = want_dy;
    NX = n + 2 * P;
    MY = m + 2 * P;
    blk.assign(S * NX, T(0));
    if (backward) {
      dp = (d + kLanes - 1) / kLanes * kLanes;
      pad_rows(x, n, xr);
      pad_rows(y, m, yr);
      dxa.assign(n * dp, T(0));
      dya.assign(m * dp, T(0));
      rowsum.assign(NX, T(0));
      colsum.assign(MY, T(0));
      return;
    }
    xT.assign(d * NX, T(0));
    yT.assign(d * MY, T(0));
    xx.assign(NX, T(0));
    yy.assign(MY, T(0));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < d; ++c) {
        const T v = x[i * d + c];
        xT[c * NX + P + i] = v;
        xx[P + i] += v * v;
      }
    for (int64_t j = 0; j < m; ++j)
      for (int64_t c = 0; c < d; ++c) {
        const T v = y[j * d + c];
        yT[c * MY + P + m - 1 - j] = v;
        yy[P + m - 1 - j] += v * v;
      }
  }

  void pad_rows(const T* src, int64_t cnt, std::vector<T>& out) const {
    out.assign((cnt + 2 * P) * dp, T(0));
    for (int64_t r = 0; r < cnt; ++r) std::memcpy(out.data() + (P + r) * dp, src + r * d, d * sizeof(T));
  }

  // costs of diagonal k (k0 <= k < k0 + S: the block computed last), indexed by row i
  const T* costs(int64_t k0, int64_t k) const { return blk.data() + (k - k0) * NX + P; }

  void cost_block(const Diagonals& diag, int64_t k0, int64_t k1) {
    int64_t ilo, ihi, jlo, jhi;
    block_ranges(diag, m, k0, k1, ilo, ihi, jlo, jhi);
    if (ilo > ihi) return;
    alignas(64) Vec<T> acc[S];
    for (int64_t i0 = ilo; i0 <= ihi; i0 += kLanes) {
      const int64_t yoff = P + m - 1 - k0 + i0;  // reversed column of (i0, k0 - i0)
      dots<T, S>(xT.data() + P + i0, NX, yT.data() + yoff, MY, -1, d, acc);
      const Vec<T> xv = vload(xx.data() + P + i0);
      for (int64_t kk = 0; kk < k1 - k0; ++kk)
        vstore(blk.data() + kk * NX + P + i0, clamp0(xv + vload(yy.data() + yoff - kk) - T(2) * acc[kk]));
    }
  }

  // G of diagonal k's cells i = lo + t into the block (k0: the block's first diagonal)
  void put_grad(int64_t k0, int64_t k, int64_t lo, int64_t len, const T* g) {
    T* row = blk.data() + (k - k0) * NX + P + lo;
    T* rs = rowsum.data() + P + lo;
    T* cs = colsum.data() + P + m - 1 - k + lo;
#pragma omp simd
    for (int64_t t = 0; t < len; ++t) {
      row[t] = g[t];
      rs[t] += g[t];
      cs[t] += g[t];
    }
  }

  // Folds the block of diagonals [k0, k1) into dxa and dya, then clears it. Row i meets the block
  // in the cells (i, k0 + kk - i), kk < S, whose y rows are consecutive; column j likewise meets
  // consecutive x rows. Cells outside the matrix or the band hold G = 0.
  void grad_block(const Diagonals& diag, int64_t k0, int64_t k1) {
    int64_t ilo, ihi, jlo, jhi;
    block_ranges(diag, m, k0, k1, ilo, ihi, jlo, jhi);
    if (ilo > ihi) return;
    alignas(64) T g[S];
    for (int64_t i = ilo; i <= ihi && fold_x; ++i) {
      for (int kk = 0; kk < S; ++kk) g[kk] = blk[kk * NX + P + i];
      fold_rows<T, S>(g, yr.data() + (P + k0 - i) * dp, dp, dxa.data() + i * dp);
    }
    for (int64_t j = m - 1 - jhi; j <= m - 1 - jlo && fold_y; ++j) {
      for (int kk = 0; kk < S; ++kk) g[kk] = blk[kk * NX + P + k0 + kk - j];
      fold_rows<T, S>(g, xr.data() + (P + k0 - j) * dp, dp, dya.data() + j * dp);
    }
    for (int64_t kk = 0; kk < k1 - k0; ++kk) {
      T* row = blk.data() + kk * NX;
      std::fill(row + P + ilo, row + P + ihi + 1, T(0));
    }
  }

  // dL/dx [n][d], dL/dy [m][d] of this pair (overwritten; a null one is skipped)
  void finish(const T* x, const T* y, T* dx, T* dy) const {
    for (int64_t i = 0; i < n && dx; ++i)
      for (int64_t c = 0; c < d; ++c) dx[i * d + c] = T(2) * (x[i * d + c] * rowsum[P + i] - dxa[i * dp + c]);
    for (int64_t j = 0; j < m && dy; ++j)
      for (int64_t c = 0; c < d; ++c)
        dy[j * d + c] = T(2) * (y[j * d + c] * colsum[P + m - 1 - j] - dya[j * dp + c]);
  }
};

// ---- lane engine: kLanes pairs of one group, vectors across the lanes ----
template <typename T>
struct LaneFeatures {
  static constexpr int S = 8;  // diagonals per block: S row pointers plus the induction variables fit the 16 x86 integer registers
  static constexpr int64_t P = S;  // block reads reach S - 1 rows beyond the matrix
  static constexpr int64_t L = kLanes;
  int64_t n = 0, m = 0, d = 0, NR = 0, MR = 0;
  // Row stride RS = (d + 1) L: with d L alone, rows d L * 4 bytes apart (4 KiB at d = 64) fall in
  // one L1 set, and the S rows a block reads at once evicted each other (measured 7x slower).
  int64_t RS = 0;
  // [NR][RS] (feature c of lane l at c L + l), [MR][RS], [NR][L], [MR][L]; xl, yl are not
  // value-initialised (load_rows writes every slot a kernel reads; not zeroing these and the cell
  // buffer first took B = 64, N = 32, d = 64 forward+backward from 1.28 to 1.23 ms)
  std::unique_ptr<T[]> xl, yl;
  std::vector<T> xx, yy;
  // Whole-matrix mode (short series, see whole_matrix_fits): the costs (forward) or G (backward) of
  // every cell at once in `cells` [n + A][m][L] (A zero rows that the tiles may overhang), computed
  // and folded by register tiles (tile_dots, tile_fold) before and after the sweep. Otherwise
  // blocks of S diagonals in `blk` [S][NR][L], computed and folded during the sweep.
  bool whole = false;
  std::vector<T> blk;
  std::unique_ptr<T[]> cells;  // zeroed for the backward only (the forward writes every cell it reads)
  std::vector<T> rowsum, colsum;  // backward: [NR][L], [MR][L]
  std::unique_ptr<T[]> dxl, dyl;  // backward: [NR][RS], [MR][RS] (zeroed in block mode only: the
                                  // whole-matrix fold stores every row finish reads)

  // The [n + A][m][L] cell buffer stays in L2 (512 KiB) and the band keeps at least half the cells.
  static bool whole_matrix_fits(const Diagonals& diag, int64_t n_, int64_t m_) {
    const int64_t bytes = (n_ + LaneTile<T>::A) * m_ * L * int64_t(sizeof(T));
    return bytes <= (int64_t(512) << 10) && 2 * diag.start[diag.K] >= n_ * m_;
  }

  bool fold_x = true, fold_y = true;  // backward: which of dL/dx, dL/dy to compute

  // x, y: [B, N, d], [B, M, d]; bl[l]: the pair of lane l; whole_: whole-matrix mode
  void init(const T* x, const T* y, int64_t N, int64_t M, int64_t d_, const int64_t* bl, bool backward,
            bool whole_, bool want_dx = true, bool want_dy = true) {
    n = N, m = M, d = d_, whole = whole_, fold_x = want_dx, fold_y = want_dy;
    NR = n + 2 * P;
    MR = m + 2 * P;
    RS = (d + 1) * L;
    load_rows(x, N, bl, false, xl, xx);
    load_rows(y, M, bl, true, yl, yy);
    if (whole) {
      const int64_t size = (n + LaneTile<T>::A) * m * L;
      cells.reset(new T[size]);
      if (backward) std::fill(cells.get(), cells.get() + size, T(0));
    } else
      blk.assign(S * NR * L, T(0));
    if (backward) {
      rowsum.assign(NR * L, T(0));
      colsum.assign(MR * L, T(0));
      dxl.reset(new T[NR * RS]);
      dyl.reset(new T[MR * RS]);
      if (!whole) {
        std::fill(dxl.get(), dxl.get() + NR * RS, T(0));
        std::fill(dyl.get(), dyl.get() + MR * RS, T(0));
      }
    }
  }

  // rows [cnt][d] of each lane's pair (reversed for y) into rows[P + r][c][lane], zero padding;
  // norms[P + r][lane] = ||row||^2. Row by row: the scattered writes of a row stay in L1.
  void load_rows(const T* src, int64_t cnt, const int64_t* bl, bool reverse, std::unique_ptr<T[]>& rows,
                 std::vector<T>& norms) {
    const int64_t R = cnt + 2 * P, DL = RS;
    rows.reset(new T[R * DL]);
    norms.assign(R * L, T(0));
    std::fill(rows.get(), rows.get() + P * DL, T(0));
    std::fill(rows.get() + (P + cnt) * DL, rows.get() + R * DL, T(0));
    for (int64_t r = 0; r < cnt; ++r) {
      T* dst = rows.get() + (P + r) * DL;
      const int64_t t = reverse ? cnt - 1 - r : r;
      const T* in[L];
      T* out[L];
      for (int64_t l = 0; l < L; ++l) in[l] = src + (bl[l] * cnt + t) * d;
      int64_t c0 = 0;
      for (; c0 + L <= d; c0 += L) {
        const T* inc[L];
        for (int64_t l = 0; l < L; ++l) {
          inc[l] = in[l] + c0;
          out[l] = dst + (c0 + l) * L;
        }
        transpose_lanes(inc, out);
      }
      for (int64_t l = 0; l < L; ++l)
        for (int64_t c = c0; c < d; ++c) dst[c * L + l] = in[l][c];
      Vec<T> acc{};
      for (int64_t c = 0; c < d; ++c) {
        const Vec<T> v = vload(dst + c * L);
        acc += v * v;
      }
      vstore(norms.data() + (P + r) * L, acc);
    }
  }

  // costs of cell (i, k - i) for the L lanes (k in the block computed last, starting at k0)
  const T* cost(int64_t k0, int64_t k, int64_t i) const {
    if (whole) return cells.get() + (i * m + k - i) * L;
    return blk.data() + ((k - k0) * NR + P + i) * L;
  }

  // cells[i][j] = ||x_i - y_j||^2 for the whole matrix. Tiles overhang the last rows and columns
  // into the zero padding rows of xl and yl; only cells inside the matrix are stored.
  void whole_costs() {
    constexpr int A = LaneTile<T>::A, Bt = LaneTile<T>::B;
    Vec<T> acc[A][Bt];
    for (int64_t i0 = 0; i0 < n; i0 += A)
      for (int64_t j0 = 0; j0 < m; j0 += Bt) {
        const int64_t r0 = P + m - 1 - j0;  // reversed row of column j0 (j0 + b at r0 - b)
        tile_dots<T, A, Bt>(xl.get() + (P + i0) * RS, RS, yl.get() + r0 * RS, -RS, d, acc);
        for (int a = 0; a < A && i0 + a < n; ++a) {
          const Vec<T> xv = vload(xx.data() + (P + i0 + a) * L);
          for (int b = 0; b < Bt && j0 + b < m; ++b)
            vstore(cells.get() + ((i0 + a) * m + j0 + b) * L,
                   clamp0(xv + vload(yy.data() + (r0 - b) * L) - T(2) * acc[a][b]));
        }
      }
  }

  void cost_block(const Diagonals& diag, int64_t k0, int64_t k1) {
    if (whole) {
      if (k0 == 0) whole_costs();
      return;
    }
    int64_t ilo, ihi, jlo, jhi;
    block_ranges(diag, m, k0, k1, ilo, ihi, jlo, jhi);
    alignas(64) Vec<T> acc[S];
    for (int64_t i = ilo; i <= ihi; ++i) {
      const int64_t r = P + m - 1 - k0 + i;  // reversed column row of (i, k0 - i)
      dots<T, S>(xl.get() + (P + i) * RS, L, yl.get() + r * RS, L, -RS, d, acc);
      const Vec<T> xv = vload(xx.data() + (P + i) * L);
      for (int64_t kk = 0; kk < k1 - k0; ++kk)
        vstore(blk.data() + (kk * NR + P + i) * L, clamp0(xv + vload(yy.data() + (r - kk) * L) - T(2) * acc[kk]));
    }
  }

  // G of cell (i, j) on diagonal k for the L lanes
  void put_grad(int64_t k0, int64_t k, int64_t i, int64_t j, const T* g) {
    T* cell = whole ? cells.get() + (i * m + j) * L : blk.data() + ((k - k0) * NR + P + i) * L;
    T* rs = rowsum.data() + (P + i) * L;
    T* cs = colsum.data() + (P + m - 1 - j) * L;
#pragma omp simd
    for (int64_t l = 0; l < L; ++l) {
      cell[l] = g[l];
      rs[l] += g[l];
      cs[l] += g[l];
    }
  }

  // Whole-matrix fold, once the sweep has put every G: dxl row i = sum_j G_ij y_j and dyl row
  // (reversed) m-1-j = sum_i G_ij x_i, in tiles of A rows by B feature vectors (then single
  // features for the remainder of d). Overhanging rows read the zero rows of `cells` (for dx) or
  // the next row's cells (for dy), and land in padding rows of dxl, dyl that finish never reads.
  void whole_fold() {
    constexpr int A = LaneTile<T>::A, Bt = LaneTile<T>::B;
    const int64_t dB = d / Bt * Bt;
    for (int64_t i0 = 0; i0 < n && fold_x; i0 += A) {
      const T* g = cells.get() + i0 * m * L;
      T* o = dxl.get() + (P + i0) * RS;
      const T* z = yl.get() + (P + m - 1) * RS;
      for (int64_t c = 0; c < dB; c += Bt)
        tile_fold<T, A, Bt>(g, m * L, L, z + c * L, -RS, m, o + c * L, RS);
      for (int64_t c = dB; c < d; ++c) tile_fold<T, A, 1>(g, m * L, L, z + c * L, -RS, m, o + c * L, RS);
    }
    for (int64_t j0 = 0; j0 < m && fold_y; j0 += A) {
      const T* g = cells.get() + j0 * L;
      T* o = dyl.get() + (P + m - 1 - j0) * RS;
      const T* z = xl.get() + P * RS;
      for (int64_t c = 0; c < dB; c += Bt)
        tile_fold<T, A, Bt>(g, L, m * L, z + c * L, RS, n, o + c * L, -RS);
      for (int64_t c = dB; c < d; ++c) tile_fold<T, A, 1>(g, L, m * L, z + c * L, RS, n, o + c * L, -RS);
    }
  }

  void grad_block(const Diagonals& diag, int64_t k0, int64_t k1) {
    if (whole) {
      if (k0 == 0) whole_fold();
      return;
    }
    int64_t ilo, ihi, jlo, jhi;
    block_ranges(diag, m, k0, k1, ilo, ihi, jlo, jhi);
    if (ilo > ihi) return;
    alignas(64) Vec<T> w[S];
    for (int64_t i = ilo; i <= ihi && fold_x; ++i) {
      for (int kk = 0; kk < S; ++kk) w[kk] = vload(blk.data() + (kk * NR + P + i) * L);
      gemv_acc<T, S>(w, yl.get() + (P + m - 1 - k0 + i) * RS, L, -RS, d, dxl.get() + (P + i) * RS, L);
    }
    for (int64_t r = jlo; r <= jhi && fold_y; ++r) {
      const int64_t i0 = k0 - (m - 1) + r;  // row of reversed column r on diagonal k0 (+kk on k0 + kk)
      for (int kk = 0; kk < S; ++kk) w[kk] = vload(blk.data() + (kk * NR + P + i0 + kk) * L);
      gemv_acc<T, S>(w, xl.get() + (P + i0) * RS, L, RS, d, dyl.get() + (P + r) * RS, L);
    }
    for (int64_t kk = 0; kk < k1 - k0; ++kk)
      std::fill(blk.data() + (kk * NR + P + ilo) * L, blk.data() + (kk * NR + P + ihi + 1) * L, T(0));
  }

  // dL/dx [N][d] and dL/dy [M][d] of the pairs of lanes l < cnt (overwritten): x, y, dx, dy are the
  // batch tensors [B, N, d], [B, M, d] (a null dx or dy is skipped). Row by row, so that the
  // strided reads stay in L1.
  void finish(int64_t cnt, const int64_t* bl, const T* x, const T* y, T* dx, T* dy) const {
    for (int64_t i = 0; i < n && dx; ++i)
      finish_row(cnt, bl, n, i, dxl.get() + (P + i) * RS, rowsum.data() + (P + i) * L, x, dx);
    for (int64_t j = 0; j < m && dy; ++j)
      finish_row(cnt, bl, m, j, dyl.get() + (P + m - 1 - j) * RS, colsum.data() + (P + m - 1 - j) * L, y, dy);
  }

  // out[pair][t][c] = 2 (v[pair][t][c] sum - acc[c][lane]) for row t of the lanes' pairs
  void finish_row(int64_t cnt, const int64_t* bl, int64_t len, int64_t t, const T* acc, const T* sum, const T* v,
                  T* out) const {
    alignas(64) T tr[L * L];
    const T* in[L];
    T* trp[L];
    int64_t c0 = 0;
    for (; c0 + L <= d; c0 += L) {
      for (int64_t k = 0; k < L; ++k) {
        in[k] = acc + (c0 + k) * L;
        trp[k] = tr + k * L;
      }
      transpose_lanes(in, trp);  // tr[l][k] = acc[c0 + k][l]
      for (int64_t l = 0; l < cnt; ++l) {
        const int64_t at = (bl[l] * len + t) * d + c0;
#pragma omp simd
        for (int64_t k = 0; k < L; ++k) out[at + k] = T(2) * (v[at + k] * sum[l] - tr[l * L + k]);
      }
    }
    for (int64_t l = 0; l < cnt; ++l) {
      const int64_t at = (bl[l] * len + t) * d;
      for (int64_t c = c0; c < d; ++c) out[at + c] = T(2) * (v[at + c] * sum[l] - acc[c * L + l]);
    }
  }
};

}  // namespace detail
}  // namespace cpu
}  // namespace abcc
