// Internals shared by the soft-DTW CPU engines (soft_dtw.cpp: one pair at a time, SIMD along
// anti-diagonals; soft_dtw_lanes.cpp: many pairs at once, one pair per SIMD lane). Not part of
// the kernel API (that is soft_dtw.h).
//
// Unreachable cells hold +inf. The softmin of three predecessors is formed relative to their
// minimum mn, so exp2((mn - a) s) <= 1 and an infinite predecessor gets weight exactly 0; a cell
// whose three predecessors are all +inf ("dead", mn = +inf, where mn - a would be inf - inf =
// NaN) is set explicitly: value +inf, tangent 0, and it pushes nothing in the backward.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>
#if defined(__SSE__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

#include "soft_dtw/soft_dtw.h"

namespace abcc {
namespace cpu {
namespace detail {

constexpr double kLog2e = 1.4426950408889634;

// ---- exp2 / log2 that the compiler can vectorise ----
// exp2 for x <= 0: 2^x = 2^i * 2^f, i = x rounded to an integer (by adding 1.5 * 2^23, which
// leaves i in the low mantissa bits), |f| <= 1/2, 2^f by a degree-6 Chebyshev fit (relative error
// 2.6e-9, below float rounding). Inputs below -126 flush to exactly 0, which keeps unreachable
// cells (x = -inf) at exactly zero weight.
inline float exp2_fast(float x) {
  const bool under = x < -126.0f;
  x = std::max(x, -126.0f);
  constexpr float kShifter = 12582912.0f;  // 1.5 * 2^23, bits 0x4B400000
  const float shifted = x + kShifter;
  const float f = x - (shifted - kShifter);
  float p = 1.546973216736868e-04f;
  p = p * f + 1.3400432165574878e-03f;
  p = p * f + 9.618025602074181e-03f;
  p = p * f + 5.550327214208608e-02f;
  p = p * f + 2.4022651213606178e-01f;
  p = p * f + 6.931472067106201e-01f;
  p = p * f + 9.999999999595472e-01f;
  int32_t ibits;
  std::memcpy(&ibits, &shifted, sizeof(float));
  const int32_t bits = (ibits - 0x4B400000 + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(float));
  return under ? 0.0f : p * scale;
}

// log2 for positive normal floats: exponent + log2(mantissa), mantissa moved to [sqrt(.5), sqrt(2)),
// log2(1 + u) = u P(u) with P a degree-8 least-squares fit on Chebyshev nodes (absolute error
// 1.3e-8). No division: a 512-bit divide blocks its port for ~10 cycles.
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
  const float u = mant - 1.0f;
  float p = 0.12614846586768327f;
  p = p * u - 0.20742103489136024f;
  p = p * u + 0.21566985901502334f;
  p = p * u - 0.23892033984190916f;
  p = p * u + 0.28791832447416754f;
  p = p * u - 0.3607048280956736f;
  p = p * u + 0.48091060994501866f;
  p = p * u - 0.7213473333599012f;
  p = p * u + 1.442695003764732f;
  return ef + u * p;
}

// 1/v for positive normal floats without a division: the classic bit-pattern guess (relative
// error < 5.1%), two Newton steps y <- y (2 - v y) (error < 7e-6), then one step in residual form,
// e = 1 - v y by one fused multiply-add (exact before its one rounding), y <- y + y e. The last
// form matters: y (2 - v y) rounds 2 - v y to an ulp of 1 and, measured on sums S = 1 + t with
// small t (most softmin cells), returned S * (1/S) - 1 = +7.7e-9 on average, a bias that the
// backward's push of E along 8,000 diagonals turned into alignment errors of 1e-4 at N = 4096.
// The residual form averages -4.8e-10, the same as a correctly rounded division.
inline float recip_fast(float v) {
  int32_t bits;
  std::memcpy(&bits, &v, sizeof(float));
  const int32_t gbits = 0x7EF311C7 - bits;
  float y;
  std::memcpy(&y, &gbits, sizeof(float));
  y = y * (2.0f - v * y);
  y = y * (2.0f - v * y);
  const float e = std::fma(-v, y, 1.0f);
  return std::fma(y, e, y);
}

// float64 versions (the accuracy path), also vectorisable: exp2 by the degree-12 Taylor series of
// 2^f on |f| <= 1/2 (relative error 2e-16), inputs below -1022 flush to 0; log2 by the atanh
// series of the mantissa in [sqrt(.5), sqrt(2)) to s^21 (|s| < 0.172, error < 1e-17).
inline double exp2_fast(double x) {
  const bool under = x < -1022.0;
  x = std::max(x, -1022.0);
  constexpr double kShifter = 6755399441055744.0;  // 1.5 * 2^52, bits 0x4338000000000000
  const double shifted = x + kShifter;
  const double f = x - (shifted - kShifter);
  double p = 2.5678435993488196e-11;
  p = p * f + 4.44553827187081e-10;
  p = p * f + 7.054911620801121e-09;
  p = p * f + 1.0178086009239696e-07;
  p = p * f + 1.3215486790144305e-06;
  p = p * f + 1.5252733804059838e-05;
  p = p * f + 0.00015403530393381606;
  p = p * f + 0.0013333558146428441;
  p = p * f + 0.009618129107628477;
  p = p * f + 0.055504108664821576;
  p = p * f + 0.2402265069591007;
  p = p * f + 0.6931471805599453;
  p = p * f + 1.0;
  int64_t ibits;
  std::memcpy(&ibits, &shifted, sizeof(double));
  const int64_t bits = (ibits - 0x4338000000000000LL + 1023) << 52;
  double scale;
  std::memcpy(&scale, &bits, sizeof(double));
  return under ? 0.0 : p * scale;
}

inline double log2_fast(double v) {
  int64_t bits;
  std::memcpy(&bits, &v, sizeof(double));
  const int64_t e = ((bits >> 52) & 0x7ff) - 1023;
  const int64_t mbits = (bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL;
  double mant;
  std::memcpy(&mant, &mbits, sizeof(double));
  const bool high = mant > 1.4142135623730951;
  mant = high ? mant * 0.5 : mant;
  const double ef = static_cast<double>(e) + (high ? 1.0 : 0.0);
  const double s = (mant - 1.0) / (mant + 1.0);
  const double s2 = s * s;
  double poly = 1.0 / 21;
  for (int k = 19; k >= 1; k -= 2) poly = poly * s2 + 1.0 / k;
  return ef + 2.0 * kLog2e * s * poly;
}

// Flush-to-zero and denormals-are-zero for the lifetime of the object, on the calling thread (the
// x86 MXCSR register is per thread; each OpenMP worker sets its own). Alignment weights far from
// the optimal path underflow below 1.2e-38 through denormal values, which cost tens to hundreds of
// cycles per operation on x86 cores: measured with the flags off, the float32 backward at N = 512
// took 1.55x its time with them on, and the d > 1 gradient fold (d multiply-adds per cell) 19x at d = 8.
// Results change only where a value would be denormal (|v| < 1.2e-38 in float32): it becomes 0.
struct FlushDenormals {
#if defined(__SSE__) || defined(_M_X64)
  unsigned saved;
  FlushDenormals() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040u); }  // FTZ (bit 15) | DAZ (bit 6)
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;
};

template <typename T> struct Math;
template <> struct Math<float> {
  static float exp2(float x) { return exp2_fast(x); }
  static float log2(float x) { return log2_fast(x); }
  static float recip(float x) { return recip_fast(x); }
};
template <> struct Math<double> {
  static double exp2(double x) { return exp2_fast(x); }
  static double log2(double x) { return log2_fast(x); }
  static double recip(double x) { return 1.0 / x; }
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
constexpr T kInf = std::numeric_limits<T>::infinity();

// One forward cell: softmin_g(a, b, c) = mn - g log(sum 2^((mn - a_k) s)), s = log2(e) / g,
// with the three weights' numerators ea, eb, ec and their sum S. Undefined (NaN) when dead.
template <typename T>
inline T softmin3(T a, T b, T c, T s, T inv_s, T& mn, T& ea, T& eb, T& ec, T& S) {
  mn = std::min(a, std::min(b, c));
  ea = Math<T>::exp2((mn - a) * s);
  eb = Math<T>::exp2((mn - b) * s);
  ec = Math<T>::exp2((mn - c) * s);
  S = ea + eb + ec;
  return mn - Math<T>::log2(S) * inv_s;
}

// ---- the lane engine (soft_dtw_lanes.cpp): kLanes pairs of equal lengths per SIMD group ----
constexpr int64_t kLanes = 16;
Diagonals lane_diagonals(int64_t N, int64_t M, double bandwidth);
template <typename T>
void forward_lanes(const SdtwProblem<T>& p, T* value, T* temporal, T* r_store, T* rt_store, double* off_store);
template <typename T>
void backward_lanes(const SdtwProblem<T>& p, const T* r_store, const T* rt_store, const double* off_store,
                    const T* gv, const T* gt, T* G, T* dx, T* dy);

}  // namespace detail
}  // namespace cpu
}  // namespace abcc
