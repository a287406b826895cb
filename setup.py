"""Build driver: setuptools hands the native extension `abcc_fast._C` to CMake.

CMakeLists.txt does the real work (finds the installed torch, compiles the C++/OpenMP kernels,
the CUDA kernels when torch has CUDA, and a compile-only check of every .cu file when nvcc exists
but torch is CPU-only). Install with `pip install --no-build-isolation -e .` so that the
extension is built against *your* torch, not a throw-away one.
"""
import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def _archs_from_torch_list(value: str) -> str:
    """torch's TORCH_CUDA_ARCH_LIST ("8.0;9.0+PTX", spaces or semicolons) as CMake's "80;90"."""
    out = []
    for item in value.replace(" ", ";").split(";"):
        item = item.strip().replace("+PTX", "")
        digits = item.replace(".", "")
        if digits and digits.rstrip("a").isdigit():  # "9.0a" -> "90a" (arch-specific features)
            out.append(digits)
    return ";".join(out)


class CMakeExtension(Extension):
    def __init__(self, name: str):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        # ABCC_BUILD_DIR: a separate CMake tree (e.g. for a CPU-only build with ABCC_CUDA=OFF)
        build_dir = Path(os.environ.get("ABCC_BUILD_DIR", ROOT / "build" / "cmake")).resolve()
        build_dir.mkdir(parents=True, exist_ok=True)
        cfg = os.environ.get("ABCC_BUILD_TYPE", "Release")
        args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DCMAKE_BUILD_TYPE={cfg}",
        ]
        for var in ("ABCC_CUDA", "ABCC_CUDA_ARCHS", "ABCC_CPU_ARCH"):
            if var in os.environ:
                args.append(f"-D{var}={os.environ[var]}")
        archs = _archs_from_torch_list(os.environ.get("TORCH_CUDA_ARCH_LIST", ""))
        if archs and "ABCC_CUDA_ARCHS" not in os.environ:
            args.append(f"-DABCC_CUDA_ARCHS={archs}")
        try:
            import ninja  # noqa: F401

            args.append("-GNinja")
            cache = build_dir / "CMakeCache.txt"
            if cache.exists() and "CMAKE_GENERATOR:INTERNAL=Ninja" not in cache.read_text():
                cache.unlink()
        except ImportError:
            pass
        jobs = os.environ.get("ABCC_BUILD_JOBS", str(os.cpu_count() or 2))
        subprocess.run(["cmake", str(ROOT), *args], cwd=build_dir, check=True)
        subprocess.run(["cmake", "--build", ".", "--parallel", jobs], cwd=build_dir, check=True)


setup(ext_modules=[CMakeExtension("abcc_fast._C")], cmdclass={"build_ext": CMakeBuild})
