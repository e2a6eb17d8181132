// SPDX-License-Identifier: MIT
#pragma once
// One direction of one layer: the unit each cell kernel implements and the network stacks.

#include <omp.h>

#include <algorithm>
#include <exception>
#include <memory>
#include <type_traits>
#include <vector>

#include "detail/gemm.hpp"
#include "detail/pool.hpp"
#include "detail/sequence.hpp"
#include "detail/simd.hpp"
#include "detail/team.hpp"
#include "detail/weight_packs.hpp"
#include "gatecell/network.hpp"

namespace gatecell::detail {

template <typename Scalar>
struct DirectionForward {
  const NetworkConfig* config;
  Layout lay;
  const index_t* lengths;  // [N] or null
  bool reverse;
  LayerWeights<Scalar> w;
  Seq<const Scalar> x;     // [rows, in] layer input
  Seq<Scalar> y;           // [rows, Hout] column slice of the layer output
  const Scalar* h0;        // [N, Hout] or null
  const Scalar* c0;        // [N, H] or null (LSTM)
  Scalar* h_n;             // [N, Hout]
  Scalar* c_n;             // [N, H] (LSTM)
  LayerCache<Scalar>* cache;  // null in inference
  WeightPacks<Scalar>* packs = nullptr;  // packed weights kept between calls, or null (see kept_pack)

  bool active(index_t t, index_t n) const { return lengths == nullptr || t < lengths[n]; }
  index_t step_at(index_t k) const { return reverse ? lay.steps - 1 - k : k; }
};

template <typename Scalar>
struct DirectionBackward {
  const NetworkConfig* config;
  Layout lay;
  const index_t* lengths;
  bool reverse;
  LayerWeights<Scalar> w;
  LayerGrads<Scalar> g;           // accumulated (+=)
  Seq<const Scalar> x;            // [rows, in] layer input of the forward call
  const LayerCache<Scalar>* cache;
  Seq<const Scalar> dy;           // [rows, Hout] column slice, data may be null (zero)
  const Scalar* dh_n;             // [N, Hout] or null
  const Scalar* dc_n;             // [N, H] or null
  Seq<Scalar> dx;                 // [rows, in] accumulated (+=)
  Scalar* dh0;                    // [N, Hout] out
  Scalar* dc0;                    // [N, H] out (LSTM)
  Scalar* record_dh = nullptr;    // [rows, Hout] out, or null: per-step dL/dh_t (introspection)
  Scalar* record_dc = nullptr;    // [rows, H] out, or null: per-step dL/dc_t (LSTM)

  bool active(index_t t, index_t n) const { return lengths == nullptr || t < lengths[n]; }
  index_t step_at(index_t k) const { return reverse ? lay.steps - 1 - k : k; }
};

template <typename Scalar> void rnn_direction_forward(const DirectionForward<Scalar>& a);
template <typename Scalar> void rnn_direction_backward(const DirectionBackward<Scalar>& a);
template <typename Scalar> void lstm_direction_forward(const DirectionForward<Scalar>& a);
template <typename Scalar> void lstm_direction_backward(const DirectionBackward<Scalar>& a);
template <typename Scalar> void gru_direction_forward(const DirectionForward<Scalar>& a);
template <typename Scalar> void gru_direction_backward(const DirectionBackward<Scalar>& a);

// The N rows of step t of a [rows, cols] buffer in the layout `lay`, as the A operand of a GEMM.
template <typename Scalar>
MatView<Scalar> step_view(const Scalar* data, index_t cols, const Layout& lay, index_t t) {
  return {data + lay.row(t, 0) * cols, lay.batch, cols, cols * lay.batch_stride(), 1};
}

// The rows [n0, n1) of step t of a sequence buffer, as a [n1 - n0, cols] view.
template <typename Scalar>
MatView<Scalar> step_view(const Scalar* data, index_t cols, const Layout& lay, index_t t, index_t n0, index_t n1) {
  return {data + lay.row(t, n0) * cols, n1 - n0, cols, cols * lay.batch_stride(), 1};
}

// Copies the block's rows [n0, n1) of a dense [n1 - n0, C] state into step t of a sequence buffer.
template <typename Scalar>
void keep_rows(const Scalar* block, index_t C, const Layout& lay, index_t t, index_t n0, index_t n1, Scalar* seq) {
  for (index_t n = n0; n < n1; ++n) std::copy(block + (n - n0) * C, block + (n - n0 + 1) * C, seq + lay.row(t, n) * C);
}

// dh = dh_next for the block's sequences still running at step t; finished ones carry dh unchanged.
template <typename Scalar>
void carry_active_rows(const DirectionBackward<Scalar>& a, index_t t, index_t n0, index_t n1, const Scalar* next,
                       index_t C, Scalar* dh) {
  for (index_t n = n0; n < n1; ++n)
    if (a.active(t, n)) std::copy(next + (n - n0) * C, next + (n - n0 + 1) * C, dh + (n - n0) * C);
}

// out = x W_ih^T + b_ih, one row of G per row of x.
//   w_ih_t: W_ih^T packed, [in, G]; b_ih: [G] or null; ld: out's row stride (default G)
template <typename Scalar>
void project_inputs(const MatView<Scalar>& x, const PackedMatrix<Scalar>& w_ih_t, const Scalar* b_ih, Scalar* out,
                    index_t ld = 0) {
  const index_t G = w_ih_t.view().cols;
  if (ld == 0) ld = G;
  gemm(x, w_ih_t, out, ld, false);
  if (b_ih == nullptr) return;
  for (index_t r = 0; r < x.rows; ++r) VectorMap<Scalar>(out + r * ld, G).noalias() += ConstVectorMap<Scalar>(b_ih, G);
}

// The input rows of steps [lo, hi) and sequences [n0, n1), step by step, as one GEMM operand: x
// itself where they lie contiguous (time-major, every sequence), else gathered into `rows` (the
// copy is `in` values per row against 2 * in * G flops of the projection).
template <typename Scalar>
MatView<Scalar> window_input(const DirectionForward<Scalar>& a, index_t lo, index_t hi, index_t n0, index_t n1,
                             Buffer<Scalar>& rows) {
  const index_t N = a.lay.batch, in = a.x.cols, nb = n1 - n0, count = (hi - lo) * nb;
  if (!a.lay.batch_first && nb == N) return rows_view(a.x.data + lo * N * a.x.ld, count, in, a.x.ld);
  rows.resize(count * in);
  for (index_t s = lo; s < hi; ++s)
    for (index_t n = n0; n < n1; ++n) {
      const Scalar* src = a.x.data + a.lay.row(s, n) * a.x.ld;
      std::copy(src, src + in, rows.data() + ((s - lo) * nb + n - n0) * in);
    }
  return rows_view<Scalar>(rows.data(), count, in, in);
}

// A slice of units [j0, j0 + U) of a cell split by units (batch_split.cpp, step.cpp): its rows of
// each gate block of w [gates * H, cols], transposed and packed side by side as [cols, gates * U]
// (one GEMM covers every gate; gate q's columns at q * U), kept in `packs` when the call has them.
template <typename Scalar>
std::shared_ptr<const PackedMatrix<Scalar>> kept_unit_rows(WeightPacks<Scalar>* packs, const Scalar* w, index_t cols,
                                                           index_t gates, index_t H, index_t j0, index_t U) {
  std::vector<MatView<Scalar>> blocks;
  for (index_t q = 0; q < gates; ++q) blocks.push_back({w + (q * H + j0) * cols, cols, U, 1, cols});
  return kept_pack(packs, blocks);
}

// The same slice's part of each gate block of a bias [gates * H], as [gates * U]; empty when b is null.
template <typename Scalar>
std::vector<Scalar> unit_bias(const Scalar* b, index_t gates, index_t H, index_t j0, index_t U) {
  std::vector<Scalar> out;
  if (b == nullptr) return out;
  for (index_t q = 0; q < gates; ++q) out.insert(out.end(), b + q * H + j0, b + q * H + j0 + U);
  return out;
}

// x W_ih^T + b_ih, the input half of the gate pre-activations (one GEMM over many steps, not one
// per step). Training projects every step at once into the buffer the cache keeps (it ends up
// holding the activated gates); inference projects a window of steps at a time into a scratch
// buffer of bounded size, so its memory does not grow with the sequence length.
template <typename Scalar>
class GateWindow {
 public:
  // The projections of the batch rows [n0, n1) only, for one thread of a row team (see
  // for_each_row_block): in inference each has a window of its own, moved on without waiting for
  // the other threads; in training all read the buffer the owner filled.
  class Rows {
   public:
    Rows(const GateWindow& owner, index_t n0, index_t n1) : owner_(&owner), n0_(n0), nb_(n1 - n0) {
      if (owner.all_) return;
      const index_t T = owner.a_.lay.steps;
      span_ = std::max<index_t>(1, std::min<index_t>(T, kWindowElements / std::max<index_t>(1, nb_ * owner.G_)));
      scratch_.resize(span_ * nb_ * owner.G_);
      data_ = scratch_.data();
    }

    // Makes step t available; called at the start of each step by the thread that owns the rows.
    void prepare(index_t t) {
      if (owner_->all_ || (t >= lo_ && t < hi_)) return;
      const DirectionForward<Scalar>& a = owner_->a_;
      const index_t T = a.lay.steps;
      lo_ = a.reverse ? std::max<index_t>(0, t - span_ + 1) : t;
      hi_ = a.reverse ? t + 1 : std::min<index_t>(T, t + span_);
      if (!owner_->by_step(nb_)) {
        owner_->project(window_input(a, lo_, hi_, n0_, n0_ + nb_, x_rows_), data_);
        return;
      }
      // One GEMM a step, straight from x: no gathered copy of the window's rows.
      const index_t step_rs = a.lay.batch_first ? T * a.x.ld : a.x.ld;  // from sequence n to n + 1
      for (index_t s = lo_; s < hi_; ++s)
        owner_->project({a.x.data + a.lay.row(s, n0_) * a.x.ld, nb_, a.x.cols, step_rs, 1},
                        data_ + (s - lo_) * nb_ * owner_->G_);
    }

    // The G*H projections of (t, n), n in [n0, n1); t must have been prepared (training: any t).
    Scalar* at(index_t t, index_t n) const {
      if (owner_->all_) return owner_->at(t, n);
      return data_ + ((t - lo_) * nb_ + n - n0_) * owner_->G_;
    }

   private:
    const GateWindow* owner_;
    index_t n0_, nb_, span_ = 0, lo_ = 0, hi_ = 0;
    Buffer<Scalar> scratch_, x_rows_;  // written before they are read
    Scalar* data_ = nullptr;
  };

  // a: the direction; gate_rows: G*H; keep: the cache's gate buffer (training) or null (inference);
  // with_b_ih: the projections include b_ih; false: x W_ih^T alone (the cell adds b_ih itself, and
  // the window is not read and written once more for it)
  GateWindow(const DirectionForward<Scalar>& a, index_t gate_rows, std::vector<Scalar>* keep, bool with_b_ih = true)
      : a_(a), G_(gate_rows), all_(keep != nullptr), b_ih_(with_b_ih ? a.w.b_ih : nullptr) {
    const index_t in = a.x.cols;
    w_ih_t_ = kept_pack(a.packs, MatView<Scalar>{a.w.w_ih, in, G_, 1, in});
    if (keep != nullptr) {  // (testing keep itself lets the compiler see it is not null here)
      keep->resize(a.lay.rows() * G_);
      data_ = keep->data();
      project(rows_view(a.x.data, a.lay.rows(), in, a.x.ld), data_);
    }
  }

  // Makes step t available for every batch row; called by one thread at the start of each step.
  void prepare(index_t t) {
    if (all_) return;
    // Made on first use: the sequence kernels, whose threads each take rows(), never need it.
    if (!whole_) whole_ = std::make_unique<Rows>(*this, 0, a_.lay.batch);
    whole_->prepare(t);
  }

  // The G*H projections of (t, n); t must have been prepared (training: any t).
  Scalar* at(index_t t, index_t n) const {
    return all_ ? data_ + a_.lay.row(t, n) * G_ : whole_->at(t, n);
  }

  // The batch rows [n0, n1) with a window of their own (inference), for one thread of a row team.
  Rows rows(index_t n0, index_t n1) const { return Rows(*this, n0, n1); }

 private:
  static constexpr index_t kWindowElements = index_t(1) << 18;  // 1 MiB of float scratch per window at most

  void project(const MatView<Scalar>& x, Scalar* out) const { project_inputs(x, *w_ih_t_, b_ih_, out); }

  // Whether a window of nb sequences whose rows do not lie contiguous in x (batch-first, or a row
  // team's block) projects them step by step, one GEMM of nb rows each, rather than gathering them
  // into one operand: when the copy would cost much against the product (a small G) and W_ih^T
  // stays in L2 from one step's GEMM to the next; with enough rows a step for the micro-kernel;
  // and when the GEMM's rows do not depend on the rows around them. Measured at 2 threads, warm,
  // median ms: LSTM T 50 B 64 I 512 H 32 (256 KiB of W_ih) 2.90 -> 2.76; with 384-512 KiB it was
  // no faster (GRU T 200 B 32 I 256 H 128, LSTM T 100 B 32 I 128 H 256).
  bool by_step(index_t nb) const {
    constexpr index_t kStepRows = 16, kStepWeightBytes = 256 << 10;
    const bool gathered = a_.lay.batch_first || nb != a_.lay.batch;
    return gathered && nb >= kStepRows && gemm_rows_independent<Scalar>() &&
           a_.x.cols * G_ * static_cast<index_t>(sizeof(Scalar)) <= kStepWeightBytes;
  }

  const DirectionForward<Scalar>& a_;
  index_t G_;
  bool all_;
  const Scalar* b_ih_;  // added by project(), or null
  std::shared_ptr<const PackedMatrix<Scalar>> w_ih_t_;
  Scalar* data_ = nullptr;
  std::unique_ptr<Rows> whole_;  // prepare/at over all rows (inference)
};

// How many threads run the time loop of one direction, each over its own block of batch rows for
// every step (no barrier per step: the recurrent product of rows n needs only h rows n). One, when
// already inside a parallel region (the two directions of a layer side by side), or when the
// GEMM's results would depend on the split. Each thread reads all the recurrent weights at every
// step: blocks take kMinRows rows at least, so that the micro-kernel's FMAs repay those reads,
// unless the weights are small enough (under kSplitBytes, below which a split by units does not
// pay either) to stay in every core's L2; then a single row each will do. Measured at 2 threads,
// warm, median ms, one forked window GEMM then one thread vs blocks of 1-2 rows: LSTM T 50 B 4
// I 256 H 32 0.140 -> 0.121, GRU T 30 B 2 I 32 H 96 0.087 -> 0.066, RNN T 50 B 4 I 256 H 32
// 0.055 -> 0.049.
template <typename Scalar>
int row_team(index_t batch, const NetworkConfig& config) {
  constexpr index_t kMinRows = 4;
  if (in_parallel() || !gemm_rows_independent<Scalar>()) return 1;
  const index_t H = config.hidden_size, P = config.output_size();
  const index_t weights = (config.gates() * H * P + (config.proj_size > 0 ? H * P : 0)) * sizeof(Scalar);
  const index_t min_rows = weights < kSplitBytes ? 1 : kMinRows;
  return static_cast<int>(std::max<index_t>(1, std::min<index_t>(omp_get_max_threads(), batch / min_rows)));
}

// The LSTM projection h = m W_hr^T of one step for the batch rows [n0, n1) of a row team: one GEMM
// for the block into h_next, then the running rows' h goes to y (and m to the training cache),
// while the finished ones get their h back from h.
//   m, h, h_next: [n1 - n0, H], [n1 - n0, P], [n1 - n0, P] dense blocks
template <typename Scalar>
void project_block(const DirectionForward<Scalar>& a, index_t t, index_t n0, index_t n1,
                   const PackedMatrix<Scalar>& w_hr_t, const Scalar* m, const Scalar* h, Scalar* h_next) {
  const index_t H = a.config->hidden_size, P = a.config->output_size();
  gemm(rows_view(m, n1 - n0, H, H), w_hr_t, h_next, P, false);
  for (index_t n = n0; n < n1; ++n) {
    const index_t r = n - n0;
    Scalar* h_row = h_next + r * P;
    if (a.active(t, n)) {
      std::copy(h_row, h_row + P, a.y.at(a.lay, t, n));
      if (a.cache != nullptr) std::copy(m + r * H, m + (r + 1) * H, a.cache->m.data() + a.lay.row(t, n) * H);
    } else {
      std::copy(h + r * P, h + (r + 1) * P, h_row);
    }
  }
}

// Backward through project_block at step t: the running rows add dy_t to dh (and keep the sum in
// dh_seq, for dW_hr after the loop), then dm = dh W_hr for the block.
//   dh, dm: [n1 - n0, P], [n1 - n0, H] dense blocks; dh_seq: [rows, P] in the row order of x
template <typename Scalar>
void project_block_backward(const DirectionBackward<Scalar>& a, index_t t, index_t n0, index_t n1,
                            const PackedMatrix<Scalar>& w_hr_p, Scalar* dh, Scalar* dh_seq, Scalar* dm) {
  const index_t H = a.config->hidden_size, P = a.config->output_size();
  for (index_t n = n0; n < n1; ++n) {
    if (!a.active(t, n)) continue;
    Scalar* dh_row = dh + (n - n0) * P;
    if (a.dy.data != nullptr) {
      const Scalar* dy = a.dy.at(a.lay, t, n);
      for (index_t j = 0; j < P; ++j) dh_row[j] += dy[j];
    }
    std::copy(dh_row, dh_row + P, dh_seq + a.lay.row(t, n) * P);
  }
  gemm(rows_view(dh, n1 - n0, P, P), w_hr_p, dm, H, false);
}

// Runs body(n0, n1) once per block of a fixed split of the batch rows [0, batch) into `team`
// blocks, side by side on the calling thread and the pool's helpers (run_shared: a block no helper
// has started by the time the calling thread is free runs there); the first exception thrown is
// rethrown once every block has run or been skipped.
template <typename Body>
void for_each_row_block(index_t batch, int team, const Body& body) {
  run_shared(team, team, [&](index_t id) { body(batch * id / team, batch * (id + 1) / team); });
}

// out[j] += sum over r of a[r * ld + j] (a bias gradient from the stacked dA), summed in row
// order; a walk down the columns of a row-major buffer would touch one cache line per element.
// Threads take fixed blocks of columns, so the sums do not depend on their number.
// out, also: each null or [cols]; `also` gets the same sums (b_hh's gradient when it equals b_ih's).
template <typename Scalar>
void add_column_sums(const Scalar* a, index_t rows, index_t cols, index_t ld, Scalar* out, Scalar* also = nullptr) {
  if (out == nullptr && also == nullptr) return;
  constexpr index_t kColumns = 256;  // one block's partial sums stay in L1
  const index_t blocks = (cols + kColumns - 1) / kColumns;
  const bool parallel = blocks > 1 && rows * cols >= (index_t(1) << 20);
  run_shared(blocks, parallel ? omp_get_max_threads() : 1, [&](index_t b) {
    const index_t j0 = b * kColumns, width = std::min(kColumns, cols - j0);
    Eigen::Matrix<Scalar, 1, Eigen::Dynamic> sum = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>::Zero(width);
    index_t done = 0;  // columns summed on the AVX2 path (partial sums in registers, the same order)
    if constexpr (std::is_same_v<Scalar, float>) {
      if (use_avx2()) done = column_sums_avx2(a + j0, rows, width, ld, sum.data());
    }
    if (done < width)
      for (index_t r = 0; r < rows; ++r)
        sum.tail(width - done).noalias() += ConstVectorMap<Scalar>(a + r * ld + j0 + done, width - done);
    if (out != nullptr) VectorMap<Scalar>(out + j0, width).noalias() += sum;
    if (also != nullptr) VectorMap<Scalar>(also + j0, width).noalias() += sum;
  });
}

// After the step loop: the weight gradients of the input side, and dx += dA W_ih.
//   same_b_hh: the recurrent bias has the same gradient (RNN, LSTM: dL/db_hh = dL/db_ih = sum dA),
//              added here from the one pass over dA
//   h_prev, dw_hh: also dW_hh += dA^T h_prev ([rows, P] and [gate_rows, P]), in the same product
//              as dW_ih ([x | h_prev] side by side), so that the transposed dA, tens of MiB read
//              from memory, is read once; null: dW_ih alone
template <typename Scalar>
void input_side_gradients(const DirectionBackward<Scalar>& a, index_t gate_rows, ConstMatrixMap<Scalar> da_all,
                          bool same_b_hh = false, const Scalar* h_prev = nullptr, Scalar* dw_hh = nullptr) {
  const index_t in = a.x.cols, rows = a.lay.rows(), ld_da = da_all.outerStride();
  const MatView<Scalar> da = rows_view(da_all.data(), rows, gate_rows, ld_da);
  const MatView<Scalar> x = rows_view(a.x.data, rows, in, a.x.ld);
  if (h_prev == nullptr) {
    gemm(da.t(), x, a.g.w_ih, in, true);
  } else {  // [dW_ih | dW_hh] += dA^T [x | h_prev]: each element the same sum as two products give
    const index_t P = a.config->output_size();
    PackedMatrix<Scalar> xh;
    xh.refer({x, rows_view(h_prev, rows, P, P)});
    gemm(da.t(), xh, in, a.g.w_ih, in, dw_hh, P, true);
  }
  add_column_sums(da_all.data(), rows, gate_rows, ld_da, a.g.b_ih, same_b_hh ? a.g.b_hh : nullptr);
  gemm(da, rows_view(a.w.w_ih, gate_rows, in, in), a.dx.data, a.dx.ld, true);
}

// Introspection: stores dL/dh_t = dh (carried from later steps) + dy_t for every active sequence
// n in [n0, n1) of step t, when backward records; `dh` is [n1 - n0, width] and already holds dy_t
// if dy_added.
template <typename Scalar>
void record_step_dh(const DirectionBackward<Scalar>& a, index_t t, const Scalar* dh, index_t width, bool dy_added,
                    index_t n0, index_t n1) {
  if (a.record_dh == nullptr) return;
  for (index_t n = n0; n < n1; ++n) {
    if (!a.active(t, n)) continue;
    Scalar* out = a.record_dh + a.lay.row(t, n) * width;
    const Scalar* dy = (dy_added || a.dy.data == nullptr) ? nullptr : a.dy.at(a.lay, t, n);
    const Scalar* dh_row = dh + (n - n0) * width;
    for (index_t j = 0; j < width; ++j) out[j] = dh_row[j] + (dy != nullptr ? dy[j] : Scalar(0));
  }
}

// The same for all N sequences; `dh` is [N, width].
template <typename Scalar>
void record_step_dh(const DirectionBackward<Scalar>& a, index_t t, const Scalar* dh, index_t width, bool dy_added) {
  record_step_dh(a, t, dh, width, dy_added, 0, a.lay.batch);
}

// Copies rows [n0, n1) of a [N, C] state (null = zeros) into a dense [n1 - n0, C] buffer.
template <typename Scalar>
void load_state(const Scalar* src, index_t C, index_t n0, index_t n1, std::vector<Scalar>& dst) {
  dst.assign((n1 - n0) * C, Scalar(0));
  if (src != nullptr) std::copy(src + n0 * C, src + n1 * C, dst.begin());
}

// Copies a [N, C] state (null = zeros) into a dense buffer.
template <typename Scalar>
void load_state(const Scalar* src, index_t size, std::vector<Scalar>& dst) {
  dst.assign(size, Scalar(0));
  if (src != nullptr) std::copy(src, src + size, dst.begin());
}

}  // namespace gatecell::detail
