// Shared by the ops' bindings (csrc/<op>/binding.cpp) and the module (csrc/module.cpp).
//
// The argument contract between Python and C++: each op has one params struct whose fields are
// its arguments, exported as a pybind11 class with named fields (`_C.SoftDtwParams(D=..., x=...)`).
// Its entry points take that struct, `_C.sdtw_cpu_forward(params)`, or the same fields as
// keywords, `_C.sdtw_cpu_forward(D=..., x=...)`, which builds the struct: exactly the fields the
// entry point reads, each once, else TypeError naming the culprit, as for a Python function. The
// names are written once, in the op's ParamsType; `_C.op_args` exports each entry point's list
// (CUDA ones too, in every build) and `_C.op_params` the class each takes, so Python adapters are
// checked against them on machines without a GPU (tests/test_native_bindings.py).
#pragma once
#include <torch/extension.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace abcc {
namespace binding {

namespace py = pybind11;
using at::Tensor;
using OptTensor = std::optional<Tensor>;

#define ABCC_CHECK_CPU(t) TORCH_CHECK(!(t).is_cuda(), #t " must be a CPU tensor")
#define ABCC_CHECK_CONTIG(t) TORCH_CHECK((t).is_contiguous(), #t " must be contiguous")
#define ABCC_CHECK_GIVEN(params, field, op) \
  TORCH_CHECK((params).field.defined(), op ": argument '" #field "' is required")

// The fields of a params struct P by name, with a setter each (from a Python object).
template <typename P>
struct FieldTable {
  std::string type_name;
  std::vector<std::string> names;
  std::vector<std::function<void(P&, py::handle)>> setters;

  void set(P& p, const std::string& name, py::handle value, const std::string& who) const {
    const auto it = std::find(names.begin(), names.end(), name);
    if (it == names.end())
      throw py::type_error(who + "() got an unexpected keyword argument '" + name + "' (" + type_name +
                           " fields: " + joined(names) + ")");
    try {
      setters[it - names.begin()](p, value);
    } catch (const py::cast_error&) {
      throw py::type_error(who + "(): argument '" + name + "' has the wrong type (" +
                           std::string(py::str(py::type::of(value).attr("__name__"))) + ")");
    }
  }

  // P from keywords: exactly the names in `used`, each once.
  P from_kwargs(const py::kwargs& kw, const std::vector<std::string>& used, const std::string& op) const {
    P p;
    std::vector<bool> seen(used.size(), false);
    for (auto item : kw) {
      const std::string name = py::str(item.first);
      const auto it = std::find(used.begin(), used.end(), name);
      if (it == used.end())
        throw py::type_error(op + "() got an unexpected keyword argument '" + name + "' (its arguments: " +
                             joined(used) + ")");
      seen[it - used.begin()] = true;
      set(p, name, item.second, op);
    }
    for (size_t i = 0; i < used.size(); ++i)
      if (!seen[i]) throw py::type_error(op + "() missing required keyword argument: '" + used[i] + "'");
    return p;
  }

  static std::string joined(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
    return out;
  }
};

// pybind11 class of an op's params struct: `field` declares each member once; `def_op` defines an
// entry point on it.
template <typename P>
class ParamsType {
 public:
  ParamsType(py::module_& m, const char* name, const char* doc) : table_(std::make_shared<FieldTable<P>>()),
                                                                   cls_(m, name, doc) {
    table_->type_name = name;
  }

  template <typename F>
  ParamsType& field(const char* name, F P::*member, const char* doc) {
    cls_.def_readwrite(name, member, doc);
    table_->names.emplace_back(name);
    table_->setters.emplace_back([member](P& p, py::handle v) { p.*member = v.cast<F>(); });
    return *this;
  }

  // P() and P(**fields) (any subset; the rest keep their defaults) and P.fields (the names).
  // Call once, after the fields.
  ParamsType& finish() {
    auto table = table_;
    cls_.def(py::init([table](const py::kwargs& kw) {
      P p;
      for (auto item : kw) table->set(p, py::str(item.first), item.second, table->type_name);
      return p;
    }));
    py::tuple names(table->names.size());
    for (size_t i = 0; i < table->names.size(); ++i) names[i] = py::str(table->names[i]);
    cls_.attr("fields") = names;
    return *this;
  }

  // Records that entry point `op` reads the fields `used` (op_args[op], op_params[op]); fails at
  // import if one of them is not a field.
  void record(py::dict& op_args, py::dict& op_params, const char* op, const std::vector<std::string>& used) const {
    py::tuple names(used.size());
    for (size_t i = 0; i < used.size(); ++i) {
      if (std::find(table_->names.begin(), table_->names.end(), used[i]) == table_->names.end())
        throw std::logic_error(std::string(op) + ": '" + used[i] + "' is not a field of " + table_->type_name);
      names[i] = py::str(used[i]);
    }
    op_args[op] = names;
    op_params[op] = py::str(table_->type_name);
  }

  // Defines `op(params)` and `op(**fields)` (exactly `used`) calling f(const P&), and records it.
  template <typename F>
  void def_op(py::module_& m, py::dict& op_args, py::dict& op_params, const char* op, F f, const char* doc,
              const std::vector<std::string>& used) const {
    record(op_args, op_params, op, used);
    auto table = table_;
    const std::string name = op;
    m.def(op, [f](const P& p) { return f(p); }, py::arg("params"), doc);
    m.def(op, [f, table, used, name](const py::kwargs& kw) { return f(table->from_kwargs(kw, used, name)); },
          (std::string(doc) + "; keywords: " + FieldTable<P>::joined(used)).c_str());
  }

 private:
  std::shared_ptr<FieldTable<P>> table_;
  py::class_<P> cls_;
};

// Registration of each op's bindings into the module (csrc/module.cpp).
void bind_soft_dtw(py::module_& m, py::dict& op_args, py::dict& op_params);
void bind_meanflow(py::module_& m, py::dict& op_args, py::dict& op_params);
void bind_two_stream_attention(py::module_& m, py::dict& op_args, py::dict& op_params);

}  // namespace binding
}  // namespace abcc
