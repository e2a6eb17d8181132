// SPDX-License-Identifier: MIT
#pragma once
// Checked, copy-free access to NumPy arrays: a wrong dtype or layout raises, never converts.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "gatecell/shapes.hpp"

namespace gatecell::bindings {

namespace py = pybind11;

template <typename Scalar>
const char* dtype_name() {
  return sizeof(Scalar) == 4 ? "float32" : "float64";
}

inline std::string shape_str(const std::vector<index_t>& shape) {
  std::string s = "(";
  for (std::size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

inline std::vector<index_t> shape_of(const py::array& a) {
  return std::vector<index_t>(a.shape(), a.shape() + a.ndim());
}

// True when `d` is T's dtype in native byte order. An equal dtype need not be the same object
// (unpickled and deep-copied arrays carry dtype objects of their own).
template <typename T>
bool is_dtype(const py::dtype& d) {
  return d.num() == py::dtype::of<T>().num() && d.attr("isnative").template cast<bool>();
}

// The array behind `obj`, checked for dtype T, C-contiguity and the expected shape.
template <typename T>
py::array checked(py::handle obj, const std::string& name, const std::vector<index_t>& shape,
                  bool writeable = false) {
  if (!py::isinstance<py::array>(obj))
    throw TypeError_(name + ": expected a numpy.ndarray, got " +
                     std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (!is_dtype<T>(arr.dtype()))
    throw TypeError_(name + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) + ", got " +
                     std::string(py::str(arr.dtype())));
  if (!(arr.flags() & py::array::c_style))
    throw TypeError_(name + ": expected a C-contiguous array (use numpy.ascontiguousarray)");
  if (writeable && !arr.writeable()) throw TypeError_(name + ": expected a writeable array");
  if (shape_of(arr) != shape)
    throw ShapeError(name + ": expected shape " + shape_str(shape) + ", got " + shape_str(shape_of(arr)));
  return arr;
}

template <typename T>
const T* cptr(const py::array& a) {
  return static_cast<const T*>(a.data());
}
template <typename T>
T* mptr(py::array& a) {
  return static_cast<T*>(a.mutable_data());
}

template <typename Scalar>
py::array empty_array(const std::vector<index_t>& shape) {
  return py::array_t<Scalar>(std::vector<py::ssize_t>(shape.begin(), shape.end()));
}

void bind_network(py::module_& m);
void bind_model(py::module_& m);

}  // namespace gatecell::bindings
