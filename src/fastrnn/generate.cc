// Model::generate: the decoding loops of a stream, all in C++ -- sampling, and beam search
// (greedy decoding is the beam search of width 1) -- with stop ids, the per-step output scores
// and a length penalty.
//
// Beam search, per batch row, K = beam_width hypotheses (rows b*K .. b*K+K-1 of a B*K-row stream
// whose states start as copies of the row after the prompt; only the first is live at first):
//   logp_k = log_softmax(output of hypothesis k)     (log of a softmax head; a log_softmax head as is)
//   candidates (k, v) of the live k: score_k + logp_k[v], ranked by score (ties: smaller k*V + v)
//   walking the ranking: a stop id ranked among the first K ends a finished hypothesis (stop id
//   included; lower-ranked stop ids are dropped); the other candidates, best first, become the K
//   new live hypotheses; the states are gathered from their parents' rows, their ids fed.
//   A row is done once it holds K finished hypotheses (or none can go on); the loop ends when
//   every row is done or after `steps` ids, when the live hypotheses count as finished too.
//   Returned: the finished hypothesis with the best  score / len^length_penalty  (len: its ids,
//   the stop id included; ties: the one finished first, then the lower live row).
// Width 1 is greedy decoding: the argmax (first maximum) at every step, a row ending at its
// first stop id; it needs only the order of the outputs (no log_softmax, no running score).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "fastrnn/model.h"

namespace fastrnn {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// One layer's h and c row i of buffer half `from` into row j of `to`'s half `into` (P floats of h,
// H of c per row, H = 0 without a cell state); `started` is the caller's.
void copy_hc_row(const StreamState::Rnn& from, int half_from, dim_t i, StreamState::Rnn& to, int half_into, dim_t j,
                 dim_t P, dim_t H) {
  std::memcpy(to.h[half_into].data() + j * P, from.h[half_from].data() + i * P, P * sizeof(float));
  if (H) std::memcpy(to.c[half_into].data() + j * H, from.c[half_from].data() + i * H, H * sizeof(float));
}

// Copy row i of src's recurrent state (h, c and 'started' of every layer) into row j of dst
// (two streams of one model, or the same one).
void copy_row(const StreamState& src, dim_t i, StreamState& dst, dim_t j) {
  for (std::size_t l = 0; l < src.rnn.size(); ++l) {
    const StreamState::Rnn& a = src.rnn[l];
    StreamState::Rnn& b = dst.rnn[l];
    copy_hc_row(a, a.cur, i, b, b.cur, j, a.h[0].size() / src.B, a.c[0].size() / src.B);
    b.started[j] = a.started[i];
  }
}

// Reorder the rows of a stream's state: row j takes row parent[j]'s state (written into the
// other half of each double buffer, which then becomes current).  `started` is scratch [B].
void gather_rows(StreamState& s, const std::vector<dim_t>& parent, std::vector<std::uint8_t>& started) {
  bool identity = true;
  for (dim_t j = 0; j < s.B; ++j) identity &= parent[j] == j;
  if (identity) return;
  for (StreamState::Rnn& r : s.rnn) {
    const dim_t P = r.h[0].size() / s.B, H = r.c[0].size() / s.B;
    const int o = 1 - r.cur;
    for (dim_t j = 0; j < s.B; ++j) {
      copy_hc_row(r, r.cur, parent[j], r, o, j, P, H);
      started[j] = r.started[parent[j]];
    }
    std::copy(started.begin(), started.begin() + s.B, r.started.begin());
    r.cur = o;
  }
}

// Log-probabilities lp[V] (double) of one output row o[V]:
//   kind 0 (logits):  lp_v = z_v - m - log(sum_u exp(z_u - m)),  m = max_u z_u
//   kind 1 (softmax): lp_v = log(p_v);   kind 2 (log_softmax): lp_v = z_v.
// False when a value is NaN (or the logits hold +inf).
bool log_probs(const float* o, dim_t V, int kind, double* lp) {
  if (kind == 0) {
    double m = kNegInf;
    for (dim_t v = 0; v < V; ++v) {
      if (std::isnan(o[v])) return false;
      m = std::max(m, static_cast<double>(o[v]));
    }
    if (!std::isfinite(m)) return m == kNegInf ? (std::fill(lp, lp + V, kNegInf), true) : false;
    double sum = 0;
    for (dim_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(o[v]) - m);
    const double lse = m + std::log(sum);
    for (dim_t v = 0; v < V; ++v) lp[v] = static_cast<double>(o[v]) - lse;
  } else {
    for (dim_t v = 0; v < V; ++v) {
      if (std::isnan(o[v])) return false;
      lp[v] = kind == 1 ? std::log(static_cast<double>(o[v])) : static_cast<double>(o[v]);
    }
  }
  return true;
}

struct Hyp {
  double rank;       // score / len^length_penalty
  dim_t step;        // index of its last id
  dim_t parent;      // the stream row its last id was picked from
  std::int64_t id;   // its last id
  dim_t slot;        // its state: row `slot` of the saved states, or (slot < 0) row -slot-1 of the beam stream
};

void beam_search(const Model& m, StreamState& s, Buffer& y0, dim_t V, dim_t steps, const GenerateOptions& opt,
                 const std::vector<std::uint8_t>& is_stop, dim_t n_stop, std::int64_t* out, float* logits) {
  const dim_t B = s.B, K = opt.beam_width, R = B * K, most = 2 * K - 1;  // finished per row: < K + K
  std::unique_ptr<StreamState> owned;
  StreamState* bs = &s;
  Buffer ky;
  Buffer* y = &y0;
  if (K > 1) {  // B*K rows, each row's state copied K times
    owned = m.new_stream(R);
    bs = owned.get();
    ky.resize(R * V);
    y = &ky;
    for (dim_t b = 0; b < B; ++b)
      for (dim_t k = 0; k < K; ++k) {
        copy_row(s, b, *bs, b * K + k);
        std::memcpy(ky.data() + (b * K + k) * V, y0.data() + b * V, V * sizeof(float));
      }
  }
  std::vector<double> score(R, kNegInf), next_score(R), lp(K * V);
  for (dim_t b = 0; b < B; ++b) score[b * K] = 0;
  std::vector<dim_t> parent(R), cand(K * V), hist_parent(steps * R);
  std::vector<std::int64_t> ids(R), hist_id(steps * R);
  std::vector<std::uint8_t> done(B, 0), scratch(R);
  std::vector<std::vector<Hyp>> finished(B);
  const std::unique_ptr<StreamState> saved = m.new_stream(B * most);  // states of finished hypotheses
  Buffer hist(logits ? steps * R * V : 0);
  const auto penalized = [&](double sc, dim_t len) { return sc / std::pow(static_cast<double>(len), opt.length_penalty); };
  const auto by_score = [&](dim_t a, dim_t b) { return lp[a] > lp[b] || (lp[a] == lp[b] && a < b); };
  dim_t n_done = 0;
  for (dim_t n = 0; n < steps && n_done < B; ++n) {
    if (logits) std::memcpy(hist.data() + n * R * V, y->data(), R * V * sizeof(float));
    for (dim_t b = 0; b < B; ++b) {
      const dim_t base = b * K;
      if (done[b]) {
        for (dim_t k = 0; k < K; ++k) parent[base + k] = base + k, ids[base + k] = 0, next_score[base + k] = kNegInf;
        continue;
      }
      dim_t nc = 0;
      for (dim_t k = 0; k < K; ++k) {
        if (!(score[base + k] > kNegInf)) continue;
        double* l = lp.data() + k * V;
        const float* o = y->data() + (base + k) * V;
        if (K == 1) {  // width 1 only ranks one row's outputs: their order is the log-probabilities' order
          for (dim_t v = 0; v < V; ++v) {
            if (std::isnan(o[v])) fail<Error>("generate: the model's output at step ", n, " of row ", b, " is NaN");
            l[v] = o[v];
          }
        } else if (!log_probs(o, V, opt.output_kind, l)) {
          fail<Error>("generate: the model's output at step ", n, " of row ", b, " is NaN");
        }
        for (dim_t v = 0; v < V; ++v) {
          l[v] += score[base + k];
          if (l[v] > kNegInf) cand[nc++] = k * V + v;
        }
      }
      if (nc == 0) fail<Error>("generate: no finite score to pick from at step ", n, " of row ", b);
      const dim_t M = std::min(nc, K * (1 + n_stop));  // K ids that are not stop ids (each beam may stop)
      std::partial_sort(cand.begin(), cand.begin() + M, cand.begin() + nc, by_score);
      dim_t live = 0;
      for (dim_t r = 0; r < M && live < K; ++r) {
        const dim_t c = cand[r], p = base + c / V, v = c % V;
        if (is_stop[v]) {
          if (r >= K) continue;
          const dim_t slot = b * most + static_cast<dim_t>(finished[b].size());
          copy_row(*bs, p, *saved, slot);  // the state before the stop id
          finished[b].push_back(Hyp{penalized(lp[c], n + 1), n, p, v, slot});
        } else {
          parent[base + live] = p, ids[base + live] = v, next_score[base + live] = K == 1 ? 0.0 : lp[c];
          ++live;
        }
      }
      for (dim_t j = live; j < K; ++j) parent[base + j] = base, ids[base + j] = 0, next_score[base + j] = kNegInf;
      if (static_cast<dim_t>(finished[b].size()) >= K || live == 0) done[b] = 1, ++n_done;
    }
    std::copy(parent.begin(), parent.end(), hist_parent.begin() + n * R);
    std::copy(ids.begin(), ids.end(), hist_id.begin() + n * R);
    score.swap(next_score);
    if (n_done == B) break;
    gather_rows(*bs, parent, scratch);  // each live row now holds its parent's state
    if (n + 1 < steps) m.step(*bs, nullptr, ids.data(), y->data());
  }
  for (dim_t b = 0; b < B; ++b) {
    std::vector<Hyp>& hyps = finished[b];
    if (!done[b])  // the loop ran all `steps`: the live hypotheses end here
      for (dim_t k = 0; k < K; ++k) {
        const dim_t j = b * K + k, at = (steps - 1) * R + j;
        if (score[j] > kNegInf)
          hyps.push_back(Hyp{penalized(score[j], steps), steps - 1, hist_parent[at], hist_id[at], -j - 1});
      }
    const Hyp* best = &hyps[0];
    for (const Hyp& h : hyps)
      if (h.rank > best->rank) best = &h;
    // Trace the ids (and the outputs they were picked from) back through the parents.
    std::int64_t id = best->id;
    dim_t row = best->parent;
    for (dim_t n = best->step; n >= 0; --n) {
      out[b * steps + n] = id;
      if (logits) std::memcpy(logits + (b * steps + n) * V, hist.data() + (n * R + row) * V, V * sizeof(float));
      if (n > 0) id = hist_id[(n - 1) * R + row], row = hist_parent[(n - 1) * R + row];
    }
    if (best->slot >= 0)
      copy_row(*saved, best->slot, s, b);
    else if (K > 1)
      copy_row(*bs, -best->slot - 1, s, b);  // a live row (with K == 1 it is row b of s already)
  }
}

void sample(const Model& m, StreamState& s, Buffer& y, dim_t V, dim_t steps, const GenerateOptions& opt,
            const std::vector<std::uint8_t>& is_stop, std::int64_t* out, float* logits) {
  const dim_t B = s.B, top_k = opt.top_k;
  const double temperature = opt.temperature;
  Buffer z(V), sorted(V);
  std::vector<double> w(V);
  std::vector<std::int64_t> ids(B);
  std::vector<std::uint8_t> stopped(B, 0);
  std::unique_ptr<StreamState> saved;  // rows that stopped, before their stop id
  if (!opt.stop_ids.empty()) saved = m.new_stream(B);
  dim_t n_stopped = 0;
  std::mt19937_64 rng(opt.seed);
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  for (dim_t n = 0; n < steps && n_stopped < B; ++n) {
    for (dim_t b = 0; b < B; ++b) {
      if (stopped[b]) {  // fed its stop id again (its state is restored at the end); it still
        unif(rng);       // draws, so that no row's samples depend on when the others stop
        continue;
      }
      const float* o = y.data() + b * V;
      dim_t pick = 0;
      // Logits z (log of a softmax head's probabilities); the top_k cut and the maximum on z
      // itself (dividing by temperature keeps the order), then weights exp((z - max) / T) in
      // double: every exponent <= 0, so no temperature overflows (z / T did: 1e-39 gave inf - inf).
      for (dim_t j = 0; j < V; ++j) z[j] = opt.output_kind == 1 ? std::log(o[j]) : o[j];
      float threshold = -INFINITY;
      if (top_k > 0 && top_k < V) {
        std::memcpy(sorted.data(), z.data(), V * sizeof(float));
        std::nth_element(sorted.data(), sorted.data() + (V - top_k), sorted.data() + V);
        threshold = sorted[V - top_k];
      }
      float mx = -INFINITY;
      for (dim_t j = 0; j < V; ++j)
        if (z[j] >= threshold && z[j] > mx) mx = z[j];
      if (!(mx > -INFINITY)) fail<Error>("generate: no finite output to sample from (NaN outputs?)");
      double total = 0;
      for (dim_t j = 0; j < V; ++j) {
        const float v = z[j];  // NaN and values below the top_k cut weigh 0; the maximum 1 (also when +inf)
        w[j] = !(v >= threshold) ? 0.0 : v == mx ? 1.0 : std::exp((static_cast<double>(v) - mx) / temperature);
        total += w[j];
      }
      const double u = unif(rng) * total;
      double acc = 0;
      for (dim_t j = 0; j < V; ++j) {
        if (w[j] <= 0) continue;
        acc += w[j];
        pick = j;
        if (acc > u) break;
      }
      out[b * steps + n] = ids[b] = pick;
      if (logits) std::memcpy(logits + (b * steps + n) * V, o, V * sizeof(float));
      if (is_stop[pick]) {
        copy_row(s, b, *saved, b);  // the state before the stop id
        stopped[b] = 1;
        ++n_stopped;
      }
    }
    if (n + 1 < steps && n_stopped < B) m.step(s, nullptr, ids.data(), y.data());
  }
  for (dim_t b = 0; b < B; ++b)
    if (stopped[b]) copy_row(*saved, b, s, b);
}

}  // namespace

void Model::generate(StreamState& s, const std::int64_t* prompt, dim_t Tp, dim_t steps, const GenerateOptions& opt,
                     std::int64_t* out, float* logits) const {
  if (!takes_ids()) fail<FormatError>("generate: the model must start with an Embedding");
  if (Tp < 1) fail<ShapeError>("generate: the prompt must have at least one id");
  if (steps < 0) fail<ShapeError>("generate: steps must be >= 0, got ", steps);
  const dim_t B = s.B, V = step_output_size();
  if (V > layers_[0].rows)
    fail<ShapeError>("generate: the model outputs ", V, " classes but its Embedding has only ", layers_[0].rows, " ids");
  if (opt.beam_width < 1 || opt.beam_width > V)
    fail<ShapeError>("generate: beam_width must be in [1, ", V, "] (the vocabulary), got ", opt.beam_width);
  const bool beam = opt.greedy || opt.beam_width > 1;
  if (opt.greedy && opt.beam_width > 1) fail<ShapeError>("generate: greedy decoding is beam_width 1");
  if (!beam && !(opt.temperature > 0 && std::isfinite(opt.temperature)))
    fail<ShapeError>("generate: temperature must be a finite number > 0, got ", opt.temperature);
  if (!std::isfinite(opt.length_penalty))
    fail<ShapeError>("generate: length_penalty must be finite, got ", opt.length_penalty);
  std::vector<std::uint8_t> is_stop(V, 0);
  dim_t n_stop = 0;
  for (const std::int64_t id : opt.stop_ids) {
    if (id < 0 || id >= V) fail<ShapeError>("generate: stop id ", id, " is outside [0, ", V, ") (the model's outputs)");
    n_stop += !is_stop[id];
    is_stop[id] = 1;
  }
  std::fill(out, out + B * steps, -1);
  if (logits) std::fill(logits, logits + B * steps * V, std::numeric_limits<float>::quiet_NaN());
  Buffer y(B * V);
  std::vector<std::int64_t> ids(B);
  for (dim_t t = 0; t < Tp; ++t) {
    for (dim_t b = 0; b < B; ++b) ids[b] = prompt[b * Tp + t];
    step(s, nullptr, ids.data(), y.data());
  }
  if (steps == 0) return;
  if (beam)
    beam_search(*this, s, y, V, steps, opt, is_stop, n_stop, out, logits);
  else
    sample(*this, s, y, V, steps, opt, is_stop, out, logits);
}

}  // namespace fastrnn
