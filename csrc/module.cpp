// The one pybind11 module of abcc_fast: abcc_fast._C.
//
// Each op lives in its own folder, csrc/<op>/: the kernels on raw pointers (C++/OpenMP, plain CUDA
// with host launchers declared in <op>_cuda.h) and binding.cpp, which converts tensors, checks what
// the kernels assume and registers the op's params struct and entry points (csrc/common/binding.h
// describes that contract). This file only assembles the module.
#include "common/binding.h"
#include "soft_dtw/soft_dtw.h"

namespace {

bool has_cuda() {
#ifdef ABCC_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string cpu_arch() {
#if defined(__AVX512F__)
  return "AVX-512";
#elif defined(__AVX2__)
  return "AVX2";
#elif defined(__AVX__)
  return "AVX";
#elif defined(__ARM_NEON)
  return "NEON";
#else
  return "generic";
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace py = pybind11;
  m.doc() = "abcc_fast native kernels (C++/OpenMP and, when built with it, CUDA)";
  m.def("omp_max_threads", &abcc::cpu::omp_max_threads, "OpenMP threads the CPU kernels use");
  m.def("cpu_arch", &cpu_arch, "SIMD level the CPU kernels were compiled for");
  m.def("has_cuda", &has_cuda, "whether this build contains the CUDA kernels");
  py::dict op_args, op_params;  // entry point -> its argument names / the params class it takes
  abcc::binding::bind_soft_dtw(m, op_args, op_params);
  abcc::binding::bind_meanflow(m, op_args, op_params);
  abcc::binding::bind_two_stream_attention(m, op_args, op_params);
  m.attr("op_args") = op_args;
  m.attr("op_params") = op_params;
}
