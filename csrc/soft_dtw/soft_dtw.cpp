// Soft-DTW / DILATE CPU kernels. See soft_dtw.h for the conventions and the precision scheme.
//
// Layout of the work: OpenMP over pairs; inside a pair the DP walks anti-diagonals and every
// inner loop runs along one anti-diagonal, whose cells are independent, so it vectorises. The
// loops use "wide" buffers indexed by slot = i + 1 (slot 0 is row -1), with border slots written
// to +inf (values) or 0 (tangents, alignments), so the loop bodies have no branches.
#include "soft_dtw/soft_dtw.h"
#include "soft_dtw/soft_dtw_common.h"
#include "soft_dtw/soft_dtw_features.h"

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

using namespace detail;

template <typename T>
struct PairView {
  const SdtwProblem<T>& p;
  int64_t b, n, m;
  Band band;
  const T* D;      // [N, M] of this pair or null
  const T* x;      // univariate (d = 1): [N] or null; d > 1 is PairFeatures' business
  std::vector<T> y_rev;  // y reversed: y[k - i] = y_rev[m - 1 - k + i], contiguous in i
  const T* omega;  // [N, M] or null

  PairView(const SdtwProblem<T>& prob, int64_t b_) : p(prob), b(b_) {
    n = prob.n[b];
    m = prob.m[b];
    const double span = double(std::max(n - 1, m - 1));
    band = Band{n, m, prob.bandwidth < 0 ? -1.0 : prob.bandwidth * span};
    D = prob.D ? prob.D + b * prob.N * prob.M : nullptr;
    x = (prob.x && prob.d == 1) ? prob.x + b * prob.N : nullptr;
    if (prob.y && prob.d == 1) {
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

template <typename T>
void forward_pair(const SdtwProblem<T>& p, int64_t b, T* value, T* temporal, T* r_store,
                  T* rt_store, double* off_store) {
  const FlushDenormals ftz;
  const T INF = kInf<T>;
  const PairView<T> view(p, b);
  const int64_t n = view.n, m = view.m;
  const bool tang = p.want_temporal;
  const T s = T(kLog2e / p.gamma);        // exp(-a/g) = exp2(-a s)
  const T inv_s = T(p.gamma / kLog2e);

  // wide buffers: slot = i + 1
  std::vector<T> buf(3 * (n + 2), INF), tbuf(tang ? 3 * (n + 2) : 0, T(0));
  T* prev2 = buf.data();
  T* prev1 = prev2 + (n + 2);
  T* cur = prev1 + (n + 2);
  T* tprev2 = tang ? tbuf.data() : nullptr;
  T* tprev1 = tang ? tprev2 + (n + 2) : nullptr;
  T* tcur = tang ? tprev1 + (n + 2) : nullptr;
  std::vector<T> cost(n), om(tang ? n : 0);
  // d > 1: costs of S diagonals at a time from the features (soft_dtw_features.h)
  const bool feats = p.x && p.d > 1;
  constexpr int64_t S = BlockSize<T>::S;
  PairFeatures<T> feat;
  if (feats) feat.init(p.x + b * p.N * p.d, p.y + b * p.M * p.d, n, m, p.d, false);
  int64_t k0 = 0;
  prev2[0] = T(0);  // R_{-1,-1} = 0
  double off_m2 = 0.0, off_m1 = 0.0, off_k = 0.0;
  int64_t store_pos = 0;
  const Diagonals diag(view.band);
  const int64_t K = n + m - 1;
  for (int64_t k = 0; k < K; ++k) {
    const int64_t lo = diag.lo[k], hi = diag.hi[k];
    const int64_t len = hi - lo + 1;
    if (feats && k % S == 0) {
      k0 = k;
      feat.cost_block(diag, k, std::min(k + S, K));
    }
    {
      int64_t wa, wb;
      diag.window(k, wa, wb);
      if (wa <= wb) {
        std::fill(cur + wa, cur + wb + 1, INF);
        if (tang) std::fill(tcur + wa, tcur + wb + 1, T(0));
      }
    }
    if (len <= 0) {  // no cell of this anti-diagonal lies in the band: all +inf
      off_k = off_m1;
      if (off_store) off_store[k] = off_k;
    } else {
      const T* cst = cost.data();
      if (feats)
        cst = feat.costs(k0, k) + lo;
      else
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
          T mn, ea, eb, ec, S;
          const T sm = softmin3(a_in[t] + c2, b_in[t], c_in[t], s, inv_s, mn, ea, eb, ec, S);
          const bool dead = mn == INF;
          out[t] = dead ? INF : cst[t] + sm;
          tout[t] = dead ? T(0) : om[t] + (ea * ta[t] + eb * tb[t] + ec * tc[t]) * Math<T>::recip(S);
        }
      } else {
#pragma omp simd
        for (int64_t t = 0; t < len; ++t) {
          T mn, ea, eb, ec, S;
          const T sm = softmin3(a_in[t] + c2, b_in[t], c_in[t], s, inv_s, mn, ea, eb, ec, S);
          out[t] = mn == INF ? INF : cst[t] + sm;
        }
      }
      T rmin = INF;
#pragma omp simd reduction(min : rmin)
      for (int64_t t = 0; t < len; ++t) rmin = std::min(rmin, out[t]);
      if (rmin == INF) rmin = T(0);
#pragma omp simd
      for (int64_t t = 0; t < len; ++t) out[t] -= rmin;  // +inf stays +inf
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
  const FlushDenormals ftz;
  const T INF = kInf<T>;
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
  // forward's borders (+inf values, zero tangents); virtual diagonals -1 and -2 as in the forward.
  std::vector<T> rbuf(2 * W, INF), tbuf(tang ? 2 * W : 0, T(0));
  // Alignment accumulators for diagonals k (complete), k-1 and k-2 (receiving pushes).
  std::vector<T> ebuf(3 * W, T(0)), etbuf(tang ? 3 * W : 0, T(0));
  std::vector<T> pa(n), pb(n), pc(n), ta_push(tang ? n : 0), tb_push(tang ? n : 0), tc_push(tang ? n : 0), grad(n);
  const bool feats = !G && p.d > 1;
  constexpr int64_t S = BlockSize<T>::S;
  PairFeatures<T> feat;
  if (feats) feat.init(p.x + b * p.N * p.d, p.y + b * p.M * p.d, n, m, p.d, true, dx != nullptr, dy != nullptr);
  std::vector<T> dy_rev(!G && !feats ? m : 0, T(0)), dx_scratch(!G && !feats && !dx ? n : 0, T(0));

  auto load = [&](int64_t k, T* rw, T* tw) {  // wide copy of diagonal k (k >= -2)
    if (k < 0) {
      std::fill(rw, rw + W, INF);
      if (tw) std::fill(tw, tw + W, T(0));
      if (k == -2) rw[0] = T(0);  // R_{-1,-1} = 0
      return;
    }
    const int64_t lo = diag.lo[k], hi = diag.hi[k];
    int64_t wa, wb;
    diag.window(k, wa, wb);
    if (wa <= wb) {
      std::fill(rw + wa, rw + wb + 1, INF);
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
          T mn, ea, eb, ec, S;
          softmin3(a_in[t] + c2, b_in[t], c_in[t], s, s, mn, ea, eb, ec, S);
          const bool dead = mn == INF;  // pushes nothing (its weights would be NaN)
          const T inv = Math<T>::recip(S);
          const T Pa = dead ? T(0) : ea * inv, Pb = dead ? T(0) : eb * inv, Pc = dead ? T(0) : ec * inv;
          const T E = e_s[t], ET = et_s[t];
          const T mu = Pa * ta[t] + Pb * tb[t] + Pc * tc[t];
          pa[t] = Pa * E;
          pb[t] = Pb * E;
          pc[t] = Pc * E;
          ta_push[t] = Pa * (ET + E * (mu - ta[t]) * inv_g);
          tb_push[t] = Pb * (ET + E * (mu - tb[t]) * inv_g);
          tc_push[t] = Pc * (ET + E * (mu - tc[t]) * inv_g);
          grad[t] = dead ? T(0) : g_value * E + g_temporal * ET;
        }
      } else {
#pragma omp simd
        for (int64_t t = 0; t < len; ++t) {
          T mn, ea, eb, ec, S;
          softmin3(a_in[t] + c2, b_in[t], c_in[t], s, s, mn, ea, eb, ec, S);
          const bool dead = mn == INF;
          const T E = e_s[t] * Math<T>::recip(S);
          pa[t] = dead ? T(0) : ea * E;
          pb[t] = dead ? T(0) : eb * E;
          pc[t] = dead ? T(0) : ec * E;
          grad[t] = dead ? T(0) : g_value * e_s[t];
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
      } else if (feats) {
        feat.put_grad(k - k % S, k, lo, len, grad.data());
      } else {
        // cost = (x_i - y_j)^2: dx_i += 2 G (x_i - y_j), dy_j -= 2 G (x_i - y_j)
        // (an unneeded gradient accumulates into a scratch row and is dropped)
        T* dxb = (dx ? dx + b * p.N : dx_scratch.data()) + lo;
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
    if (feats && k % S == 0) feat.grad_block(diag, k, std::min(k + S, K));
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
  if (feats) {
    feat.finish(p.x + b * p.N * p.d, p.y + b * p.M * p.d, dx ? dx + b * p.N * p.d : nullptr,
                dy ? dy + b * p.M * p.d : nullptr);
  } else if (dy) {
    T* dyb = dy + b * p.M;
    for (int64_t j = 0; j < m; ++j) dyb[j] = dy_rev[m - 1 - j];
  }
}

template <typename T>
bool every_pair_full_length(const SdtwProblem<T>& p) {
  for (int64_t b = 0; b < p.B; ++b)
    if (p.n[b] != p.N || p.m[b] != p.M) return false;
  return true;
}

}  // namespace

template <typename T>
int64_t sdtw_lane_width(const SdtwProblem<T>& p) {
  if (p.engine == 1 || p.B == 0) return 0;
  if (!every_pair_full_length(p)) return 0;  // lanes share one diagonal sweep
  if (p.engine >= 2) return kLanes;
  // Measured (one core, AVX-512): with full groups the lanes win at every length (2-3x at N = 32,
  // 1.2-2x at N = 512-2048); half-empty groups still win while a diagonal of one pair is too
  // short to fill the pair engine's vectors, and lose at B = 4-8 for long series.
  const double diag_len = p.bandwidth < 0 ? double(std::min(p.N, p.M))
                                          : std::min(double(std::min(p.N, p.M)), 2.0 * p.bandwidth + 1.0);
  // A given cost matrix is read with one gather per lane (stride N*M): past ~512^2 cells per pair
  // those loads miss the caches and the pair engine's contiguous diagonal reads win (2x at 2048).
  if (p.D && p.N * p.M > 512 * 512) return 0;
  if (p.B >= kLanes) return kLanes;
  return (p.B >= kLanes / 4 && diag_len <= 64) ? kLanes : 0;
}

template <typename T>
bool sdtw_backward_writes_all(const SdtwProblem<T>& p) {
  return every_pair_full_length(p) && (sdtw_lane_width(p) > 0 || p.d > 1);
}

template <typename T>
void sdtw_forward(const SdtwProblem<T>& p, T* value, T* temporal, T* r_store, T* rt_store,
                  double* off_store) {
  if (sdtw_lane_width(p) > 0) return forward_lanes(p, value, temporal, r_store, rt_store, off_store);
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
  if (sdtw_lane_width(p) > 0) return backward_lanes(p, r_store, rt_store, off_store, gv, gt, G, dx, dy);
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

template int64_t sdtw_lane_width<float>(const SdtwProblem<float>&);
template int64_t sdtw_lane_width<double>(const SdtwProblem<double>&);
template bool sdtw_backward_writes_all<float>(const SdtwProblem<float>&);
template bool sdtw_backward_writes_all<double>(const SdtwProblem<double>&);
template void sdtw_forward<float>(const SdtwProblem<float>&, float*, float*, float*, float*, double*);
template void sdtw_forward<double>(const SdtwProblem<double>&, double*, double*, double*, double*, double*);
template void sdtw_backward<float>(const SdtwProblem<float>&, const float*, const float*, const double*,
                                   const float*, const float*, float*, float*, float*);
template void sdtw_backward<double>(const SdtwProblem<double>&, const double*, const double*, const double*,
                                    const double*, const double*, double*, double*, double*);

}  // namespace cpu
}  // namespace abcc
