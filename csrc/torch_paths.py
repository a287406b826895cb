"""Print what CMakeLists.txt needs to know about the installed torch, one item per line."""
import torch
import torch.utils.cpp_extension as ext

cuda = torch.version.cuda is not None
try:
    includes = ext.include_paths(device_type="cuda" if cuda else "cpu")
except TypeError:  # torch < 2.6
    includes = ext.include_paths(cuda=cuda)
try:
    libs = ext.library_paths(device_type="cuda" if cuda else "cpu")
except TypeError:
    libs = ext.library_paths(cuda=cuda)
print("|".join(includes))
print("|".join(libs))
print(int(torch._C._GLIBCXX_USE_CXX11_ABI))
print(torch.version.cuda or "none")

# CUDA architectures of the visible GPUs ("90;80"), or "none": CMake builds for exactly these and
# falls back to an explicit list when none is visible (a build machine without a GPU).
archs = "none"
if cuda:
    try:
        if torch.cuda.is_available():
            found = sorted({"%d%d" % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
            archs = ";".join(found) or "none"
    except Exception:  # a broken driver must not break the build: use the fallback list
        archs = "none"
print(archs)
