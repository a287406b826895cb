// Soft-DTW / DILATE CPU kernels. See soft_dtw.h for the conventions and the precision scheme.
//
// Layout of the work: OpenMP over pairs; inside a pair the DP walks anti-diagonals and every
// inner loop runs along one anti-diagonal, whose cells are independent, so it vectorises. The
// loops use "wide" buffers indexed by slot = i + 1 (slot 0 is row -1), with border slots written
// to +BIG (values) or 0 (tangents, alignments), so the loop bodies have no branches.
#include "cpu/soft_dtw.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace abcc {
namespace cpu {
namespace {

constexpr double kLog2e = 1.4426950408889634;

// ---- exp2 / log2 that the compiler can vectorise (float), exact libm for double ----
// exp2 for x <= 0: 2^x = 2^round(x) * 2^f, |f| <= 1/2, 2^f by its degree-7 Taylor series
// (relative error < 1e-8, below float rounding). Inputs below -126 flush to exactly 0, which
// keeps unreachable cells at exactly zero weight.
inline float exp2_fast(float x) {
  const bool under = x < -126.0f;
  x = std::max(x, -126.0f);
  const float fi = std::floor(x + 0.5f);
  const float f = x - fi;
  float p = 1.5252733804059838e-05f;
  p = p * f + 1.5403530393381606e-04f;
  p = p * f + 1.3333558146428441e-03f;
  p = p * f + 9.618129107628477e-03f;
  p = p * f + 5.5504108664821576e-02f;
  p = p * f + 2.402265069591007e-01f;
  p = p * f + 6.931471805599453e-01f;
  p = p * f + 1.0f;
  const int32_t bits = (static_cast<int32_t>(fi) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(float));
  return under ? 0.0f : p * scale;
}

// log2 for positive normal floats: exponent + log2(mantissa), mantissa moved to [sqrt(.5), sqrt(2))
// and log(mant) = 2 atanh(s), s = (mant-1)/(mant+1), |s| < 0.172, series to s^9 (error < 1e-9).
inline float log2_fast(float v) {
  int32_t bits;
  std::memcpy(&bits, &v, sizeof(float));
  const int32_t e = ((bits >> 23) & 0xff) - 127;
  const int32_t mbits = (bits & 0x007fffff) | 0x3f800000;
  float mant;
  std::memcpy(&mant, &mbits, sizeof(float));
  const bool high = mant > 1.41421356f;
  mant = high ? mant * 0.5f : mant;
  const float ef = static_cast<float>(e) + (high ? 1.0f : 0.0f);
  const float s = (mant - 1.0f) / (mant + 1.0f);
  const float s2 = s * s;
  const float poly = ((((1.0f / 9) * s2 + 1.0f / 7) * s2 + 1.0f / 5) * s2 + 1.0f / 3) * s2 + 1.0f;
  return ef + 2.0f * static_cast<float>(kLog2e) * s * poly;
}

template <typename T> struct Math;
template <> struct Math<float> {
  static constexpr float big = 1e30f;  // "infinity" that stays finite under + and -
  static float exp2(float x) { return exp2_fast(x); }
  static float log2(float x) { return log2_fast(x); }
};
template <> struct Math<double> {
  static constexpr double big = 1e300;
  static double exp2(double x) { return x < -1022.0 ? 0.0 : std::exp2(x); }
  static double log2(double x) { return std::log2(x); }
};

// Cells of anti-diagonal k inside the lengths and the band: i in [lo, hi] (empty when lo > hi).
struct Band {
  int64_t n, m;
  double w;  // bandwidth * max(n-1, m-1); < 0: none
  bool inside(int64_t i, int64_t k) const {
    if (w < 0) return true;
    return std::fabs(double(i) * double(m - 1) - double(k - i) * double(n - 1)) <= w;
  }
  void range(int64_t k, int64_t& lo, int64_t& hi) const {
    lo = std::max<int64_t>(0, k - (m - 1));
    hi = std::min<int64_t>(k, n - 1);
    if (w < 0 || lo > hi) return;
    // The band meets the anti-diagonal in one interval around i* = k (n-1)/(n+m-2).
    const double denom = double(n + m - 2);
    const double center = denom > 0 ? double(k) * double(n - 1) / denom : 0.0;
    const double half = denom > 0 ? w / denom : 0.0;
    int64_t blo = std::max<int64_t>(lo, int64_t(std::ceil(center - half)) - 1);
    int64_t bhi = std::min<int64_t>(hi, int64_t(std::floor(center + half)) + 1);
    while (blo <= bhi && !inside(blo, k)) ++blo;
    while (bhi >= blo && !inside(bhi, k)) --bhi;
    lo = blo;
    hi = bhi;
  }
};

template <typename T>
struct PairView {
  const SdtwProblem<T>& p;
  int64_t b, n, m;
  Band band;
  const T* D;      // [N, M] of this pair or null
  const T* x;      // [N] or null
  std::vector<T> y_rev;  // y reversed: y[k - i] = y_rev[m - 1 - k + i], contiguous in i
  const T* omega;  // [N, M] or null

  PairView(const SdtwProblem<T>& prob, int64_t b_) : p(prob), b(b_) {
    n = prob.n[b];
    m = prob.m[b];
    const double span = double(std::max(n - 1, m - 1));
    band = Band{n, m, prob.bandwidth < 0 ? -1.0 : prob.bandwidth * span};
    D = prob.D ? prob.D + b * prob.N * prob.M : nullptr;
    x = prob.x ? prob.x + b * prob.N : nullptr;
    if (prob.y) {
      y_rev.resize(m);
      const T* yb = prob.y + b * prob.M;
      for (int64_t j = 0; j < m; ++j) y_rev[m - 1 - j] = yb[j];
    }
    omega = prob.omega ? prob.omega + b * prob.omega_batch_stride : nullptr;
  }

  // cost of cells (lo + t, k - lo - t), t < len, into out[t]
  void cost(int64_t k, int64_t lo, int64_t len, T* out) const {
    if (D) {
      const T* src = D + lo * p.M + (k - lo);
      const int64_t stride = p.M - 1;
      for (int64_t t = 0; t < len; ++t) out[t] = src[t * stride];
    } else {
      const T* xs = x + lo;
      const T* ys = y_rev.data() + (m - 1 - k + lo);
#pragma omp simd
      for (int64_t t = 0; t < len; ++t) {
        const T d = xs[t] - ys[t];
        out[t] = d * d;
      }
    }
  }

  // Omega of the same cells (DILATE tangent direction)
  void omega_diag(int64_t k, int64_t lo, int64_t len, T* out) const {
    if (omega) {
      const T* src = omega + lo * p.M + (k - lo);
      const int64_t stride = p.M - 1;
      for (int64_t t = 0; t < len; ++t) out[t] = src[t * stride];
    } else {
      const T inv_n = T(1) / T(n), inv_m = T(1) / T(m);
#pragma omp simd
      for (int64_t t = 0; t < len; ++t) {
        const int64_t i = lo + t;
        const T d = T(i + 1) * inv_n - T(k - i + 1) * inv_m;
        out[t] = d * d;
      }
    }
  }
};

// Start offset of each anti-diagonal in the compact diagonal-major store, and the ranges.
struct Diagonals {
  std::vector<int64_t> lo, hi, start;
  int64_t K, n;
  // Slots (slot = i + 1) of a wide buffer holding diagonal k that any step reads or pushes into:
  // its own cells, the predecessors read by diagonals k+1 ((i-1, j) and (i, j-1): slots
  // [lo, hi+1]) and k+2 ((i-1, j-1): slots [lo, hi]). Filling exactly this window before a buffer
  // takes diagonal k keeps stale values out even when a narrow band leaves a diagonal empty
  // (a diagonal step can jump over an anti-diagonal with no cell in the band).
  void window(int64_t k, int64_t& a, int64_t& b) const {
    a = n + 1;
    b = 0;
    auto add = [&](int64_t x, int64_t y) {
      if (x <= y) {
        a = std::min(a, x);
        b = std::max(b, y);
      }
    };
    if (k >= 0 && k < K && lo[k] <= hi[k]) add(lo[k] + 1, hi[k] + 1);
    if (k + 1 >= 0 && k + 1 < K && lo[k + 1] <= hi[k + 1]) add(lo[k + 1], hi[k + 1] + 1);
    if (k + 2 >= 0 && k + 2 < K && lo[k + 2] <= hi[k + 2]) add(lo[k + 2], hi[k + 2]);
    a = std::max<int64_t>(a, 0);
    b = std::min<int64_t>(b, n + 1);
  }
  explicit Diagonals(const Band& band) {
    K = band.n + band.m - 1;
    n = band.n;
    lo.resize(K);
    hi.resize(K);
    start.resize(K + 1);
    start[0] = 0;
    for (int64_t k = 0; k < K; ++k) {
      band.range(k, lo[k], hi[k]);
      start[k + 1] = start[k] + std::max<int64_t>(0, hi[k] - lo[k] + 1);
    }
  }
};

template <typename T>
void forward_pair(const SdtwProblem<T>& p, int64_t b, T* value, T* temporal, T* r_store,
                  T* rt_store, double* off_store) {
  using MathT = Math<T>;
  const T BIG = MathT::big, HALF_BIG = MathT::big / 2;
  const PairView<T> view(p, b);
  const int64_t n = view.n, m = view.m;
  const bool tang = p.want_temporal;
  const T s = T(kLog2e / p.gamma);        // exp(-a/g) = exp2(-a s)
  const T inv_s = T(p.gamma / kLog2e);

  // wide buffers: slot = i + 1
  std::vector<T> buf(3 * (n + 2), BIG), tbuf(tang ? 3 * (n + 2) : 0, T(0));
  T* prev2 = buf.data();
  T* prev1 = prev2 + (n + 2);
  T* cur = prev1 + (n + 2);
  T* tprev2 = tang ? tbuf.data() : nullptr;
  T* tprev1 = tang ? tprev2 + (n + 2) : nullptr;
  T* tcur = tang ? tprev1 + (n + 2) : nullptr;
  std::vector<T> cost(n), om(tang ? n : 0);
  prev2[0] = T(0);  // R_{-1,-1} = 0
  double off_m2 = 0.0, off_m1 = 0.0, off_k = 0.0;
  int64_t store_pos = 0;
  const Diagonals diag(view.band);
  const int64_t K = n + m - 1;
  for (int64_t k = 0; k < K; ++k) {
    const int64_t lo = diag.lo[k], hi = diag.hi[k];
    const int64_t len = hi - lo + 1;
    {
      int64_t wa, wb;
      diag.window(k, wa, wb);
      if (wa <= wb) {
        std::fill(cur + wa, cur + wb + 1, BIG);
        if (tang) std::fill(tcur + wa, tcur + wb + 1, T(0));
      }
    }
    if (len <= 0) {  // no cell of this anti-diagonal lies in the band: all +inf
      off_k = off_m1;
      if (off_store) off_store[k] = off_k;
    } else {
      view.cost(k, lo, len, cost.data());
      if (tang) view.omega_diag(k, lo, len, om.data());
      const T c2 = T(off_m2 - off_m1);  // diagonal k-2 relative to the base off_{k-1}
      T* out = cur + lo + 1;
      const T* a_in = prev2 + lo;       // (i-1, j-1)
      const T* b_in = prev1 + lo;       // (i-1, j)
      const T* c_in = prev1 + lo + 1;   // (i, j-1)
      if (tang) {
        const T* ta = tprev2 + lo;
        const T* tb = tprev1 + lo;
        const T* tc = tprev1 + lo + 1;
        T* tout = tcur + lo + 1;
#pragma omp simd
        for (int64_t t = 0; t < len; ++t) {
          const T a = a_in[t] + c2, bb = b_in[t], c = c_in[t];
          const T mn = std::min(a, std::min(bb, c));
          const T ea = MathT::exp2((mn - a) * s), eb = MathT::exp2((mn - bb) * s),
                  ec = MathT::exp2((mn - c) * s);
          const T S = ea + eb + ec;
          const T sm = mn - MathT::log2(S) * inv_s;
          const bool dead = mn >= HALF_BIG;
          out[t] = dead ? BIG : cost[t] + sm;
          tout[t] = dead ? T(0) : om[t] + (ea * ta[t] + eb * tb[t] + ec * tc[t]) / S;
        }
      } else {
#pragma omp simd
        for (int64_t t = 0; t < len; ++t) {
          const T a = a_in[t] + c2, bb = b_in[t], c = c_in[t];
          const T mn = std::min(a, std::min(bb, c));
          const T S = MathT::exp2((mn - a) * s) + MathT::exp2((mn - bb) * s) + MathT::exp2((mn - c) * s);
          const T sm = mn - MathT::log2(S) * inv_s;
          out[t] = mn >= HALF_BIG ? BIG : cost[t] + sm;
        }
      }
      T rmin = BIG;
#pragma omp simd reduction(min : rmin)
      for (int64_t t = 0; t < len; ++t) rmin = std::min(rmin, out[t]);
      if (rmin >= HALF_BIG) rmin = T(0);
#pragma omp simd
      for (int64_t t = 0; t < len; ++t) out[t] = out[t] >= HALF_BIG ? BIG : out[t] - rmin;
      off_k = off_m1 + double(rmin);
      if (r_store) {
        std::memcpy(r_store + store_pos, out, len * sizeof(T));
        if (tang) std::memcpy(rt_store + store_pos, tcur + lo + 1, len * sizeof(T));
        off_store[k] = off_k;
        store_pos += len;
      }
    }
    std::swap(prev2, prev1);  // rotate: (prev2, prev1, cur) <- (prev1, cur, prev2)
    std::swap(prev1, cur);
    if (tang) {
      std::swap(tprev2, tprev1);
      std::swap(tprev1, tcur);
    }
    off_m2 = off_m1;
    off_m1 = off_k;
  }
  // after the last rotation the final diagonal (the single cell (n-1, m-1)) is prev1
  value[b] = T(off_m1 + double(prev1[n]));
  if (tang) temporal[b] = tprev1[n];
}

// Backward in "push" form. Cells are visited in reverse anti-diagonal order; when cell s is
// reached its alignment E_s is complete (all its successors have pushed into it), and it pushes
// E_s * P_{s->p} into its three predecessors p. The weights P_{s->p} are recomputed from exactly
// the stored relative values the forward used at s, so the three of them sum to 1 up to rounding
// and the flow of E is conserved: no weight is rebuilt from a difference of large numbers such as
// (R_s - cost_s - R_p). The cost is not needed at all. For DILATE the tangent of the same sweep is
// pushed alongside: d/dOmega P_{s->p} = P_{s->p} (mu_s - R'_p) / g with mu_s = sum_q P_{s->q} R'_q.
template <typename T>
void backward_pair(const SdtwProblem<T>& p, int64_t b, const T* r_store, const T* rt_store,
                   const double* off_store, const T* gv, const T* gt, T* G, T* dx, T* dy) {
  using MathT = Math<T>;
  const T BIG = MathT::big;
  const PairView<T> view(p, b);
  const int64_t n = view.n, m = view.m;
  const bool tang = p.want_temporal && rt_store != nullptr;
  const T s = T(kLog2e / p.gamma);
  const T inv_g = T(1.0 / p.gamma);
  const Diagonals diag(view.band);
  const int64_t K = n + m - 1;
  const T g_value = gv ? gv[b] : T(1);
  const T g_temporal = (tang && gt) ? gt[b] : T(0);
  const int64_t W = n + 2;  // wide buffers, slot = i + 1

  // Relative values (and tangents) of diagonals k-1 and k-2, rebuilt from the store with the
  // forward's borders (BIG values, zero tangents); virtual diagonals -1 and -2 as in the forward.
  std::vector<T> rbuf(2 * W, BIG), tbuf(tang ? 2 * W : 0, T(0));
  // Alignment accumulators for diagonals k (complete), k-1 and k-2 (receiving pushes).
  std::vector<T> ebuf(3 * W, T(0)), etbuf(tang ? 3 * W : 0, T(0));
  std::vector<T> pa(n), pb(n), pc(n), ta_push(tang ? n : 0), tb_push(tang ? n : 0), tc_push(tang ? n : 0), grad(n);
  std::vector<T> dy_rev(dy ? m : 0, T(0));

  auto load = [&](int64_t k, T* rw, T* tw) {  // wide copy of diagonal k (k >= -2)
    if (k < 0) {
      std::fill(rw, rw + W, BIG);
      if (tw) std::fill(tw, tw + W, T(0));
      if (k == -2) rw[0] = T(0);  // R_{-1,-1} = 0
      return;
    }
    const int64_t lo = diag.lo[k], hi = diag.hi[k];
    int64_t wa, wb;
    diag.window(k, wa, wb);
    if (wa <= wb) {
      std::fill(rw + wa, rw + wb + 1, BIG);
      if (tw) std::fill(tw + wa, tw + wb + 1, T(0));
    }
    if (lo > hi) return;
    std::memcpy(rw + lo + 1, r_store + diag.start[k], (hi - lo + 1) * sizeof(T));
    if (tw) std::memcpy(tw + lo + 1, rt_store + diag.start[k], (hi - lo + 1) * sizeof(T));
  };
  auto off = [&](int64_t k) { return k < 0 ? 0.0 : off_store[k]; };
  auto clear = [&](T* buf, int64_t k) {  // zero the slots diagonal k can receive pushes in
    if (k < 0) return;
    int64_t wa, wb;
    diag.window(k, wa, wb);
    if (wa <= wb) std::fill(buf + wa, buf + wb + 1, T(0));
  };

  T *R1 = rbuf.data(), *R2 = R1 + W;                       // r of k-1, k-2
  T *T1 = tang ? tbuf.data() : nullptr, *T2 = tang ? T1 + W : nullptr;
  T *E0 = ebuf.data(), *E1 = E0 + W, *E2 = E1 + W;         // alignment of k, k-1, k-2
  T *ET0 = tang ? etbuf.data() : nullptr, *ET1 = tang ? ET0 + W : nullptr, *ET2 = tang ? ET1 + W : nullptr;
  load(K - 2, R1, T1);
  load(K - 3, R2, T2);
  E0[n] = T(1);  // E_{n-1, m-1} = dR/dR = 1 (slot n is row n-1)
  clear(E1, K - 2);
  clear(E2, K - 3);
  if (tang) {
    clear(ET1, K - 2);
    clear(ET2, K - 3);
  }

  for (int64_t k = K - 1; k >= 0; --k) {
    const int64_t lo = diag.lo[k], hi = diag.hi[k];
    const int64_t len = hi - lo + 1;
    if (len > 0) {
      const T c2 = T(off(k - 2) - off(k - 1));  // same base shift the forward used at k
      const T* a_in = R2 + lo;      // (i-1, j-1)
      const T* b_in = R1 + lo;      // (i-1, j)
      const T* c_in = R1 + lo + 1;  // (i, j-1)
      const T* e_s = E0 + lo + 1;
      if (tang) {
        const T* ta = T2 + lo;
        const T* tb = T1 + lo;
        const T* tc = T1 + lo + 1;
        const T* et_s = ET0 + lo + 1;
#pragma omp simd
        for (int64_t t = 0; t < len; ++t) {
          const T a = a_in[t] + c2, bb = b_in[t], c = c_in[t];
          const T mn = std::min(a, std::min(bb, c));
          const T ea = MathT::exp2((mn - a) * s), eb = MathT::exp2((mn - bb) * s), ec = MathT::exp2((mn - c) * s);
          const T inv = T(1) / (ea + eb + ec);
          const T Pa = ea * inv, Pb = eb * inv, Pc = ec * inv;
          const T E = e_s[t], ET = et_s[t];
          const T mu = Pa * ta[t] + Pb * tb[t] + Pc * tc[t];
          pa[t] = Pa * E;
          pb[t] = Pb * E;
          pc[t] = Pc * E;
          ta_push[t] = Pa * (ET + E * (mu - ta[t]) * inv_g);
          tb_push[t] = Pb * (ET + E * (mu - tb[t]) * inv_g);
          tc_push[t] = Pc * (ET + E * (mu - tc[t]) * inv_g);
          grad[t] = g_value * E + g_temporal * ET;
        }
      } else {
#pragma omp simd
        for (int64_t t = 0; t < len; ++t) {
          const T a = a_in[t] + c2, bb = b_in[t], c = c_in[t];
          const T mn = std::min(a, std::min(bb, c));
          const T ea = MathT::exp2((mn - a) * s), eb = MathT::exp2((mn - bb) * s), ec = MathT::exp2((mn - c) * s);
          const T E = e_s[t] / (ea + eb + ec);
          pa[t] = ea * E;
          pb[t] = eb * E;
          pc[t] = ec * E;
          grad[t] = g_value * e_s[t];
        }
      }
      // push into the predecessors (three loops so no two lanes write the same slot)
      {
        T* e2 = E2 + lo;
        T* e1b = E1 + lo;
        T* e1c = E1 + lo + 1;
#pragma omp simd
        for (int64_t t = 0; t < len; ++t) e2[t] += pa[t];
#pragma omp simd
        for (int64_t t = 0; t < len; ++t) e1b[t] += pb[t];
#pragma omp simd
        for (int64_t t = 0; t < len; ++t) e1c[t] += pc[t];
      }
      if (tang) {
        T* e2 = ET2 + lo;
        T* e1b = ET1 + lo;
        T* e1c = ET1 + lo + 1;
#pragma omp simd
        for (int64_t t = 0; t < len; ++t) e2[t] += ta_push[t];
#pragma omp simd
        for (int64_t t = 0; t < len; ++t) e1b[t] += tb_push[t];
#pragma omp simd
        for (int64_t t = 0; t < len; ++t) e1c[t] += tc_push[t];
      }
      // dL/dcost of this diagonal
      if (G) {
        T* dst = G + b * p.N * p.M + lo * p.M + (k - lo);
        const int64_t stride = p.M - 1;
        for (int64_t t = 0; t < len; ++t) dst[t * stride] = grad[t];
      } else {
        // cost = (x_i - y_j)^2: dx_i += 2 G (x_i - y_j), dy_j -= 2 G (x_i - y_j)
        T* dxb = dx + b * p.N + lo;
        const T* xs = view.x + lo;
        const T* ys = view.y_rev.data() + (m - 1 - k + lo);
        T* dys = dy_rev.data() + (m - 1 - k + lo);
#pragma omp simd
        for (int64_t t = 0; t < len; ++t) {
          const T gd = T(2) * grad[t] * (xs[t] - ys[t]);
          dxb[t] += gd;
          dys[t] -= gd;
        }
      }
    }
    // move down one diagonal: k-1 becomes current, k-2 becomes k-1, load k-3
    std::swap(E0, E1);  // E0 <- k-1 (complete now)
    std::swap(E1, E2);  // E1 <- k-2; E2 <- old k buffer, reused for k-3
    clear(E2, k - 3);
    if (tang) {
      std::swap(ET0, ET1);
      std::swap(ET1, ET2);
      clear(ET2, k - 3);
    }
    std::swap(R1, R2);  // R1 <- k-2; R2 <- k-3 (loaded next)
    if (tang) std::swap(T1, T2);
    load(k - 3, R2, T2);
  }
  if (dy) {
    T* dyb = dy + b * p.M;
    for (int64_t j = 0; j < m; ++j) dyb[j] = dy_rev[m - 1 - j];
  }
}

}  // namespace

template <typename T>
void sdtw_forward(const SdtwProblem<T>& p, T* value, T* temporal, T* r_store, T* rt_store,
                  double* off_store) {
  const int64_t NM = p.N * p.M, K = p.N + p.M - 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(p.threads) if (p.threads > 1)
  for (int64_t b = 0; b < p.B; ++b) {
    forward_pair<T>(p, b, value, temporal, r_store ? r_store + b * NM : nullptr,
                    rt_store ? rt_store + b * NM : nullptr, off_store ? off_store + b * K : nullptr);
  }
}

template <typename T>
void sdtw_backward(const SdtwProblem<T>& p, const T* r_store, const T* rt_store,
                   const double* off_store, const T* gv, const T* gt, T* G, T* dx, T* dy) {
  const int64_t NM = p.N * p.M, K = p.N + p.M - 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(p.threads) if (p.threads > 1)
  for (int64_t b = 0; b < p.B; ++b) {
    backward_pair<T>(p, b, r_store + b * NM, rt_store ? rt_store + b * NM : nullptr,
                     off_store + b * K, gv, gt, G, dx, dy);
  }
}

int omp_max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

template void sdtw_forward<float>(const SdtwProblem<float>&, float*, float*, float*, float*, double*);
template void sdtw_forward<double>(const SdtwProblem<double>&, double*, double*, double*, double*, double*);
template void sdtw_backward<float>(const SdtwProblem<float>&, const float*, const float*, const double*,
                                   const float*, const float*, float*, float*, float*);
template void sdtw_backward<double>(const SdtwProblem<double>&, const double*, const double*, const double*,
                                    const double*, const double*, double*, double*, double*);

}  // namespace cpu
}  // namespace abcc
