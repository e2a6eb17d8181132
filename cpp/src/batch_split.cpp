// SPDX-License-Identifier: MIT
// Small-batch forward passes split by units over a team of threads (detail/batch_split.hpp).
// Equation numbers refer to rnn.cpp (R), lstm.cpp (L) and gru.cpp (G).
//
// With a few sequences (fewer than a row team needs), a step is one small GEMM h_prev W_hh^T
// whose weights outgrow L2, then the gate math. Forking that GEMM over the threads at every step
// leaves the gate math on one thread and joins the team twice per step; here each thread keeps
// its units' columns of W_hh^T and W_ih^T for the whole sequence and runs their GEMMs and gate
// math for every sequence, and the team meets once per step (run_unit_team). In training each
// thread also records its units' part of the cache (gates, states entering and leaving the step).
// Every value is the one the unsplit kernels compute: the GEMM sums each element in one chain
// whichever columns a call covers, and the gate math runs the same row kernels on the same
// operands, each unit in the same vector lane (slices start at multiples of 8).

#include "detail/batch_split.hpp"

#include <algorithm>
#include <memory>
#include <vector>

#include "detail/cell_math.hpp"
#include "detail/pool.hpp"
#include "detail/team.hpp"

namespace gatecell::detail {

namespace {

// Steps per window of input projections (x W_ih^T + b_ih, one GEMM for the window).
constexpr index_t kWindowSteps = 32;

// Slices start at multiples of 16 units: each gate block of a slice is then whole GEMM panels
// wide (but the last slice's), and PackedMatrix packs the blocks side by side without a copy.
constexpr index_t kSliceAlign = 16;

// A slice's units [j0, j0 + U) of the rows of a [rows, H] buffer (null: zeros) into out [rows, U].
template <typename Scalar>
void take_units(const Scalar* from, index_t rows, index_t H, index_t j0, index_t U, std::vector<Scalar>& out) {
  out.assign(rows * U, Scalar(0));
  if (from != nullptr)
    for (index_t n = 0; n < rows; ++n) std::copy(from + n * H + j0, from + n * H + j0 + U, out.data() + n * U);
}

// The inverse: [rows, U] into the slice's columns of a [rows, H] buffer.
template <typename Scalar>
void put_units(const Scalar* from, index_t rows, index_t H, index_t j0, index_t U, Scalar* to) {
  for (index_t n = 0; n < rows; ++n) std::copy(from + n * U, from + (n + 1) * U, to + n * H + j0);
}

// One row of `gates` gate blocks in the slice's layout ([gates * U], gate q at q * U; null: zeros)
// into the cell's layout, gate q at q * H; `to` points at the slice's first unit of gate 0.
template <typename Scalar>
void put_gate_units(const Scalar* from, index_t gates, index_t H, index_t U, Scalar* to) {
  for (index_t q = 0; q < gates; ++q) {
    if (from == nullptr) std::fill(to + q * H, to + q * H + U, Scalar(0));
    else std::copy(from + q * U, from + (q + 1) * U, to + q * H);
  }
}

// The inverse: one row's gates in the cell's layout (`from` at the slice's first unit of gate 0)
// into the slice's layout.
template <typename Scalar>
void take_gate_units(const Scalar* from, index_t gates, index_t H, index_t U, Scalar* to) {
  for (index_t q = 0; q < gates; ++q) std::copy(from + q * H, from + q * H + U, to + q * U);
}

// One thread's share: the units [j0, j0 + U) of every sequence, with their columns of W_ih^T and
// W_hh^T (the gate blocks packed side by side), their cell states and their window
// of projections.
// All of its buffers are [rows, gates * U]: gate q's columns at q * U, as the unsplit kernels'
// [rows, gates * H] with H = U, so the same row kernels run on them.
template <typename Scalar>
class BatchSlice {
 public:
  BatchSlice(const DirectionForward<Scalar>& a, Scalar* const* h, index_t j0, index_t j1)
      : a_(a), h_(h), H_(a.config->hidden_size), N_(a.lay.batch), j0_(j0), U_(j1 - j0),
        gates_(a.config->gates()), GU_(gates_ * U_) {
    w_ih_t_ = kept_unit_rows(a.packs, a.w.w_ih, a.x.cols, gates_, H_, j0_, U_);
    w_hh_t_ = kept_unit_rows(a.packs, a.w.w_hh, H_, gates_, H_, j0_, U_);
    b_ih_ = unit_bias(a.w.b_ih, gates_, H_, j0_, U_);
    b_hh_ = unit_bias(a.w.b_hh, gates_, H_, j0_, U_);
    take_units(a.config->kind == CellKind::lstm ? a.c0 : nullptr, N_, H_, j0_, U_, c_);
    hp_.resize(N_ * GU_);
    x_gates_.resize(kWindowSteps * N_ * GU_);
    if (a.cache != nullptr && a.config->kind == CellKind::gru) hn_.resize(U_);
  }

  // Step k (time t) of the slice's units for every sequence: from h_[k % 2] (the whole h_prev)
  // into h_[(k + 1) % 2] and y. A sequence past its length outputs zero and keeps h and c.
  bool step(index_t k) {
    const index_t t = a_.step_at(k);
    const Scalar* h_prev = h_[k % 2];
    Scalar* h_next = h_[(k + 1) % 2];
    if (k / kWindowSteps != window_) project_window(k / kWindowSteps);
    gemm(rows_view(h_prev, N_, H_, H_), *w_hh_t_, hp_.data(), GU_, false);  // (R1), (L1), (G2)-(G3), recurrent half
    const CellKind kind = a_.config->kind;
    LayerCache<Scalar>* cache = a_.cache;
    for (index_t n = 0; n < N_; ++n) {
      Scalar* y = a_.y.at(a_.lay, t, n) + j0_;
      const Scalar* h_row = h_prev + n * H_ + j0_;
      Scalar* h_out = h_next + n * H_ + j0_;
      Scalar* hp = hp_.data() + n * GU_;
      Scalar* c = kind == CellKind::lstm ? c_.data() + n * U_ : nullptr;
      const index_t row = a_.lay.row(t, n);  // in the cache's [rows, width] records: row * width + j0
      if (cache != nullptr) {
        std::copy(h_row, h_row + U_, cache->h_prev.data() + row * H_ + j0_);
        if (c != nullptr) std::copy(c, c + U_, cache->c_prev.data() + row * H_ + j0_);
      }
      if (!a_.active(t, n)) {
        std::fill(y, y + U_, Scalar(0));
        std::copy(h_row, h_row + U_, h_out);
        if (c != nullptr && cache != nullptr) std::copy(c, c + U_, cache->c.data() + row * H_ + j0_);
        continue;
      }
      Scalar* gate = x_gates_.data() + ((t - t_lo_) * N_ + n) * GU_;
      const Scalar* b_hh = b_hh_.empty() ? nullptr : b_hh_.data();
      if (kind == CellKind::lstm) {
        lstm_row_forward(gate, hp, c, c, h_out, U_, b_hh);  // (L2)-(L4)
        if (cache != nullptr) std::copy(c, c + U_, cache->c.data() + row * H_ + j0_);
      } else {
        if (b_hh != nullptr) VectorMap<Scalar>(hp, GU_).noalias() += ConstVectorMap<Scalar>(b_hh, GU_);
        if (kind == CellKind::gru) {
          std::copy(h_row, h_row + U_, h_out);
          Scalar* hn = cache != nullptr ? hn_.data() : nullptr;  // W_hn h_prev + b_hn, for the backward pass
          gru_row_forward_lbr(gate, hp, h_out, hn, U_);  // (G2), (G3), (G5)
          if (hn != nullptr) std::copy(hn, hn + U_, cache->hn.data() + row * H_ + j0_);
        } else {
          rnn_row_forward(gate, hp, h_out, U_, kind == CellKind::rnn_relu);  // (R2)
        }
      }
      if (cache != nullptr)  // the activated gates
        put_gate_units(static_cast<const Scalar*>(gate), gates_, H_, U_, cache->gates.data() + row * gates_ * H_ + j0_);
      std::copy(h_out, h_out + U_, y);
    }
    return true;
  }

  // The slice's part of c_n [N, H].
  void copy_cell_state(Scalar* c_n) const { put_units(c_.data(), N_, H_, j0_, U_, c_n); }

 private:
  // x W_ih^T + b_ih of the slice's columns for window w of steps, rows (t - t_lo) * N + n.
  void project_window(index_t w) {
    const index_t k0 = w * kWindowSteps, count = std::min(kWindowSteps, a_.lay.steps - k0);
    t_lo_ = std::min(a_.step_at(k0), a_.step_at(k0 + count - 1));
    const MatView<Scalar> x = window_input(a_, t_lo_, t_lo_ + count, index_t(0), N_, x_rows_);
    project_inputs(x, *w_ih_t_, b_ih_.empty() ? nullptr : b_ih_.data(), x_gates_.data());
    window_ = w;
  }

  const DirectionForward<Scalar>& a_;
  Scalar* const* h_;  // h_[0], h_[1]: [N, H] each, shared by the team, alternating by step
  index_t H_, N_, j0_, U_, gates_, GU_;
  std::shared_ptr<const PackedMatrix<Scalar>> w_ih_t_, w_hh_t_;  // [in, gates * U], [H, gates * U]
  std::vector<Scalar> b_ih_, b_hh_, c_;   // [gates * U] the slice's parts of the biases, or empty; [N, U]
  Buffer<Scalar> hp_, x_gates_, x_rows_;  // written before they are read
  Buffer<Scalar> hn_;                     // [U] GRU in training: one row's W_hn h_prev + b_hn
  index_t window_ = -1, t_lo_ = 0;
};

// One thread's share of the backward step loop (LSTM, RNN, GRU with linear before reset): the
// units [j0, j0 + U) of every sequence. Step k runs, for the step before it, dh_prev = dA W_hh
// for the slice's columns of W_hh (which needs every unit's dA of that step: the team met in
// between), then the gate math of step k for the slice's units, which needs only their dh (and
// dc). Step T is the last product. The gate math runs on the slice's units gathered as a cell of
// U units (gate q at q * U) and puts dA back in the cell's layout (gate q at q * H).
template <typename Scalar>
class BackwardSlice {
 public:
  BackwardSlice(const DirectionBackward<Scalar>& a, Scalar* da, Scalar* da_h, index_t j0, index_t j1)
      : a_(a), da_(da), da_h_(da_h), H_(a.config->hidden_size), N_(a.lay.batch), G_(a.config->gates() * H_),
        j0_(j0), U_(j1 - j0), kind_(a.config->kind) {
    w_hh_.pack(MatView<Scalar>{a.w.w_hh + j0_, G_, U_, H_, 1});  // W_hh [G, H], the slice's columns
    take_units(a.dh_n, N_, H_, j0_, U_, dh_);
    dh_next_.resize(N_ * U_);
    if (kind_ == CellKind::lstm) {
      take_units(a.dc_n, N_, H_, j0_, U_, dc_);
      tanh_c_.resize(U_);
    }
    if (kind_ == CellKind::gru) {
      dh_direct_.resize(N_ * U_);
      d_h_.resize(G_ / H_ * U_);
    }
    gate_.resize(G_ / H_ * U_);
    d_.resize(G_ / H_ * U_);
  }

  bool step(index_t k) {
    const index_t T = a_.lay.steps;
    const bool gru = kind_ == CellKind::gru;
    if (k > 0) {  // (L1), (R1), (G2)-(G3): dh_prev = dA W_hh for the step before
      const index_t t = a_.step_at(T - k);
      gemm(step_view(static_cast<const Scalar*>(gru ? da_h_ : da_), G_, a_.lay, t), w_hh_, dh_next_.data(), U_,
           false);
      if (gru)  // (G5): h_prev's direct share
        for (index_t i = 0; i < N_ * U_; ++i) dh_next_[i] += dh_direct_[i];
      for (index_t n = 0; n < N_; ++n)  // sequences already finished keep carrying dh unchanged
        if (a_.active(t, n)) std::copy(dh_next_.data() + n * U_, dh_next_.data() + (n + 1) * U_, dh_.data() + n * U_);
    }
    if (k == T) return false;
    const index_t t = a_.step_at(T - 1 - k);
    for (index_t n = 0; n < N_; ++n) {
      const index_t row = a_.lay.row(t, n);
      Scalar* d = da_ + row * G_ + j0_;  // gate q's units at q * H
      Scalar* d_h = gru ? da_h_ + row * G_ + j0_ : nullptr;
      if (!a_.active(t, n)) {  // the step did nothing: dA is zero
        put_gate_units(static_cast<const Scalar*>(nullptr), G_ / H_, H_, U_, d);
        if (gru) put_gate_units(static_cast<const Scalar*>(nullptr), G_ / H_, H_, U_, d_h);
        continue;
      }
      const Scalar* gates = a_.cache->gates.data() + row * G_ + j0_;
      const Scalar* dy = a_.dy.data != nullptr ? a_.dy.at(a_.lay, t, n) + j0_ : nullptr;
      const Scalar* dh = dh_.data() + n * U_;
      const index_t unit = row * H_ + j0_;  // the slice's first unit in the cache's [rows, H] records
      if (kind_ == CellKind::lstm) {  // (L4)-(L2)
        take_gate_units(gates, G_ / H_, H_, U_, gate_.data());
        tanh_row(a_.cache->c.data() + unit, tanh_c_.data(), U_);
        lstm_row_backward(gate_.data(), tanh_c_.data(), a_.cache->c_prev.data() + unit, dh, dy, dc_.data() + n * U_,
                          d_.data(), U_);
        put_gate_units(d_.data(), G_ / H_, H_, U_, d);
      } else if (gru) {  // (G5)-(G2)
        take_gate_units(gates, G_ / H_, H_, U_, gate_.data());
        gru_row_backward(gate_.data(), a_.cache->h_prev.data() + unit, a_.cache->hn.data() + unit, dh, dy,
                         dh_direct_.data() + n * U_, d_.data(), d_h_.data(), U_);
        put_gate_units(d_.data(), G_ / H_, H_, U_, d);
        put_gate_units(d_h_.data(), G_ / H_, H_, U_, d_h);
      } else {
        rnn_row_backward(gates, dh, dy, d, U_, kind_ == CellKind::rnn_relu);  // (R2)
      }
    }
    return true;
  }

  // The slice's units of dh0 and dc0.
  void copy_out() const {
    put_units(dh_.data(), N_, H_, j0_, U_, a_.dh0);
    if (kind_ == CellKind::lstm && a_.dc0 != nullptr) put_units(dc_.data(), N_, H_, j0_, U_, a_.dc0);
  }

 private:
  const DirectionBackward<Scalar>& a_;
  Scalar *da_, *da_h_;  // [rows, G] shared by the team (da_h: GRU's recurrent side), each slice its units
  index_t H_, N_, G_, j0_, U_;
  CellKind kind_;
  PackedMatrix<Scalar> w_hh_;
  std::vector<Scalar> dh_, dc_, dh_next_, dh_direct_;  // [N, U]
  std::vector<Scalar> gate_, d_, d_h_, tanh_c_;        // one row's gates, dA, GRU's dA_h [gates * U]; tanh(c) [U]
};

// Recurrent weights past which batch 1's backward loop does not split (backward_unit_team).
constexpr index_t kSplitBatch1Bytes = 2 << 20;

// The threads that split a direction's steps by units, forward or backward: 1 where the split
// does not apply (see batch_unit_team), else as many as give slices of kSplitUnits or more.
template <typename Scalar>
int unit_team(const NetworkConfig& config, index_t N) {
  const index_t H = config.hidden_size;
  if (config.has_variants() || config.reverse || config.proj_size > 0) return 1;
  if (config.kind == CellKind::gru && !config.linear_before_reset) return 1;
  if (N < 1 || in_parallel() || !gemm_rows_independent<Scalar>() || row_team<Scalar>(N, config) > 1) return 1;
  if (split_pause().active()) return 1;
  // The batch-1 floor holds here too (2 threads, min ms of 100 steps, split vs forked GEMM): LSTM
  // B 2 H 64 (64 KiB) 0.31 vs 0.26, but GRU B 3 H 96 (108 KiB) 0.33 vs 0.37 and LSTM B 4 H 128
  // (256 KiB) 0.95 vs 1.27.
  if (config.gates() * H * H * static_cast<index_t>(sizeof(Scalar)) < kSplitBytes) return 1;
  for (index_t nt = std::min<index_t>(omp_get_max_threads(), H / kSplitUnits); nt > 1; --nt) {
    index_t narrowest = H;
    for (index_t id = 0; id < nt; ++id)
      narrowest = std::min(narrowest, slice_start(H, id + 1, nt, kSliceAlign) - slice_start(H, id, nt, kSliceAlign));
    if (narrowest >= kSplitUnits) return static_cast<int>(nt);
  }
  return 1;
}

}  // namespace

// Batch-1 inference has the step kernel (step_kernel_applies); training splits batch 1 too.
template <typename Scalar>
int batch_unit_team(const DirectionForward<Scalar>& a) {
  return unit_team<Scalar>(*a.config, a.lay.batch);
}

template <typename Scalar>
int backward_unit_team(const DirectionBackward<Scalar>& a) {
  const index_t H = a.config->hidden_size;
  if (a.record_dh != nullptr || a.record_dc != nullptr) return 1;  // introspection: the unsplit loop records
  // 2 threads, training step, median ms, split backward vs forked GEMM: LSTM T 100 I 64 H 128
  // B 4 0.73 vs 0.80, B 1 H 256 1.10 vs 1.51; RNN T 200 B 1 I 64 H 512 1.55 vs 2.4; LSTM T 200
  // I 256 H 512 B 2 13.8 vs 15.1. With batch 1 and W_hh past 2 MiB the split gains nothing (LSTM
  // T 100 I 256 H 384 and 448, 2.25 and 3 MiB: within 3% either way) or loses (LSTM T 200 I 256
  // H 512: 11.4 vs 10.8).
  const index_t weights = a.config->gates() * H * H * static_cast<index_t>(sizeof(Scalar));
  if (a.lay.batch == 1 && weights > kSplitBatch1Bytes) return 1;
  return unit_team<Scalar>(*a.config, a.lay.batch);
}

template <typename Scalar>
void batch_split_direction_backward(const DirectionBackward<Scalar>& a, Scalar* da, Scalar* da_h, int team) {
  const index_t H = a.config->hidden_size;
  const auto slices = run_unit_team<BackwardSlice<Scalar>>(team, a.lay.steps + 1, [&](index_t id, index_t nt) {
    return std::make_unique<BackwardSlice<Scalar>>(a, da, da_h, slice_start(H, id, nt, kSliceAlign),
                                                  slice_start(H, id + 1, nt, kSliceAlign));
  });
  for (const auto& slice : slices)
    if (slice != nullptr) slice->copy_out();  // the runtime may have started fewer
}

template <typename Scalar>
void batch_split_direction_forward(const DirectionForward<Scalar>& a, int team) {
  const index_t H = a.config->hidden_size, N = a.lay.batch, T = a.lay.steps, rows = a.lay.rows();
  if (LayerCache<Scalar>* cache = a.cache; cache != nullptr) {  // each slice writes its units' columns
    cache->gates.resize(rows * a.config->gates() * H);
    cache->h_prev.resize(rows * H);
    if (a.config->kind == CellKind::lstm) {
      cache->c_prev.resize(rows * H);
      cache->c.resize(rows * H);
    }
    if (a.config->kind == CellKind::gru) cache->hn.resize(rows * H);
  }
  std::vector<Scalar> h0, h1(N * H);
  load_state(a.h0, N * H, h0);
  Scalar* const h[2] = {h0.data(), h1.data()};
  const auto slices = run_unit_team<BatchSlice<Scalar>>(team, T, [&](index_t id, index_t nt) {
    return std::make_unique<BatchSlice<Scalar>>(a, h, slice_start(H, id, nt, kSliceAlign),
                                               slice_start(H, id + 1, nt, kSliceAlign));
  });
  std::copy(h[T % 2], h[T % 2] + N * H, a.h_n);
  if (a.c_n != nullptr)
    for (const auto& slice : slices)
      if (slice != nullptr) slice->copy_cell_state(a.c_n);  // the runtime may have started fewer
}

template int batch_unit_team<float>(const DirectionForward<float>&);
template int batch_unit_team<double>(const DirectionForward<double>&);
template void batch_split_direction_forward<float>(const DirectionForward<float>&, int);
template void batch_split_direction_forward<double>(const DirectionForward<double>&, int);
template int backward_unit_team<float>(const DirectionBackward<float>&);
template int backward_unit_team<double>(const DirectionBackward<double>&);
template void batch_split_direction_backward<float>(const DirectionBackward<float>&, float*, float*, int);
template void batch_split_direction_backward<double>(const DirectionBackward<double>&, double*, double*, int);

}  // namespace gatecell::detail
