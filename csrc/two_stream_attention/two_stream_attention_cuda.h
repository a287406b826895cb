// Host-side launchers of the two-stream attention CUDA kernels (csrc/two_stream_attention/two_stream_attention.cu).
//
// The .cu files are plain CUDA: raw pointers, sizes and a cudaStream_t, no torch headers. That is
// what lets CI compile every .cu file with nvcc even where torch is a CPU build (the CMake target
// abcc_cuda_check), and keeps tensor handling in the op's binding (csrc/two_stream_attention/binding.cpp).
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

namespace abcc {
namespace cuda {

enum TsaDtype : int { kTsaFloat32 = 0, kTsaFloat16 = 1, kTsaBFloat16 = 2 };

// Contiguous [B, H, Na, D] (stream a) and [B, H, Nb, D] (stream b) device buffers of one dtype.
// Tangent pointers (tqa ... tvb, toa, tob) all null for the primal only, all set for primal + JVP.
struct TwoStreamAttentionArgs {
  const void* qa = nullptr;
  const void* ka = nullptr;
  const void* va = nullptr;
  const void* qb = nullptr;
  const void* kb = nullptr;
  const void* vb = nullptr;
  const void* tqa = nullptr;
  const void* tka = nullptr;
  const void* tva = nullptr;
  const void* tqb = nullptr;
  const void* tkb = nullptr;
  const void* tvb = nullptr;
  void* oa = nullptr;
  void* ob = nullptr;
  void* toa = nullptr;
  void* tob = nullptr;
  float* lse = nullptr;         // [B, H, Na + Nb], natural log; +inf on rows without kept keys
  const int8_t* keep = nullptr;  // [B, Na + Nb], 1 = keep; null = keep all
  int64_t B = 0, H = 0, Na = 0, Nb = 0, D = 0;  // D in {32, 64, 128}; B * H <= 65535
  float scale = 1.f;
  int dtype = kTsaFloat32;
};

// Forward (and JVP) in one launch on `stream`. Returns the launch error (cudaSuccess if none).
cudaError_t two_stream_attention_forward(const TwoStreamAttentionArgs& args, cudaStream_t stream);

}  // namespace cuda
}  // namespace abcc
