// SPDX-License-Identifier: MIT
// Bindings of network_forward / network_backward: checks, output allocation, GIL release.

#include <pybind11/stl.h>

#include <optional>
#include <type_traits>

#include "common.hpp"
#include "gatecell/network.hpp"

namespace gatecell::bindings {

namespace {

// Weight shapes of (layer, direction) exactly as torch.nn stores them.
struct WeightShapes {
  std::vector<index_t> w_ih, w_hh, b, w_hr, w_peep;
};

WeightShapes weight_shapes(const NetworkConfig& c, index_t layer) {
  const index_t G = c.gates() * c.hidden_size;
  return {{G, c.layer_input_size(layer)}, {G, c.output_size()}, {G}, {c.proj_size, c.hidden_size},
          {3 * c.hidden_size}};
}

std::string entry_name(const NetworkConfig& c, index_t ld, const char* field) {
  const index_t D = c.directions();
  return std::string(field) + "_l" + std::to_string(ld / D) + (ld % D == 1 ? "_reverse" : "");
}

// Reads the [L*D] list of (w_ih, w_hh, b_ih, b_hh, w_hr[, w_peep]) tuples (w_peep, the sixth, is
// required with peepholes and may be left out otherwise); arrays are kept alive in `keep`.
template <typename Scalar, typename Out, bool Writeable>
std::vector<Out> read_weights(const NetworkConfig& c, const py::sequence& seq, std::vector<py::array>& keep,
                              const char* what) {
  const index_t L = c.num_layers, D = c.directions();
  if (static_cast<index_t>(py::len(seq)) != L * D)
    throw ShapeError(std::string(what) + ": expected " + std::to_string(L * D) + " (layer, direction) entries, got " +
                     std::to_string(py::len(seq)));
  std::vector<Out> out(L * D);
  for (index_t ld = 0; ld < L * D; ++ld) {
    py::object item = seq[ld];
    if (!py::isinstance<py::sequence>(item) || py::isinstance<py::str>(item))
      throw TypeError_(std::string(what) + "[" + std::to_string(ld) + "]: expected a tuple (w_ih, w_hh, b_ih, b_hh, w_hr), got " +
                       std::string(py::str(py::type::handle_of(item).attr("__name__"))));
    auto entry = py::reinterpret_borrow<py::sequence>(item);
    const std::size_t size = py::len(entry);
    if (size != 6 && (size != 5 || c.peepholes))
      throw ShapeError(std::string(what) + ": each entry must be (w_ih, w_hh, b_ih, b_hh, w_hr" +
                       (c.peepholes ? ", w_peep)" : "[, w_peep])") + ", got " + std::to_string(size) + " items");
    const WeightShapes s = weight_shapes(c, ld / D);
    auto get = [&](int k, const char* field, const std::vector<index_t>& shape,
                   bool present) -> std::optional<py::array> {
      py::handle h = entry[k];
      const std::string name = std::string(what) + "." + entry_name(c, ld, field);
      if (!present) {
        if (!h.is_none()) throw ShapeError(name + ": expected None for this configuration");
        return std::nullopt;
      }
      if (h.is_none()) throw TypeError_(name + ": missing");
      keep.push_back(checked<Scalar>(h, name, shape, Writeable));
      return keep.back();
    };
    using Ptr = std::conditional_t<Writeable, Scalar*, const Scalar*>;
    auto ptr = [](std::optional<py::array>& a) -> Ptr {
      if (!a) return nullptr;
      if constexpr (Writeable) return static_cast<Scalar*>(a->mutable_data());
      else return static_cast<const Scalar*>(a->data());
    };
    auto w_ih = get(0, "weight_ih", s.w_ih, true), w_hh = get(1, "weight_hh", s.w_hh, true);
    auto b_ih = get(2, "bias_ih", s.b, c.bias), b_hh = get(3, "bias_hh", s.b, c.bias);
    auto w_hr = get(4, "weight_hr", s.w_hr, c.proj_size > 0);
    std::optional<py::array> w_peep;
    if (size == 6) w_peep = get(5, "weight_peep", s.w_peep, c.peepholes);
    out[ld] = Out{ptr(w_ih), ptr(w_hh), ptr(b_ih), ptr(b_hh), ptr(w_hr), ptr(w_peep)};
  }
  return out;
}

template <typename Scalar>
py::tuple forward_impl(const NetworkConfig& c, const py::sequence& weights_seq, const py::array& x_arr,
                       const py::object& lengths_obj, const py::object& h0_obj, const py::object& c0_obj,
                       bool batch_first, bool training, std::uint64_t seed, const py::object& reuse,
                       const py::object& packs_obj) {
  c.validate();
  WeightPacks<Scalar>* packs = nullptr;
  if (!packs_obj.is_none()) {
    if (!py::isinstance<WeightPacks<Scalar>>(packs_obj))
      throw TypeError_(std::string("packs: expected a WeightPacks") + (std::is_same_v<Scalar, float> ? "F32" : "F64") +
                       " (the dtype of x), got " + std::string(py::str(py::type::handle_of(packs_obj).attr("__name__"))));
    packs = &packs_obj.cast<WeightPacks<Scalar>&>();
  }
  NetworkCache<Scalar>* refilled = nullptr;  // the caller's cache to refill, or null for a new one
  if (!reuse.is_none()) {
    if (!training) throw ShapeError("cache: expected None in inference (training=False), got a cache");
    if (!py::isinstance<NetworkCache<Scalar>>(reuse))
      throw TypeError_(std::string("cache: expected a ") + dtype_name<Scalar>() +
                       " cache from network_forward(training=True), got " +
                       std::string(py::str(py::type::handle_of(reuse).attr("__name__"))));
    refilled = &reuse.cast<NetworkCache<Scalar>&>();
  }
  if (x_arr.ndim() != 3)
    throw ShapeError("x: expected 3 dimensions, got shape " + shape_str(shape_of(x_arr)));
  const index_t T = batch_first ? x_arr.shape(1) : x_arr.shape(0);
  const index_t N = batch_first ? x_arr.shape(0) : x_arr.shape(1);
  const index_t L = c.num_layers, D = c.directions(), P = c.output_size(), H = c.hidden_size;
  py::array x = checked<Scalar>(x_arr, "x",
                                batch_first ? std::vector<index_t>{N, T, c.input_size}
                                            : std::vector<index_t>{T, N, c.input_size});
  std::vector<py::array> keep;
  auto weights = read_weights<Scalar, LayerWeights<Scalar>, false>(c, weights_seq, keep, "weights");
  std::optional<py::array> lengths, h0, c0, c_n;
  if (!lengths_obj.is_none()) lengths = checked<index_t>(lengths_obj, "lengths", {N});
  if (!h0_obj.is_none()) h0 = checked<Scalar>(h0_obj, "h0", {L * D, N, P});
  if (!c0_obj.is_none()) {
    if (!c.has_cell_state()) throw ShapeError("c0: only LSTM has a cell state");
    c0 = checked<Scalar>(c0_obj, "c0", {L * D, N, H});
  }

  py::array y = empty_array<Scalar>(batch_first ? std::vector<index_t>{N, T, D * P}
                                                : std::vector<index_t>{T, N, D * P});
  py::array h_n = empty_array<Scalar>({L * D, N, P});
  if (c.has_cell_state()) c_n = empty_array<Scalar>({L * D, N, H});
  std::unique_ptr<NetworkCache<Scalar>> cache;
  if (training && refilled == nullptr) cache = std::make_unique<NetworkCache<Scalar>>();
  if (refilled != nullptr) refilled->record_grads = false;  // reads like a new cache
  NetworkCache<Scalar>* target = refilled != nullptr ? refilled : cache.get();
  {
    py::gil_scoped_release release;
    network_forward<Scalar>(c, weights, SequenceShape{T, N, batch_first}, cptr<Scalar>(x),
                            lengths ? cptr<index_t>(*lengths) : nullptr, h0 ? cptr<Scalar>(*h0) : nullptr,
                            c0 ? cptr<Scalar>(*c0) : nullptr, mptr<Scalar>(y), mptr<Scalar>(h_n),
                            c_n ? mptr<Scalar>(*c_n) : nullptr, target, seed, packs);
  }
  py::object cache_obj = refilled != nullptr ? reuse : training ? py::cast(std::move(cache)) : py::none();
  py::object c_n_obj = c_n ? py::object(*c_n) : py::none();
  return py::make_tuple(y, h_n, c_n_obj, cache_obj);
}

template <typename Scalar>
py::tuple backward_impl(const NetworkCache<Scalar>& cache, const py::sequence& weights_seq,
                        const py::sequence& grads_seq, const py::object& x_obj, const py::object& dy_obj,
                        const py::object& dh_n_obj, const py::object& dc_n_obj) {
  if (!cache.filled) throw ShapeError("backward: the cache holds no forward pass");
  const NetworkConfig& c = cache.config;
  const index_t T = cache.shape.steps, N = cache.shape.batch;
  const bool bf = cache.shape.batch_first;
  const index_t L = c.num_layers, D = c.directions(), P = c.output_size(), H = c.hidden_size;
  std::vector<py::array> keep;
  auto weights = read_weights<Scalar, LayerWeights<Scalar>, false>(c, weights_seq, keep, "weights");
  auto grads = read_weights<Scalar, LayerGrads<Scalar>, true>(c, grads_seq, keep, "grads");
  const std::vector<index_t> x_shape = bf ? std::vector<index_t>{N, T, c.input_size}
                                          : std::vector<index_t>{T, N, c.input_size};
  py::array x = checked<Scalar>(x_obj, "x", x_shape);
  std::optional<py::array> dy, dh_n, dc_n, dc0;
  if (!dy_obj.is_none())
    dy = checked<Scalar>(dy_obj, "dout", bf ? std::vector<index_t>{N, T, D * P} : std::vector<index_t>{T, N, D * P});
  if (!dh_n_obj.is_none()) dh_n = checked<Scalar>(dh_n_obj, "dh_n", {L * D, N, P});
  if (!dc_n_obj.is_none()) {
    if (!c.has_cell_state()) throw ShapeError("dc_n: only LSTM has a cell state");
    dc_n = checked<Scalar>(dc_n_obj, "dc_n", {L * D, N, H});
  }
  py::array dx = empty_array<Scalar>(x_shape);
  py::array dh0 = empty_array<Scalar>({L * D, N, P});
  if (c.has_cell_state()) dc0 = empty_array<Scalar>({L * D, N, H});
  {
    py::gil_scoped_release release;
    network_backward<Scalar>(weights, grads, cptr<Scalar>(x), cache, dy ? cptr<Scalar>(*dy) : nullptr,
                             dh_n ? cptr<Scalar>(*dh_n) : nullptr, dc_n ? cptr<Scalar>(*dc_n) : nullptr,
                             mptr<Scalar>(dx), mptr<Scalar>(dh0), dc0 ? mptr<Scalar>(*dc0) : nullptr);
  }
  py::object dc0_obj = dc0 ? py::object(*dc0) : py::none();
  return py::make_tuple(dx, dh0, dc0_obj);
}

// A NumPy copy of one cache buffer as [rows, cols]; the cache may be freed or refilled later.
template <typename Scalar>
py::array copy_rows(const std::vector<Scalar>& v, index_t rows) {
  const index_t cols = rows > 0 ? static_cast<index_t>(v.size()) / rows : 0;
  py::array out = empty_array<Scalar>({rows, cols});
  std::copy(v.begin(), v.end(), mptr<Scalar>(out));
  return out;
}

template <typename Scalar>
void bind_cache(py::module_& m, const char* name) {
  py::class_<NetworkCache<Scalar>>(m, name, "Activations saved by a training-mode forward call (opaque).")
      .def_property_readonly("filled", [](const NetworkCache<Scalar>& c) { return c.filled; })
      .def_readwrite("record_grads", &NetworkCache<Scalar>::record_grads,
                     "When set, backward also stores per-step dL/dh_t and dL/dc_t (see layer_arrays).")
      .def(
          "layer_arrays",
          [](const NetworkCache<Scalar>& c, index_t layer, index_t direction) {
            const index_t D = c.config.directions();
            if (!c.filled) throw ShapeError("cache: holds no forward pass");
            if (layer < 0 || layer >= c.config.num_layers)
              throw ShapeError("layer: expected a value in [0, " + std::to_string(c.config.num_layers) +
                               "), got " + std::to_string(layer));
            if (direction < 0 || direction >= D)
              throw ShapeError("direction: expected a value in [0, " + std::to_string(D) + "), got " +
                               std::to_string(direction));
            const LayerCache<Scalar>& l = c.layers[layer * D + direction];
            const index_t rows = c.shape.steps * c.shape.batch;
            py::dict out;
            const std::pair<const char*, const std::vector<Scalar>*> fields[] = {
                {"gates", &l.gates}, {"h_prev", &l.h_prev}, {"c_prev", &l.c_prev}, {"c", &l.c},
                {"m", &l.m}, {"hn", &l.hn}, {"rh", &l.rh}, {"pre", &l.pre}, {"dh", &l.dh_total}, {"dc", &l.dc_total}};
            for (const auto& [key, buf] : fields)
              if (!buf->empty()) out[key] = copy_rows(*buf, rows);
            return out;
          },
          py::arg("layer"), py::arg("direction") = 0,
          "Copies of one (layer, direction)'s saved buffers as [rows, C] arrays in the row order of x: "
          "gates (activated; RNN h, LSTM i f g o, GRU r z n), h_prev, c_prev, c, m, hn, rh, pre (cell variants: "
          "pre-activations before clip), and after a "
          "recording backward dh (dL/dh_t) and dc (dL/dc_t); absent buffers are left out.")
      .def_property_readonly("nbytes", [](const NetworkCache<Scalar>& c) {
        std::size_t n = 0;
        for (const auto& l : c.layers)
          n += l.gates.size() + l.h_prev.size() + l.c_prev.size() + l.c.size() + l.m.size() + l.hn.size() + l.rh.size() + l.pre.size();
        for (const auto& v : c.inputs) n += v.size();
        for (const auto& v : c.masks) n += v.size();
        return n * sizeof(Scalar);
      });
}

template <typename Scalar>
void bind_packs(py::module_& m, const char* name) {
  py::class_<WeightPacks<Scalar>>(m, name,
                                  "Packed weights kept between network_forward calls (see its `packs`).")
      .def(py::init<>())
      .def("clear", &WeightPacks<Scalar>::clear, "Drops every packed weight.")
      .def_property_readonly("size", &WeightPacks<Scalar>::size, "Packed weights held.")
      .def_property_readonly("made", &WeightPacks<Scalar>::made, "Weights packed since construction.");
}

}  // namespace

void bind_network(py::module_& m) {
  bind_cache<float>(m, "NetworkCacheF32");
  bind_cache<double>(m, "NetworkCacheF64");
  bind_packs<float>(m, "WeightPacksF32");
  bind_packs<double>(m, "WeightPacksF64");

  m.def(
      "network_forward",
      [](const NetworkConfig& c, const py::sequence& weights, const py::array& x, const py::object& lengths,
         const py::object& h0, const py::object& c0, bool batch_first, bool training, std::uint64_t seed,
         const py::object& cache, const py::object& packs) {
        if (is_dtype<float>(x.dtype()))
          return forward_impl<float>(c, weights, x, lengths, h0, c0, batch_first, training, seed, cache, packs);
        if (is_dtype<double>(x.dtype()))
          return forward_impl<double>(c, weights, x, lengths, h0, c0, batch_first, training, seed, cache, packs);
        throw TypeError_("x: expected dtype float32 or float64, got " + std::string(py::str(x.dtype())));
      },
      py::arg("config"), py::arg("weights"), py::arg("x").noconvert(), py::arg("lengths") = py::none(),
      py::arg("h0") = py::none(), py::arg("c0") = py::none(), py::arg("batch_first") = false,
      py::arg("training") = false, py::arg("seed") = 0, py::arg("cache") = py::none(),
      py::arg("packs") = py::none(),
      "Forward over whole sequences -> (y, h_n, c_n or None, cache or None). In training, `cache` may be "
      "an earlier call's cache that nothing else still needs: it is refilled in place and returned, its "
      "buffers reused (record_grads reset, older contents gone), instead of a new one being allocated. "
      "`packs` (a WeightPacks of x's dtype) keeps the packed weights for the next call: the caller "
      "promises that the weight arrays do not change while it holds them (clear() otherwise).");

  m.def(
      "network_backward",
      [](const py::object& cache, const py::sequence& weights, const py::sequence& grads, const py::object& x,
         const py::object& dy, const py::object& dh_n, const py::object& dc_n) {
        if (py::isinstance<NetworkCache<float>>(cache))
          return backward_impl<float>(cache.cast<const NetworkCache<float>&>(), weights, grads, x, dy, dh_n, dc_n);
        if (py::isinstance<NetworkCache<double>>(cache))
          return backward_impl<double>(cache.cast<const NetworkCache<double>&>(), weights, grads, x, dy, dh_n, dc_n);
        throw TypeError_("cache: expected the cache returned by network_forward(training=True)");
      },
      py::arg("cache"), py::arg("weights"), py::arg("grads"), py::arg("x"), py::arg("dout") = py::none(),
      py::arg("dh_n") = py::none(), py::arg("dc_n") = py::none(),
      "Backpropagation through time -> (dx, dh0, dc0 or None); parameter gradients are added into grads.");
}

}  // namespace gatecell::bindings
