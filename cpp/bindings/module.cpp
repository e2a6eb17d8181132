// SPDX-License-Identifier: MIT
// The extension module gatecell._core: error translation and the shared configuration type.

#include <pybind11/stl.h>

#include "common.hpp"
#include "gatecell/threads.hpp"

namespace py = pybind11;
using namespace gatecell;

PYBIND11_MODULE(_core, m) {
  m.doc() = "gatecell C++ core: recurrent network kernels (use the gatecell package, not this module)";
  m.attr("__version__") = GATECELL_VERSION;

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const TypeError_& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const std::bad_alloc&) {
      PyErr_SetString(PyExc_MemoryError, "gatecell: out of memory");
    } catch (const std::length_error& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    }
  });

  py::enum_<CellKind>(m, "CellKind")
      .value("rnn_tanh", CellKind::rnn_tanh)
      .value("rnn_relu", CellKind::rnn_relu)
      .value("lstm", CellKind::lstm)
      .value("gru", CellKind::gru);

  py::enum_<Activation>(m, "Activation")
      .value("relu", Activation::relu)
      .value("tanh", Activation::tanh)
      .value("sigmoid", Activation::sigmoid)
      .value("affine", Activation::affine)
      .value("leaky_relu", Activation::leaky_relu)
      .value("thresholded_relu", Activation::thresholded_relu)
      .value("scaled_tanh", Activation::scaled_tanh)
      .value("hard_sigmoid", Activation::hard_sigmoid)
      .value("elu", Activation::elu)
      .value("softsign", Activation::softsign)
      .value("softplus", Activation::softplus);

  py::class_<ActivationSpec>(m, "ActivationSpec")
      .def(py::init([](Activation kind, double alpha, double beta) { return ActivationSpec{kind, alpha, beta}; }),
           py::arg("kind"), py::arg("alpha") = 0.0, py::arg("beta") = 0.0)
      .def_readwrite("kind", &ActivationSpec::kind)
      .def_readwrite("alpha", &ActivationSpec::alpha)
      .def_readwrite("beta", &ActivationSpec::beta);

  py::class_<NetworkConfig>(m, "NetworkConfig")
      .def(py::init<>())
      .def_readwrite("kind", &NetworkConfig::kind)
      .def_readwrite("input_size", &NetworkConfig::input_size)
      .def_readwrite("hidden_size", &NetworkConfig::hidden_size)
      .def_readwrite("proj_size", &NetworkConfig::proj_size)
      .def_readwrite("num_layers", &NetworkConfig::num_layers)
      .def_readwrite("bidirectional", &NetworkConfig::bidirectional)
      .def_readwrite("reverse", &NetworkConfig::reverse)
      .def_readwrite("bias", &NetworkConfig::bias)
      .def_readwrite("linear_before_reset", &NetworkConfig::linear_before_reset)
      .def_readwrite("dropout", &NetworkConfig::dropout)
      .def_readwrite("activations", &NetworkConfig::activations)
      .def_readwrite("clip", &NetworkConfig::clip)
      .def_readwrite("input_forget", &NetworkConfig::input_forget)
      .def_readwrite("peepholes", &NetworkConfig::peepholes)
      .def("validate", &NetworkConfig::validate);

  m.def("set_num_threads", &set_num_threads, py::arg("n"),
        "Sets the number of threads the kernels use (results are bitwise the same for any n).");
  m.def("get_num_threads", &get_num_threads, "The number of threads the kernels use.");
  m.def("simd_path", &simd_path, "The float kernels this process runs: 'avx512', 'avx2' or 'portable'.");
  m.def("_set_split_patience", &detail::set_split_patience, py::arg("microseconds"),
        "Tests only: how long a thread of a split step waits before it counts as kept waiting.");
  m.def("_split_runs", &detail::split_runs,
        "Tests only: directions run with every step split by units over a team of threads, so far.");

  m.def(
      "_time_gemm",
      [](const py::array& a_obj, const py::array& b_obj, int repeats) {
        if (a_obj.ndim() != 2 || b_obj.ndim() != 2)
          throw ShapeError("_time_gemm: a and b must be 2-D, got " + std::to_string(a_obj.ndim()) + "-D and " +
                           std::to_string(b_obj.ndim()) + "-D");
        const index_t m = a_obj.shape(0), k = a_obj.shape(1), n = b_obj.shape(1);
        py::array a = bindings::checked<float>(a_obj, "a", {m, k});
        py::array b = bindings::checked<float>(b_obj, "b", {k, n});
        py::array c = bindings::empty_array<float>({m, n});
        const double seconds = detail::time_gemm(bindings::cptr<float>(a), bindings::cptr<float>(b),
                                                 bindings::mptr<float>(c), m, k, n, repeats);
        return py::make_tuple(seconds, c);
      },
      py::arg("a"), py::arg("b"), py::arg("repeats"),
      "Benchmark only: (fastest seconds, C) of `repeats` float32 products C = a b through the kernels' GEMM.");
  bindings::bind_network(m);
  bindings::bind_model(m);
}
