// Soft-DTW / DILATE on the CPU for many short (or narrowly banded) series: one pair per SIMD lane.
//
// The pair engine (soft_dtw.cpp) vectorises along one anti-diagonal of one pair; at N ~ 32 a
// diagonal holds a couple of vectors at most and the per-diagonal bookkeeping (band ranges, border
// fills, the minimum and the shift of the relative store) costs as much as the cells. Here
// kLanes pairs of the same lengths run side by side: every buffer is [slot][lane], the diagonal
// sweep and its bookkeeping are shared by the group, and every inner loop runs over the lanes,
// with the cells of a diagonal (independent of each other) giving the out-of-order core its
// parallelism. The arithmetic per lane is exactly the pair engine's: the same relative store
// with float64 offsets per diagonal (now one per lane), the same softmin and exp2/log2, the same
// push-form backward and DILATE tangent, so both engines give the same numbers.
//
// Groups: pairs g*kLanes .. g*kLanes + kLanes - 1; the lanes of a last, partial group repeat the
// last pair and write nothing out. The saved state is per group: r/rt [group][cell][lane] with
// cells diagonal-major as in the pair engine, off [group][diagonal][lane].
#include "soft_dtw/soft_dtw.h"
#include "soft_dtw/soft_dtw_common.h"
#include "soft_dtw/soft_dtw_features.h"

namespace abcc {
namespace cpu {
namespace detail {
namespace {

constexpr int64_t L = kLanes;

template <typename T>
struct LaneGroup {
  const SdtwProblem<T>& p;
  int64_t n, m, cnt;           // lengths (shared by the group) and real lanes
  int64_t bl[L];               // pair of each lane
  std::vector<T> xl, yl;       // univariate (d = 1): x [n][L] and y reversed [m][L] (y[j] at m-1-j)

  LaneGroup(const SdtwProblem<T>& prob, int64_t g) : p(prob), n(prob.N), m(prob.M) {
    cnt = std::min<int64_t>(L, p.B - g * L);
    for (int64_t l = 0; l < L; ++l) bl[l] = g * L + std::min<int64_t>(l, cnt - 1);
    if (p.x && p.d == 1) {
      xl.resize(n * L);
      yl.resize(m * L);
      for (int64_t l = 0; l < L; ++l) {
        const T* xb = p.x + bl[l] * p.N;
        const T* yb = p.y + bl[l] * p.M;
        for (int64_t i = 0; i < n; ++i) xl[i * L + l] = xb[i];
        for (int64_t j = 0; j < m; ++j) yl[(m - 1 - j) * L + l] = yb[j];
      }
    }
  }

  void cost(int64_t i, int64_t j, T* out) const {
    if (p.D) {
      const int64_t NM = p.N * p.M, at = i * p.M + j;
      for (int64_t l = 0; l < L; ++l) out[l] = p.D[bl[l] * NM + at];
    } else {
      const T* xs = xl.data() + i * L;
      const T* ys = yl.data() + (m - 1 - j) * L;
#pragma omp simd
      for (int64_t l = 0; l < L; ++l) {
        const T d = xs[l] - ys[l];
        out[l] = d * d;
      }
    }
  }

  // Omega of cell (i, j) per lane (custom Omega) or one value for all lanes (default Omega)
  void omega(int64_t i, int64_t j, T* out) const {
    if (p.omega) {
      const int64_t at = i * p.M + j;
      for (int64_t l = 0; l < L; ++l) out[l] = p.omega[bl[l] * p.omega_batch_stride + at];
    } else {
      const T d = T(i + 1) * (T(1) / T(n)) - T(j + 1) * (T(1) / T(m));
      for (int64_t l = 0; l < L; ++l) out[l] = d * d;
    }
  }
};

// Costs and G of the whole matrix at once for short series (engine code 3 pins the blocks).
template <typename T>
bool lane_whole_matrix(const SdtwProblem<T>& p, const Diagonals& diag) {
  return p.engine != 3 && LaneFeatures<T>::whole_matrix_fits(diag, p.N, p.M);
}

template <typename T>
void fill_window(const Diagonals& diag, int64_t k, T* buf, T v) {
  int64_t wa, wb;
  diag.window(k, wa, wb);
  if (wa <= wb) std::fill(buf + wa * L, buf + (wb + 1) * L, v);
}

template <typename T>
void forward_group(const SdtwProblem<T>& p, const Diagonals& diag, int64_t g, T* value, T* temporal,
                   T* r_store, T* rt_store, double* off_store) {
  const FlushDenormals ftz;
  const T INF = kInf<T>;
  const LaneGroup<T> grp(p, g);
  const int64_t n = grp.n, m = grp.m, K = n + m - 1, W = (n + 2) * L;
  const bool tang = p.want_temporal;
  const T s = T(kLog2e / p.gamma), inv_s = T(p.gamma / kLog2e);
  std::vector<T> buf(3 * W, INF), tbuf(tang ? 3 * W : 0, T(0));
  T *prev2 = buf.data(), *prev1 = prev2 + W, *cur = prev1 + W;
  T *tprev2 = tang ? tbuf.data() : nullptr, *tprev1 = tang ? tprev2 + W : nullptr,
    *tcur = tang ? tprev1 + W : nullptr;
  for (int64_t l = 0; l < L; ++l) prev2[l] = T(0);  // R_{-1,-1} = 0
  alignas(64) double off_m2[L] = {}, off_m1[L] = {}, off_k[L];
  alignas(64) T c2[L], rmin[L], cst[L], omv[L];
  // d > 1: costs of S diagonals at a time from the features (soft_dtw_features.h)
  const bool feats = p.x && p.d > 1;
  constexpr int64_t S = LaneFeatures<T>::S;
  LaneFeatures<T> feat;
  if (feats) feat.init(p.x, p.y, p.N, p.M, p.d, grp.bl, false, lane_whole_matrix(p, diag));
  int64_t k0 = 0;
  for (int64_t k = 0; k < K; ++k) {
    const int64_t lo = diag.lo[k], hi = diag.hi[k], len = hi - lo + 1;
    if (feats && k % S == 0) {
      k0 = k;
      feat.cost_block(diag, k, std::min(k + S, K));
    }
    fill_window(diag, k, cur, INF);
    if (tang) fill_window(diag, k, tcur, T(0));
    if (len <= 0) {
      for (int64_t l = 0; l < L; ++l) off_k[l] = off_m1[l];
    } else {
      for (int64_t l = 0; l < L; ++l) {
        c2[l] = T(off_m2[l] - off_m1[l]);
        rmin[l] = INF;
      }
      for (int64_t i = lo; i <= hi; ++i) {
        const int64_t j = k - i;
        const T* cs = cst;
        if (feats)
          cs = feat.cost(k0, k, i);
        else
          grp.cost(i, j, cst);
        const T* a_in = prev2 + i * L;        // (i-1, j-1)
        const T* b_in = prev1 + i * L;        // (i-1, j)
        const T* c_in = prev1 + (i + 1) * L;  // (i, j-1)
        T* out = cur + (i + 1) * L;
        if (tang) {
          grp.omega(i, j, omv);
          const T* ta = tprev2 + i * L;
          const T* tb = tprev1 + i * L;
          const T* tc = tprev1 + (i + 1) * L;
          T* tout = tcur + (i + 1) * L;
#pragma omp simd
          for (int64_t l = 0; l < L; ++l) {
            T mn, ea, eb, ec, S;
            const T sm = softmin3(a_in[l] + c2[l], b_in[l], c_in[l], s, inv_s, mn, ea, eb, ec, S);
            const bool dead = mn == INF;
            const T o = dead ? INF : cs[l] + sm;
            out[l] = o;
            tout[l] = dead ? T(0) : omv[l] + (ea * ta[l] + eb * tb[l] + ec * tc[l]) * Math<T>::recip(S);
            rmin[l] = std::min(rmin[l], o);
          }
        } else {
#pragma omp simd
          for (int64_t l = 0; l < L; ++l) {
            T mn, ea, eb, ec, S;
            const T sm = softmin3(a_in[l] + c2[l], b_in[l], c_in[l], s, inv_s, mn, ea, eb, ec, S);
            const T o = mn == INF ? INF : cs[l] + sm;
            out[l] = o;
            rmin[l] = std::min(rmin[l], o);
          }
        }
      }
      for (int64_t l = 0; l < L; ++l) {
        if (rmin[l] == INF) rmin[l] = T(0);
        off_k[l] = off_m1[l] + double(rmin[l]);
      }
      for (int64_t i = lo; i <= hi; ++i) {
        T* out = cur + (i + 1) * L;
#pragma omp simd
        for (int64_t l = 0; l < L; ++l) out[l] -= rmin[l];  // +inf stays +inf
      }
      if (r_store) {
        std::memcpy(r_store + diag.start[k] * L, cur + (lo + 1) * L, len * L * sizeof(T));
        if (tang) std::memcpy(rt_store + diag.start[k] * L, tcur + (lo + 1) * L, len * L * sizeof(T));
      }
    }
    if (off_store) std::memcpy(off_store + k * L, off_k, L * sizeof(double));
    std::swap(prev2, prev1);
    std::swap(prev1, cur);
    if (tang) {
      std::swap(tprev2, tprev1);
      std::swap(tprev1, tcur);
    }
    std::memcpy(off_m2, off_m1, sizeof(off_m1));
    std::memcpy(off_m1, off_k, sizeof(off_k));
  }
  for (int64_t l = 0; l < grp.cnt; ++l) {
    value[grp.bl[l]] = T(off_m1[l] + double(prev1[n * L + l]));
    if (tang) temporal[grp.bl[l]] = tprev1[n * L + l];
  }
}

template <typename T>
void backward_group(const SdtwProblem<T>& p, const Diagonals& diag, int64_t g, const T* r_store,
                    const T* rt_store, const double* off_store, const T* gv, const T* gt, T* G, T* dx, T* dy) {
  const FlushDenormals ftz;
  const T INF = kInf<T>;
  const LaneGroup<T> grp(p, g);
  const int64_t n = grp.n, m = grp.m, K = n + m - 1, W = (n + 2) * L;
  const bool tang = p.want_temporal && rt_store != nullptr;
  const T s = T(kLog2e / p.gamma), inv_g = T(1.0 / p.gamma);
  alignas(64) T g_value[L], g_temporal[L], c2[L], grad[L];
  for (int64_t l = 0; l < L; ++l) {
    g_value[l] = gv ? gv[grp.bl[l]] : T(1);
    g_temporal[l] = (tang && gt) ? gt[grp.bl[l]] : T(0);
  }
  std::vector<T> rbuf(2 * W, INF), tbuf(tang ? 2 * W : 0, T(0));
  std::vector<T> ebuf(3 * W, T(0)), etbuf(tang ? 3 * W : 0, T(0));
  const bool feats = !G && p.d > 1;
  constexpr int64_t S = LaneFeatures<T>::S;
  LaneFeatures<T> feat;
  if (feats) feat.init(p.x, p.y, p.N, p.M, p.d, grp.bl, true, lane_whole_matrix(p, diag), dx != nullptr, dy != nullptr);
  std::vector<T> dxl(G || feats ? 0 : n * L, T(0)), dyl(G || feats ? 0 : m * L, T(0));

  auto load = [&](int64_t k, T* rw, T* tw) {  // wide copy of diagonal k (k >= -2)
    if (k < 0) {
      std::fill(rw, rw + W, INF);
      if (tw) std::fill(tw, tw + W, T(0));
      if (k == -2) std::fill(rw, rw + L, T(0));  // R_{-1,-1} = 0
      return;
    }
    fill_window(diag, k, rw, INF);
    if (tw) fill_window(diag, k, tw, T(0));
    const int64_t lo = diag.lo[k], hi = diag.hi[k];
    if (lo > hi) return;
    std::memcpy(rw + (lo + 1) * L, r_store + diag.start[k] * L, (hi - lo + 1) * L * sizeof(T));
    if (tw) std::memcpy(tw + (lo + 1) * L, rt_store + diag.start[k] * L, (hi - lo + 1) * L * sizeof(T));
  };
  auto clear = [&](T* b, int64_t k) {
    if (k >= 0) fill_window(diag, k, b, T(0));
  };

  T *R1 = rbuf.data(), *R2 = R1 + W;
  T *T1 = tang ? tbuf.data() : nullptr, *T2 = tang ? T1 + W : nullptr;
  T *E0 = ebuf.data(), *E1 = E0 + W, *E2 = E1 + W;
  T *ET0 = tang ? etbuf.data() : nullptr, *ET1 = tang ? ET0 + W : nullptr, *ET2 = tang ? ET1 + W : nullptr;
  load(K - 2, R1, T1);
  load(K - 3, R2, T2);
  std::fill(E0 + n * L, E0 + (n + 1) * L, T(1));  // E_{n-1, m-1} = 1
  clear(E1, K - 2);
  clear(E2, K - 3);
  if (tang) {
    clear(ET1, K - 2);
    clear(ET2, K - 3);
  }
  const int64_t NM = p.N * p.M;
  for (int64_t k = K - 1; k >= 0; --k) {
    const int64_t lo = diag.lo[k], hi = diag.hi[k];
    if (lo <= hi) {
      for (int64_t l = 0; l < L; ++l) {
        const double o2 = k >= 2 ? off_store[(k - 2) * L + l] : 0.0;
        const double o1 = k >= 1 ? off_store[(k - 1) * L + l] : 0.0;
        c2[l] = T(o2 - o1);
      }
      for (int64_t i = lo; i <= hi; ++i) {
        const int64_t j = k - i;
        const T* a_in = R2 + i * L;
        const T* b_in = R1 + i * L;
        const T* c_in = R1 + (i + 1) * L;
        const T* e_s = E0 + (i + 1) * L;
        T* e2 = E2 + i * L;
        T* e1b = E1 + i * L;
        T* e1c = E1 + (i + 1) * L;
        if (tang) {
          const T* ta = T2 + i * L;
          const T* tb = T1 + i * L;
          const T* tc = T1 + (i + 1) * L;
          const T* et_s = ET0 + (i + 1) * L;
          T* et2 = ET2 + i * L;
          T* et1b = ET1 + i * L;
          T* et1c = ET1 + (i + 1) * L;
#pragma omp simd
          for (int64_t l = 0; l < L; ++l) {
            T mn, ea, eb, ec, S;
            softmin3(a_in[l] + c2[l], b_in[l], c_in[l], s, s, mn, ea, eb, ec, S);
            const bool dead = mn == INF;
            const T inv = Math<T>::recip(S);
            const T Pa = dead ? T(0) : ea * inv, Pb = dead ? T(0) : eb * inv, Pc = dead ? T(0) : ec * inv;
            const T E = e_s[l], ET = et_s[l];
            const T mu = Pa * ta[l] + Pb * tb[l] + Pc * tc[l];
            e2[l] += Pa * E;
            e1b[l] += Pb * E;
            e1c[l] += Pc * E;
            et2[l] += Pa * (ET + E * (mu - ta[l]) * inv_g);
            et1b[l] += Pb * (ET + E * (mu - tb[l]) * inv_g);
            et1c[l] += Pc * (ET + E * (mu - tc[l]) * inv_g);
            grad[l] = dead ? T(0) : g_value[l] * E + g_temporal[l] * ET;
          }
        } else {
#pragma omp simd
          for (int64_t l = 0; l < L; ++l) {
            T mn, ea, eb, ec, S;
            softmin3(a_in[l] + c2[l], b_in[l], c_in[l], s, s, mn, ea, eb, ec, S);
            const bool dead = mn == INF;
            const T E = e_s[l] * Math<T>::recip(S);
            e2[l] += dead ? T(0) : ea * E;
            e1b[l] += dead ? T(0) : eb * E;
            e1c[l] += dead ? T(0) : ec * E;
            grad[l] = dead ? T(0) : g_value[l] * e_s[l];
          }
        }
        if (G) {
          for (int64_t l = 0; l < grp.cnt; ++l) G[grp.bl[l] * NM + i * p.M + j] = grad[l];
        } else if (feats) {
          feat.put_grad(k - k % S, k, i, j, grad);
        } else {
          const T* xs = grp.xl.data() + i * L;
          const T* ys = grp.yl.data() + (m - 1 - j) * L;
          T* dxs = dxl.data() + i * L;
          T* dys = dyl.data() + (m - 1 - j) * L;
#pragma omp simd
          for (int64_t l = 0; l < L; ++l) {
            const T gd = T(2) * grad[l] * (xs[l] - ys[l]);
            dxs[l] += gd;
            dys[l] -= gd;
          }
        }
      }
    }
    if (feats && k % S == 0) feat.grad_block(diag, k, std::min(k + S, K));
    std::swap(E0, E1);
    std::swap(E1, E2);
    clear(E2, k - 3);
    if (tang) {
      std::swap(ET0, ET1);
      std::swap(ET1, ET2);
      clear(ET2, k - 3);
    }
    std::swap(R1, R2);
    if (tang) std::swap(T1, T2);
    load(k - 3, R2, T2);
  }
  if (feats) {
    feat.finish(grp.cnt, grp.bl, p.x, p.y, dx, dy);
  } else if (!G) {
    for (int64_t l = 0; l < grp.cnt; ++l) {
      if (dx)
        for (int64_t i = 0; i < n; ++i) dx[grp.bl[l] * p.N + i] = dxl[i * L + l];
      if (dy)
        for (int64_t j = 0; j < m; ++j) dy[grp.bl[l] * p.M + j] = dyl[(m - 1 - j) * L + l];
    }
  }
}

}  // namespace

Diagonals lane_diagonals(int64_t N, int64_t M, double bandwidth) {
  const double span = double(std::max(N - 1, M - 1));
  return Diagonals(Band{N, M, bandwidth < 0 ? -1.0 : bandwidth * span});
}

template <typename T>
void forward_lanes(const SdtwProblem<T>& p, T* value, T* temporal, T* r_store, T* rt_store, double* off_store) {
  const Diagonals diag = lane_diagonals(p.N, p.M, p.bandwidth);
  const int64_t groups = (p.B + L - 1) / L, NM = p.N * p.M, K = p.N + p.M - 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(p.threads) if (p.threads > 1)
  for (int64_t g = 0; g < groups; ++g) {
    forward_group<T>(p, diag, g, value, temporal, r_store ? r_store + g * L * NM : nullptr,
                     rt_store ? rt_store + g * L * NM : nullptr, off_store ? off_store + g * L * K : nullptr);
  }
}

template <typename T>
void backward_lanes(const SdtwProblem<T>& p, const T* r_store, const T* rt_store, const double* off_store,
                    const T* gv, const T* gt, T* G, T* dx, T* dy) {
  const Diagonals diag = lane_diagonals(p.N, p.M, p.bandwidth);
  const int64_t groups = (p.B + L - 1) / L, NM = p.N * p.M, K = p.N + p.M - 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(p.threads) if (p.threads > 1)
  for (int64_t g = 0; g < groups; ++g) {
    backward_group<T>(p, diag, g, r_store + g * L * NM, rt_store ? rt_store + g * L * NM : nullptr,
                      off_store + g * L * K, gv, gt, G, dx, dy);
  }
}

template void forward_lanes<float>(const SdtwProblem<float>&, float*, float*, float*, float*, double*);
template void forward_lanes<double>(const SdtwProblem<double>&, double*, double*, double*, double*, double*);
template void backward_lanes<float>(const SdtwProblem<float>&, const float*, const float*, const double*,
                                    const float*, const float*, float*, float*, float*);
template void backward_lanes<double>(const SdtwProblem<double>&, const double*, const double*, const double*,
                                     const double*, const double*, double*, double*, double*);

}  // namespace detail
}  // namespace cpu
}  // namespace abcc
