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
