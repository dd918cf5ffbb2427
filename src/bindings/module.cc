#include <algorithm>
#include <chrono>
// fastrnn._core: the thin binding layer.  C++ errors map onto fastrnn.errors classes; the
// GIL is released around every numeric call; inputs are coerced once by runtime.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "fastrnn/blas.h"
#include "fastrnn/common.h"
#include "fastrnn/cpu/kernels.h"
#include "fastrnn/layers/recurrent.h"
#include "fastrnn/parallel/thread_pool.h"

namespace py = pybind11;

void register_model(py::module_& m);   // model.cc
void register_stream(py::module_& m);  // stream.cc

namespace {
// Best rate of a benchmark probe: `round(reps)` does reps units of work and returns how many it did;
// rounds shorter than min_dt seconds double reps and do not count; timed for `seconds` in all.
template <typename F>
double best_rate(double seconds, double min_dt, long reps, F round) {
  double best = 0, spent = 0;
  while (spent < seconds) {
    const auto t0 = std::chrono::steady_clock::now();
    const double done = round(reps);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    spent += dt;
    if (dt < min_dt) { reps *= 2; continue; }
    best = std::max(best, done / dt);
  }
  return best;
}
}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastrnn compiled core (use the fastrnn package, not this module)";
  py::module_ errors = py::module_::import("fastrnn.errors");
  // Keep the classes alive for the translator (module-lifetime references).
  static py::object shape_error = errors.attr("ShapeError");
  static py::object format_error = errors.attr("ModelFormatError");
  static py::object unsupported_error = errors.attr("UnsupportedLayerError");
  static py::object base_error = errors.attr("FastRNNError");
  static py::object memory_error = errors.attr("OutOfMemoryError");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const fastrnn::ShapeError& e) {
      PyErr_SetString(shape_error.ptr(), e.what());
    } catch (const fastrnn::FormatError& e) {
      PyErr_SetString(format_error.ptr(), e.what());
    } catch (const fastrnn::UnsupportedError& e) {
      PyErr_SetString(unsupported_error.ptr(), e.what());
    } catch (const fastrnn::OutOfMemoryError& e) {
      PyErr_SetString(memory_error.ptr(), e.what());
    } catch (const fastrnn::Error& e) {
      PyErr_SetString(base_error.ptr(), e.what());
    } catch (const std::bad_alloc&) {  // any allocation of the core: a FastRNNError that is a MemoryError
      PyErr_SetString(memory_error.ptr(), "fastrnn: out of memory (a buffer of the C++ core could not be allocated)");
    }
  });

  m.def("available_isas", &fastrnn::cpu::available_isas, "ISAs compiled in and supported by this CPU, worst to best");
  m.def("compiled_isas", &fastrnn::cpu::compiled_isas);
  m.def("isa", [] { return std::string(fastrnn::cpu::kernels().isa); }, "The ISA whose kernels are in use");
  m.def("set_isa", &fastrnn::cpu::set_isa, py::arg("isa"));
  m.def("activation_names", &fastrnn::cpu::act_names);
  m.def("layer_kinds", [] {
    return std::vector<std::string>{"embedding", "masking", "simple_rnn", "lstm", "gru", "dense", "activation",
                                    "last_step"};
  });
  m.def("blas", &fastrnn::blas::name);
  m.def("buffer_allocations", [] { return fastrnn::buffer_allocations().load(); },
        "Heap allocations made by the core's buffers so far (for allocation tests)");
  m.def("team_steps", [] { return fastrnn::team_steps().load(); },
        "Batch-1 steps run by a thread team (the hidden-unit split) so far, every layer (for tests)");
  m.def("folded_runs", [] { return fastrnn::folded_runs().load(); },
        "Recurrent layer runs over a sequence with the input projection folded into the steps so far (for tests)");
  m.def("fma_peak_gflops", [](double seconds) {
    // One core's fp32 FMA rate with the kernels in use: best of short timed rounds of the probe.
    py::gil_scoped_release nogil;
    const auto& k = fastrnn::cpu::kernels();
    return best_rate(seconds, 2e-3, 1 << 16, [&](long iters) { return k.fma_probe(iters); }) * 1e-9;
  }, py::arg("seconds") = 0.2, "Measured fp32 FMA GFLOP/s of one core with the kernels in use (benchmarks)");
  m.def("cache_read_gbps", [](long bytes, double seconds) {
    // One core's read bandwidth over a buffer of `bytes` (rounded up to 8 vectors), read again and
    // again with the kernels' loads: the cache level a batch-1 step's weights of that size stream
    // from.  Best of short timed rounds, GB/s (1e9 bytes per second).
    constexpr long kMax = 1L << 30;
    if (bytes < 1024 || bytes > kMax)
      throw fastrnn::ShapeError("cache_read_gbps: bytes must be within [1024, 2^30], got " + std::to_string(bytes));
    if (!(seconds > 0) || seconds > 60)
      throw fastrnn::ShapeError("cache_read_gbps: seconds must be within (0, 60], got " + std::to_string(seconds));
    py::gil_scoped_release nogil;
    const auto& k = fastrnn::cpu::kernels();
    const long step = 8 * k.vec, n = (bytes / 4 + step - 1) / step * step;
    fastrnn::Buffer buf(static_cast<std::size_t>(n));
    for (long i = 0; i < n; ++i) buf[i] = 1e-3f * static_cast<float>(i % 7);
    volatile float sink = k.read_probe(buf.data(), n, 1);  // warm: the buffer in whatever cache holds it
    const double rate = best_rate(seconds, 1e-3, 1, [&](long reps) {
      sink = k.read_probe(buf.data(), n, reps);
      return 4.0 * static_cast<double>(n) * static_cast<double>(reps);
    });
    (void)sink;
    return rate * 1e-9;
  }, py::arg("bytes"), py::arg("seconds") = 0.1,
        "Measured read bandwidth (GB/s) of one core over a buffer of `bytes` (benchmarks: the batch-1 roofline)");
  m.def("num_threads", [] { return fastrnn::ThreadPool::global().num_threads(); });
  m.def("set_num_threads", [](int n) {
    py::gil_scoped_release nogil;
    fastrnn::ThreadPool::global().set_num_threads(n);
  }, py::arg("n"));
  // Our own threads split the work; BLAS runs single-threaded inside each of them.
  fastrnn::blas::set_num_threads(1);
  register_model(m);
  register_stream(m);
}
