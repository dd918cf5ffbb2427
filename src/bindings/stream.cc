// py::class_ for a stream: a Model (shared, immutable) plus one StreamState (owned).
// step() checks the input, releases the GIL around the allocation-free C++ step and writes into
// a new or caller-provided output array.
#include <chrono>
#include <mutex>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "fastrnn/model.h"

namespace py = pybind11;
using fastrnn::dim_t;
using fastrnn::ShapeError;
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using IdArray = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;
IdArray id_array(py::handle x, const char* what);  // model.cc: the one rule for ids

// The C entry point behind the thin Cython step (fastrnn/_step.pyx): plain pointers, no pybind11
// on the hot path.  Keep the struct in step with _step.pyx.  Returns 0, or 1 when the caller
// should retry through the pybind11 step (which raises the proper, fully worded error); the
// C++ step validates before it changes any state, so a retry never advances twice.
extern "C" struct FastrnnStepApi {
  int (*step)(void* ctx, const float* x, const std::int64_t* ids, float* out);
  void* ctx;
  long long batch, in_features, out_features;
  int takes_ids;
  int release_gil;  // 0: a step too small to be worth releasing the GIL around (kHoldGilMacs)
};

namespace {

// Steps of fewer multiply-adds than this (all recurrent layers, all rows) keep the GIL: releasing and
// retaking it costs ~50 ns, 4% of an LSTM 8 -> 64 step at batch 1 (1.09 vs 1.15 us per call from
// Python, Zen 4), and such a step holds the GIL for a microsecond or two (numpy keeps it for small
// operations too).  Larger steps release it, so other Python threads run meanwhile.
constexpr double kHoldGilMacs = 65536;

double step_macs(const fastrnn::Model& m, dim_t batch) {
  double n = 0;
  for (const auto* c : m.recurrent_layers())
    n += static_cast<double>(batch) * c->num_directions() * c->gates() * c->units * (c->input_size + c->hidden_out());
  return n;
}

struct PyStream {
  std::shared_ptr<const fastrnn::Model> model;
  std::unique_ptr<fastrnn::StreamState> state;
  std::mutex busy;
  dim_t in = 0, out = 0;

  FastrnnStepApi api{};

  PyStream(std::shared_ptr<const fastrnn::Model> m, dim_t batch) : model(std::move(m)) {
    state = model->new_stream(batch);
    in = model->input_size();
    out = model->step_output_size();
    api = FastrnnStepApi{&c_step, this, batch, in, out, model->takes_ids() ? 1 : 0,
                         step_macs(*model, batch) >= kHoldGilMacs ? 1 : 0};
  }

  static int c_step(void* ctx, const float* x, const std::int64_t* ids, float* y) noexcept {
    auto* self = static_cast<PyStream*>(ctx);
    std::unique_lock<std::mutex> lk(self->busy, std::try_to_lock);
    if (!lk) return 1;
    try {
      self->model->step(*self->state, x, ids, y);
      return 0;
    } catch (...) {
      return 1;
    }
  }

  std::unique_lock<std::mutex> lock() {
    std::unique_lock<std::mutex> lk(busy, std::try_to_lock);
    if (!lk) throw fastrnn::Error("this Stream is being used by another thread; create one stream per thread");
    return lk;
  }

  py::array step(py::object x, py::object out_obj) {
    auto lk = lock();
    const dim_t B = state->B;
    FloatArray xf;
    IdArray xi;
    const bool ids = model->takes_ids();
    if (ids) {
      xi = id_array(x, "step");
      if (!xi || xi.ndim() != 1 || xi.shape(0) != B)
        fastrnn::fail<ShapeError>("step: ids must have shape (", B, ",) (one id per stream row)");
    } else {
      xf = FloatArray::ensure(x);
      if (!xf || xf.ndim() != 2 || xf.shape(0) != B || (in >= 0 && xf.shape(1) != in))
        fastrnn::fail<ShapeError>("step: x must have shape (", B, ", ", in, ") (batch, features)");
    }
    py::array_t<float> y;
    if (out_obj.is_none()) {
      y = py::array_t<float>({static_cast<py::ssize_t>(B), static_cast<py::ssize_t>(out)});
    } else {
      y = py::array_t<float>::ensure(out_obj);
      if (!y || !py::isinstance<py::array_t<float>>(out_obj) || y.ndim() != 2 || y.shape(0) != B ||
          y.shape(1) != out || !(y.flags() & py::array::c_style) || !y.writeable())
        fastrnn::fail<ShapeError>("step: out must be a writable C-contiguous float32 array of shape (", B, ", ", out,
                                  ")");
    }
    float* dst = y.mutable_data();
    {
      py::gil_scoped_release nogil;
      model->step(*state, ids ? nullptr : xf.data(), ids ? xi.data() : nullptr, dst);
    }
    return std::move(y);
  }
};

}  // namespace

py::array activations_to_numpy(fastrnn::Activations& a);  // model.cc
py::object outputs_object(const fastrnn::Model& model, std::vector<fastrnn::Activations>& outs);  // model.cc

void register_stream(py::module_& m) {
  py::class_<PyStream>(m, "Stream")
      .def(py::init([](std::shared_ptr<fastrnn::Model> model, dim_t batch) {
             return std::make_unique<PyStream>(std::move(model), batch);
           }),
           py::arg("model"), py::arg("batch_size"))
      .def_property_readonly("batch_size", [](const PyStream& s) { return s.state->B; })
      .def_property_readonly("output_size", [](const PyStream& s) { return s.out; })
      .def("step", &PyStream::step, py::arg("x"), py::arg("out") = py::none(),
           "Advance one step: x (batch, features) floats or (batch,) ids -> (batch, outputs) float32.")
      .def(
          "run",
          [](PyStream& s, py::object x) {
            auto lk = s.lock();
            const dim_t B = s.state->B;
            std::vector<fastrnn::Activations> outs;
            if (s.model->takes_ids()) {
              IdArray xi = id_array(x, "run");
              if (!xi || xi.ndim() != 2 || xi.shape(0) != B || xi.shape(1) < 1)
                fastrnn::fail<ShapeError>("run: ids must have shape (", B, ", time)");
              py::gil_scoped_release nogil;
              s.model->run(*s.state, nullptr, xi.data(), xi.shape(1), outs);
            } else {
              FloatArray xf = FloatArray::ensure(x);
              if (!xf || xf.ndim() != 3 || xf.shape(0) != B || xf.shape(1) < 1 || (s.in >= 0 && xf.shape(2) != s.in))
                fastrnn::fail<ShapeError>("run: x must have shape (", B, ", time, ", s.in, ")");
              py::gil_scoped_release nogil;
              s.model->run(*s.state, xf.data(), nullptr, xf.shape(1), outs);
            }
            return outputs_object(*s.model, outs);
          },
          py::arg("x"), "Advance several steps: x (batch, time, features); returns what predict() returns.")
      .def(
          "step_all",
          [](PyStream& s, py::object x) {
            // Every core output of one step (a model with several outputs): a tuple, output 0 first.
            py::array y0 = s.step(x, py::none());
            auto lk = s.lock();
            const std::size_t n = s.model->num_outputs();
            py::tuple t(n);
            t[0] = y0;
            for (std::size_t k = 1; k < n; ++k) {
              const dim_t w = s.model->step_output_size(k), B = s.state->B;
              py::array_t<float> y({static_cast<py::ssize_t>(B), static_cast<py::ssize_t>(w)});
              std::memcpy(y.mutable_data(), s.model->step_output(*s.state, k), B * w * sizeof(float));
              t[k] = y;
            }
            return t;
          },
          py::arg("x"), "Advance one step and return every core output (a tuple).")
      .def(
          "_step_api", [](PyStream& s) { return py::capsule(&s.api, "fastrnn.step_api"); },
          "Capsule with the C step entry point (for fastrnn._step); valid while this Stream lives.")
      .def(
          "_time_steps",
          [](PyStream& s, py::array x, int n) {
            // Average seconds of the C++ step alone (no binding cost), for the benchmark report.
            auto lk = s.lock();
            FloatArray xf = FloatArray::ensure(x);
            IdArray xi = IdArray::ensure(x);
            std::vector<float> y(s.state->B * s.out);
            py::gil_scoped_release nogil;
            const auto t0 = std::chrono::steady_clock::now();
            for (int i = 0; i < n; ++i)
              s.model->step(*s.state, s.model->takes_ids() ? nullptr : xf.data(),
                            s.model->takes_ids() ? xi.data() : nullptr, y.data());
            return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / n;
          },
          py::arg("x"), py::arg("n"))
      .def(
          "generate",
          [](PyStream& s, py::array prompt, dim_t steps, int output_kind, bool greedy, double temperature, dim_t top_k,
             std::uint64_t seed, py::object stop_ids, dim_t beam_width, double length_penalty,
             bool return_logits) -> py::object {
            auto lk = s.lock();
            IdArray p = id_array(prompt, "generate: prompt ids");
            if (!p || p.ndim() != 2 || p.shape(0) != s.state->B)
              fastrnn::fail<ShapeError>("generate: prompt ids must have shape (", s.state->B, ", time)");
            if (steps < 0) fastrnn::fail<ShapeError>("generate: steps must be >= 0, got ", steps);
            fastrnn::GenerateOptions opt;
            opt.output_kind = output_kind, opt.greedy = greedy, opt.temperature = temperature, opt.top_k = top_k;
            opt.seed = seed, opt.beam_width = beam_width, opt.length_penalty = length_penalty;
            if (!stop_ids.is_none()) {
              IdArray st = id_array(stop_ids, "generate: stop_ids");
              if (!st || st.ndim() != 1) fastrnn::fail<ShapeError>("generate: stop_ids must be a 1-D list of ids");
              opt.stop_ids.assign(st.data(), st.data() + st.shape(0));
            }
            const auto B = static_cast<py::ssize_t>(s.state->B), T = static_cast<py::ssize_t>(steps);
            py::array_t<std::int64_t> out({B, T});
            py::array_t<float> logits;
            if (return_logits) logits = py::array_t<float>({B, T, static_cast<py::ssize_t>(s.out)});
            std::int64_t* dst = out.mutable_data();
            float* scores = return_logits ? logits.mutable_data() : nullptr;
            {
              py::gil_scoped_release nogil;
              s.model->generate(*s.state, p.data(), p.shape(1), steps, opt, dst, scores);
            }
            if (return_logits) return py::make_tuple(out, logits);
            return std::move(out);
          },
          py::arg("prompt"), py::arg("steps"), py::arg("output_kind"), py::arg("greedy"), py::arg("temperature"),
          py::arg("top_k"), py::arg("seed"), py::arg("stop_ids") = py::none(), py::arg("beam_width") = 1,
          py::arg("length_penalty") = 1.0, py::arg("return_logits") = false,
          "Feed prompt (batch, time) ids, then generate `steps` ids per row (see Model::generate): (batch, steps) "
          "int64, -1 after a stop id; with return_logits, also the (batch, steps, outputs) scores (NaN there).")
      .def(
          "reset",
          [](PyStream& s, py::object rows) {
            auto lk = s.lock();
            if (rows.is_none()) return s.model->reset_stream(*s.state, nullptr, 0);
            IdArray r = IdArray::ensure(rows);
            if (!r || r.ndim() != 1) throw ShapeError("reset: rows must be a 1-D list of row indices");
            s.model->reset_stream(*s.state, r.data(), r.shape(0));
          },
          py::arg("rows") = py::none())
      .def("get_state",
           [](PyStream& s) {
             auto lk = s.lock();
             py::list out;
             const dim_t B = s.state->B;
             for (auto& r : s.state->rnn) {
               const dim_t P = r.h[0].size() / B, H = r.c[0].size() / B;
               py::array_t<float> h({py::ssize_t(1), py::ssize_t(B), py::ssize_t(P)});
               std::memcpy(h.mutable_data(), r.h[r.cur].data(), B * P * sizeof(float));
               if (H) {
                 py::array_t<float> c({py::ssize_t(1), py::ssize_t(B), py::ssize_t(H)});
                 std::memcpy(c.mutable_data(), r.c[r.cur].data(), B * H * sizeof(float));
                 out.append(py::make_tuple(h, c));
               } else {
                 out.append(h);
               }
             }
             return out;
           })
      .def("set_state", [](PyStream& s, py::list states) {
        // states: exactly the runtime-checked per-layer list: (h, c) or (h, None), float32 (1, B, .)
        auto lk = s.lock();
        const dim_t B = s.state->B;
        if (states.size() != s.state->rnn.size()) throw ShapeError("state: one entry per recurrent layer expected");
        std::vector<std::pair<FloatArray, FloatArray>> arrs;
        for (std::size_t i = 0; i < states.size(); ++i) {  // check everything before writing anything
          auto& r = s.state->rnn[i];
          const dim_t P = r.h[0].size() / B, H = r.c[0].size() / B;
          py::tuple t = states[i].cast<py::tuple>();
          FloatArray h = FloatArray::ensure(t[0]);
          FloatArray c = H ? FloatArray::ensure(t[1]) : FloatArray();
          if (!h || h.size() != B * P || (H && (!c || c.size() != B * H)))
            fastrnn::fail<ShapeError>("state entry ", i, ": wrong shape");
          arrs.emplace_back(h, c);
        }
        for (std::size_t i = 0; i < arrs.size(); ++i) {
          auto& r = s.state->rnn[i];
          std::memcpy(r.h[r.cur].data(), arrs[i].first.data(), r.h[0].size() * sizeof(float));
          if (r.c[0].size()) std::memcpy(r.c[r.cur].data(), arrs[i].second.data(), r.c[0].size() * sizeof(float));
          std::fill(r.started.begin(), r.started.end(), 1);
        }
      });
}
