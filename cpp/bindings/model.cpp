// SPDX-License-Identifier: MIT
// Bindings of Model (rebuilt from a description or a checkpoint file) and its Stream.

#include <pybind11/stl.h>

#include "common.hpp"
#include "gatecell/stream.hpp"

namespace gatecell::bindings {

namespace {

template <typename Scalar>
std::map<std::string, Tensor<Scalar>> read_tensors(const py::dict& tensors) {
  std::map<std::string, Tensor<Scalar>> out;
  for (auto item : tensors) {
    const std::string name = py::str(item.first);
    auto arr = py::array_t<Scalar, py::array::c_style | py::array::forcecast>::ensure(item.second);
    if (!arr) throw TypeError_("tensors['" + name + "']: expected an array of numbers");
    Tensor<Scalar> t;
    t.shape = shape_of(arr);
    t.data.assign(arr.data(), arr.data() + arr.size());
    out[name] = std::move(t);
  }
  return out;
}

// Whether `obj` is a C-contiguous array of Scalar with shape (n0, n1), or (n1,) when flat.
// The per-step fast path: no allocation; anything else goes through checked() for its message.
template <typename Scalar>
bool fits(const py::handle& obj, index_t n0, index_t n1, bool flat, bool writeable) {
  if (!py::isinstance<py::array>(obj)) return false;
  auto* a = py::detail::array_proxy(obj.ptr());
  const auto* descr = py::detail::array_descriptor_proxy(a->descr);
  static const int type_num = py::dtype::of<Scalar>().num();
  if (descr->type_num != type_num || !(a->flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_)) return false;
  if (writeable && !(a->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_)) return false;
  if (flat) return a->nd == 1 && a->dimensions[0] == n1;
  return a->nd == 2 && a->dimensions[0] == n0 && a->dimensions[1] == n1;
}

// x: [N, I], or [I] when N = 1 (then y is [O]).
template <typename Scalar>
py::object stream_step(Stream<Scalar>& s, const py::handle& x_obj, const py::handle& out_obj) {
  const index_t N = s.batch(), I = s.input_size(), O = s.output_size();
  const bool flat = N == 1 && py::isinstance<py::array>(x_obj) && py::detail::array_proxy(x_obj.ptr())->nd == 1;
  if (!fits<Scalar>(x_obj, N, I, flat, false))
    checked<Scalar>(x_obj, "x", flat ? std::vector<index_t>{I} : std::vector<index_t>{N, I});  // throws
  py::object y;
  if (out_obj.is_none()) {
    y = flat ? py::array_t<Scalar>(O) : py::array_t<Scalar>({N, O});
  } else {
    if (!fits<Scalar>(out_obj, N, O, flat, true))
      checked<Scalar>(out_obj, "out", flat ? std::vector<index_t>{O} : std::vector<index_t>{N, O}, true);  // throws
    y = py::reinterpret_borrow<py::object>(out_obj);
  }
  s.step(reinterpret_cast<const Scalar*>(py::detail::array_proxy(x_obj.ptr())->data),
         reinterpret_cast<Scalar*>(py::detail::array_proxy(y.ptr())->data));
  return y;
}

template <typename Scalar>
void bind_model(py::module_& m, const char* model_name, const char* stream_name) {
  using M = Model<Scalar>;
  using S = Stream<Scalar>;
  py::class_<S>(m, stream_name, "One time step at a time through a unidirectional model, keeping the state.")
      .def("step", &stream_step<Scalar>, py::arg("x"), py::arg("out") = py::none(),
           "Feeds one step: x [N, I] (or [I] when N = 1) -> y [N, O]; writes into `out` if given.")
      .def("reset", &S::reset, "Zeroes the state.")
      .def("get_state",
           [](const S& s) {
             py::array st = empty_array<Scalar>({s.state_size()});
             s.get_state(mptr<Scalar>(st));
             return st;
           },
           "A copy of the flat state: per recurrent module, h [L,N,Hout] then (LSTM) c [L,N,H].")
      .def("set_state",
           [](S& s, const py::object& st) {
             py::array a = checked<Scalar>(st, "state", {s.state_size()});
             s.set_state(cptr<Scalar>(a));
           },
           py::arg("state"))
      .def_property_readonly("batch", &S::batch)
      .def_property_readonly("input_size", &S::input_size)
      .def_property_readonly("output_size", &S::output_size)
      .def_property_readonly("state_size", &S::state_size);

  py::class_<M>(m, model_name, "A model rebuilt from its description and weights (inference).")
      .def(py::init([](const std::string& config_json, const py::dict& tensors) {
             return M::from_config(config_json, read_tensors<Scalar>(tensors));
           }),
           py::arg("config_json"), py::arg("tensors"))
      .def_property_readonly("input_size", &M::input_size)
      .def_property_readonly("output_size", &M::output_size)
      .def_property_readonly("reduces_steps", &M::reduces_steps)
      .def("stream", &M::stream, py::arg("batch") = 1,
           "A Stream over this model for `batch` sequences.")
      .def(
          "forward",
          [](M& model, const py::object& x_obj, const py::object& lengths_obj) {
            if (!py::isinstance<py::array>(x_obj)) throw TypeError_("x: expected a numpy.ndarray");
            auto xa = py::reinterpret_borrow<py::array>(x_obj);
            if (xa.ndim() != 3) throw ShapeError("x: expected 3 dimensions, got shape " + shape_str(shape_of(xa)));
            const bool bf = model.batch_first();
            const index_t T = xa.shape(bf ? 1 : 0), N = xa.shape(bf ? 0 : 1);
            py::array x = checked<Scalar>(x_obj, "x", {xa.shape(0), xa.shape(1), model.input_size()});
            std::vector<Scalar> xv(cptr<Scalar>(x), cptr<Scalar>(x) + x.size());
            std::vector<index_t> lengths;
            if (!lengths_obj.is_none()) {
              py::array l = checked<index_t>(lengths_obj, "lengths", {N});
              lengths.assign(cptr<index_t>(l), cptr<index_t>(l) + N);
            }
            std::vector<Scalar> y = model.forward(xv, T, N, lengths);
            py::array out = empty_array<Scalar>(model.reduces_steps() ? std::vector<index_t>{N, model.output_size()}
                                                                      : std::vector<index_t>{xa.shape(0), xa.shape(1), model.output_size()});
            std::copy(y.begin(), y.end(), mptr<Scalar>(out));
            return out;
          },
          py::arg("x"), py::arg("lengths") = py::none(),
          "Inference over x [T, N, I] ([N, T, I] if batch-first) -> [T, N, O] or [N, O].");
}

}  // namespace

void bind_model(py::module_& m) {
  bind_model<float>(m, "ModelF32", "StreamF32");
  bind_model<double>(m, "ModelF64", "StreamF64");
  m.def(
      "load_model",
      [](const std::string& path) -> py::object {
        const CheckpointFile file = read_checkpoint(path);
        if (file.dtype == "F64") return py::cast(load_model<double>(path));
        return py::cast(load_model<float>(path));
      },
      py::arg("path"), "Reads a gatecell checkpoint with the C++ reader -> ModelF32 or ModelF64.");
}

}  // namespace gatecell::bindings
