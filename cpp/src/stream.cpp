// SPDX-License-Identifier: MIT
// Streaming: one time step through every layer, batch rows one at a time, with matrix-vector
// products on preallocated buffers and the same pointwise row functions as the sequence kernels.
// Equation numbers refer to rnn.cpp (R), lstm.cpp (L) and gru.cpp (G).

#include <algorithm>
#include <type_traits>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define GATECELL_STREAM_AVX2 1
#endif

#include "detail/cell_math.hpp"
#include "gatecell/stream.hpp"

namespace gatecell {

namespace {

// The products below compute y = W x + b for W [rows, cols] packed by pack() into panels of
// kPanel rows: panel p holds W[p*kPanel .. p*kPanel+kPanel-1, :] column by column ([cols, kPanel],
// zero-padded), so a panel is one contiguous stream of weights and its kPanel outputs are sums of
// scaled columns, vectorised along the output without horizontal sums. b may be null.
// Measured at 512 x 144 floats: 3.1 us against 5.2 us unpacked and 4.0 us for Eigen with AVX2.
constexpr index_t kPanel = 64;  // eight AVX registers of floats

template <typename Scalar>
void gemv_portable(const Scalar* w, index_t rows, index_t cols, const Scalar* x, const Scalar* b, Scalar* y) {
  for (index_t r = 0; r < rows; r += kPanel, w += kPanel * cols) {
    Scalar acc[kPanel] = {};
    for (index_t k = 0; k < cols; ++k) {
      const Scalar xk = x[k];
      const Scalar* col = w + k * kPanel;
      for (index_t v = 0; v < kPanel; ++v) acc[v] += col[v] * xk;
    }
    const index_t n = std::min(kPanel, rows - r);
    for (index_t v = 0; v < n; ++v) y[r + v] = acc[v] + (b != nullptr ? b[r + v] : Scalar(0));
  }
}

#ifdef GATECELL_STREAM_AVX2
// The float product on AVX2 + FMA, chosen at run time (no build flag needed): a panel's eight
// accumulators stay in registers for the whole sum, enough independent FMAs to hide their latency.
__attribute__((target("avx2,fma"))) void gemv_avx2(const float* w, index_t rows, index_t cols, const float* x,
                                                   const float* b, float* y) {
  for (index_t r = 0; r < rows; r += kPanel, w += kPanel * cols) {
    __m256 acc[8];  // unrolled, so the eight stay in registers at any optimisation level
#pragma GCC unroll 8
    for (int v = 0; v < 8; ++v) acc[v] = _mm256_setzero_ps();
    const float* col = w;
    for (index_t k = 0; k < cols; ++k, col += kPanel) {
      const __m256 xk = _mm256_broadcast_ss(x + k);
#pragma GCC unroll 8
      for (int v = 0; v < 8; ++v) acc[v] = _mm256_fmadd_ps(_mm256_loadu_ps(col + 8 * v), xk, acc[v]);
    }
    const index_t n = std::min(kPanel, rows - r);
    if (n == kPanel) {
#pragma GCC unroll 8
      for (int v = 0; v < 8; ++v) {
        const __m256 sum = b != nullptr ? _mm256_add_ps(acc[v], _mm256_loadu_ps(b + r + 8 * v)) : acc[v];
        _mm256_storeu_ps(y + r + 8 * v, sum);
      }
    } else {
      alignas(32) float tmp[kPanel];
      for (int v = 0; v < 8; ++v) _mm256_store_ps(tmp + 8 * v, acc[v]);
      for (index_t v = 0; v < n; ++v) y[r + v] = tmp[v] + (b != nullptr ? b[r + v] : 0.0f);
    }
  }
}

bool cpu_has_avx2_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}
#endif

// y = W x + b as above, on the fastest path this CPU has. w: panels from pack(); x: [cols]; y: out [rows].
template <typename Scalar>
inline void gemv(const Scalar* w, index_t rows, index_t cols, const Scalar* x, const Scalar* b, Scalar* y) {
#ifdef GATECELL_STREAM_AVX2
  if constexpr (std::is_same_v<Scalar, float>) {
    if (cpu_has_avx2_fma()) {
      gemv_avx2(w, rows, cols, x, b, y);
      return;
    }
  }
#endif
  gemv_portable(w, rows, cols, x, b, y);
}

}  // namespace

template <typename Scalar>
index_t Stream<Scalar>::pack(const Scalar* w, index_t rows, index_t cols, bool panels) {
  if (w == nullptr) return -1;
  const index_t offset = static_cast<index_t>(packed_.size());
  if (!panels) {
    packed_.insert(packed_.end(), w, w + rows * cols);
    return offset;
  }
  const index_t n_panels = (rows + kPanel - 1) / kPanel;
  packed_.resize(offset + n_panels * kPanel * cols, Scalar(0));
  Scalar* dst = packed_.data() + offset;
  for (index_t r = 0; r < rows; ++r)
    for (index_t k = 0; k < cols; ++k) dst[(r / kPanel) * kPanel * cols + k * kPanel + r % kPanel] = w[r * cols + k];
  return offset;
}

template <typename Scalar>
Stream<Scalar>::Stream(const Model<Scalar>& model, index_t batch) : batch_(batch) {
  if (batch < 1) throw ShapeError("batch: expected at least 1, got " + std::to_string(batch));
  input_size_ = model.input_size();
  output_size_ = model.output_size();
  index_t state_size = 0, max_gates = 0, max_hidden = 0, max_width = 0;
  index_t width = input_size_;  // of the rows reaching the next child
  auto check_width = [&](const ModelChild<Scalar>& child, index_t in, index_t out) {
    if (in != width)
      throw ShapeError("module '" + child.name + "': input size " + std::to_string(in) +
                       " does not match the previous module's output size " + std::to_string(width));
    width = out;
  };
  for (const auto& child : model.children()) {
    if (child.network) {
      const NetworkConfig& c = child.network->config();
      if (c.bidirectional)
        throw ShapeError("module '" + child.name + "': a bidirectional layer needs the whole sequence; "
                         "streaming supports unidirectional models only");
      Stage stage{true, {}, -1, -1, 0, c.output_size()};
      const auto weights = child.network->layer_weights();
      const index_t L = c.num_layers, H = c.hidden_size, P = c.output_size();
      const index_t G = c.gates() * H;
      check_width(child, c.input_size, P);
      for (index_t l = 0; l < L; ++l) {
        const index_t h_offset = state_size + l * batch * P;
        const index_t c_offset = state_size + L * batch * P + l * batch * H;
        const index_t in = c.layer_input_size(l);
        const LayerWeights<Scalar>& w = weights[l];
        // The original GRU form multiplies W_hn by r * h_prev, apart from the r and z rows.
        const bool split = c.kind == CellKind::gru && !c.linear_before_reset;
        stage.layers.push_back({c.kind, c.linear_before_reset, in, H, P, pack(w.w_ih, G, in, true),
                                pack(w.w_hh, split ? 2 * H : G, P, true), split ? pack(w.w_hh + 2 * H * H, H, H, true) : -1,
                                P != H ? pack(w.w_hr, P, H, true) : -1, pack(w.b_ih, 1, G, false),
                                pack(w.b_hh, 1, G, false), h_offset, c.has_cell_state() ? c_offset : -1});
      }
      state_size += L * batch * P + (c.has_cell_state() ? L * batch * H : 0);
      max_gates = std::max(max_gates, c.gates() * H);
      max_hidden = std::max(max_hidden, H);
      stages_.push_back(std::move(stage));
    } else if (child.linear) {
      const auto& params = child.linear->parameters();
      const index_t in = child.linear->in_features(), out = child.linear->out_features();
      check_width(child, in, out);
      const index_t weight = pack(params.at("weight").data.data(), out, in, true);
      const index_t bias = child.linear->has_bias() ? pack(params.at("bias").data.data(), 1, out, false) : -1;
      stages_.push_back(Stage{false, {}, weight, bias, in, out});
      max_width = std::max(max_width, child.linear->out_features());
    }
    // Dropout is the identity at inference; LastStep is too when each step is the last so far.
  }
  state_.assign(state_size, Scalar(0));
  gate_.assign(max_gates, Scalar(0));
  hp_.assign(max_gates, Scalar(0));
  m_.assign(max_hidden, Scalar(0));
  rh_.assign(max_hidden, Scalar(0));
  ping_.assign(batch * max_width, Scalar(0));
  pong_.assign(batch * max_width, Scalar(0));
  out_.assign(batch * output_size_, Scalar(0));
}

template <typename Scalar>
void Stream<Scalar>::step(const Scalar* x, Scalar* y) {
  const index_t N = batch_;
  const Scalar* in = x;
  index_t in_width = input_size_;
  Scalar* spare = ping_.data();
  Scalar* gate = gate_.data();
  Scalar* hp = hp_.data();
  for (const Stage& stage : stages_) {
    if (!stage.recurrent) {
      for (index_t n = 0; n < N; ++n)
        gemv(packed(stage.weight), stage.out, stage.in, in + n * in_width, packed(stage.bias), spare + n * stage.out);
      in = spare;
      spare = spare == ping_.data() ? pong_.data() : ping_.data();
      in_width = stage.out;
      continue;
    }
    for (const Layer& layer : stage.layers) {
      const index_t H = layer.H, P = layer.P;
      const index_t G = (layer.kind == CellKind::lstm ? 4 : layer.kind == CellKind::gru ? 3 : 1) * H;
      const Scalar* w_ih = packed(layer.w_ih);
      const Scalar* w_hh = packed(layer.w_hh);
      const Scalar* b_ih = packed(layer.b_ih);
      const Scalar* b_hh = packed(layer.b_hh);
      for (index_t n = 0; n < N; ++n) {
        Scalar* h = state_.data() + layer.h_offset + n * P;
        gemv(w_ih, G, layer.in, in + n * in_width, b_ih, gate);  // input half of (R1) (L1) (G1)
        switch (layer.kind) {
          case CellKind::rnn_tanh:
          case CellKind::rnn_relu:
            gemv(w_hh, G, P, h, b_hh, hp);
            detail::rnn_row_forward(gate, hp, h, H, layer.kind == CellKind::rnn_relu);  // (R2)
            break;
          case CellKind::lstm: {
            Scalar* c = state_.data() + layer.c_offset + n * H;
            gemv(w_hh, G, P, h, b_hh, hp);  // (L1) recurrent half, before h is overwritten
            const bool proj = P != H;
            detail::lstm_row_forward(gate, hp, c, c, proj ? m_.data() : h, H);  // (L2)-(L4)
            if (proj) gemv(packed(layer.w_hr), P, H, m_.data(), static_cast<const Scalar*>(nullptr), h);  // (L5)
            break;
          }
          case CellKind::gru:
            if (layer.linear_before_reset) {
              gemv(w_hh, G, H, h, b_hh, hp);  // (G2), (G3)
              detail::gru_row_forward_lbr(gate, hp, h, static_cast<Scalar*>(nullptr), H);
            } else {
              gemv(w_hh, 2 * H, H, h, b_hh, hp);  // (G2): the r and z rows
              detail::gru_row_reset(gate, hp, h, rh_.data(), H);
              // (G4) the candidate's recurrent product needs r * h_prev first
              gemv(packed(layer.w_hn), H, H, rh_.data(), b_hh != nullptr ? b_hh + 2 * H : nullptr, hp + 2 * H);
              detail::gru_row_forward_original(gate, hp, h, H);  // (G4), (G5)
            }
            break;
        }
      }
      in = state_.data() + layer.h_offset;  // [N, P]: the next layer's input
      in_width = P;
    }
  }
  std::copy(in, in + N * output_size_, y);
}

template <typename Scalar>
const Scalar* Stream<Scalar>::step(const Scalar* x) {
  step(x, out_.data());
  return out_.data();
}

template <typename Scalar>
void Stream<Scalar>::reset() {
  std::fill(state_.begin(), state_.end(), Scalar(0));
}

template <typename Scalar>
void Stream<Scalar>::get_state(Scalar* state) const {
  std::copy(state_.begin(), state_.end(), state);
}

template <typename Scalar>
void Stream<Scalar>::set_state(const Scalar* state) {
  std::copy(state, state + state_.size(), state_.begin());
}

template class Stream<float>;
template class Stream<double>;

}  // namespace gatecell
