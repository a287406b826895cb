// Host-side launchers of the CUDA kernels in csrc/cuda/*.cu.
//
// The .cu files are plain CUDA: raw pointers, sizes and a cudaStream_t, no torch headers. That is
// what lets CI compile every .cu file with nvcc even where torch is a CPU build (the CMake target
// abcc_cuda_check), and keeps tensor handling in csrc/bindings.cpp.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

namespace abcc {
namespace cuda {

// >>> soft-DTW launchers (csrc/cuda/soft_dtw.cu)
// <<< soft-DTW launchers

// >>> two-stream attention launchers (csrc/cuda/two_stream_attention.cu)
// <<< two-stream attention launchers

}  // namespace cuda
}  // namespace abcc
