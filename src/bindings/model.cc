// py::class_ for fastrnn::Model: the JSON header (a dict, written by fastrnn/spec.py
// ModelSpec.to_core) becomes plain configs here; every key is required (no silent defaults).
#include "fastrnn/model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <type_traits>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

namespace py = pybind11;
using fastrnn::dim_t;
using fastrnn::FormatError;
using fastrnn::ShapeError;
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using IdArray = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

namespace {

struct Ctx {
  std::string where;
  py::dict layer;
  py::dict tensors, refs;
  template <typename T>
  T get(const char* key) const {
    if (!layer.contains(key)) fastrnn::fail<FormatError>(where, ": missing '", key, "'");
    try {
      return layer[key].cast<T>();
    } catch (const py::cast_error&) {
      fastrnn::fail<FormatError>(where, ": '", key, "' has the wrong type (or is a string that is not valid Unicode)");
    }
  }
  py::object resolve(const std::string& ref, std::string& key) const {
    if (!refs.contains(ref.c_str())) fastrnn::fail<FormatError>(where, ": missing tensor '", ref, "'");
    key = py::str(refs[ref.c_str()]);
    if (!tensors.contains(key.c_str())) fastrnn::fail<FormatError>(where, ": tensor '", key, "' is not in the file");
    return tensors[key.c_str()];
  }
  FloatArray lookup(const std::string& ref, std::string& key) const {
    FloatArray a = FloatArray::ensure(resolve(ref, key));
    if (!a) fastrnn::fail<FormatError>(where, ": tensor '", key, "' is not a float array");
    return a;
  }
  FloatArray tensor2d(const std::string& ref) const {
    std::string key;
    FloatArray a = lookup(ref, key);
    if (a.ndim() != 2) fastrnn::fail<FormatError>(where, ": tensor '", key, "' must be 2-D");
    return a;
  }
  void check_shape(const py::array& a, const std::string& key, const std::vector<dim_t>& shape) const {
    bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
    for (std::size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
    if (!ok) {
      std::string want, got;
      for (auto s : shape) want += std::to_string(s) + ",";
      for (py::ssize_t i = 0; i < a.ndim(); ++i) got += std::to_string(a.shape(i)) + ",";
      fastrnn::fail<FormatError>(where, ": tensor '", key, "' has shape (", got, ") but (", want, ") is required");
    }
  }
  FloatArray tensor(const std::string& ref, std::vector<dim_t> shape) const {
    std::string key;
    FloatArray a = lookup(ref, key);
    check_shape(a, key, shape);
    return a;
  }
  // A reduced-precision weight matrix: exactly dtype T (no conversion: a float array here is a
  // header / tensor mismatch), shape (rows, cols); int8 values in [-127, 127].
  template <typename T>
  py::array_t<T, py::array::c_style> qmatrix(const std::string& ref, dim_t rows, dim_t cols, const char* what) const {
    std::string key;
    py::object o = resolve(ref, key);
    py::array a = py::array::ensure(o);
    if (!a || !a.dtype().is(py::dtype::of<T>()))
      fastrnn::fail<FormatError>(where, ": tensor '", key, "' (", ref, ") must be ", what, " for precision '",
                                 get<std::string>("precision"), "', got ",
                                 a ? std::string(py::str(a.dtype())) : std::string("a non-array"));
    check_shape(a, key, {rows, cols});
    auto t = py::array_t<T, py::array::c_style>::ensure(a);
    if constexpr (std::is_same_v<T, std::int8_t>) {
      const std::int8_t* p = t.data();
      for (py::ssize_t i = 0; i < t.size(); ++i)
        if (p[i] == -128) fastrnn::fail<FormatError>(where, ": tensor '", key, "' holds -128 (int8 weights are in [-127, 127])");
    }
    return t;
  }
  // Per-row int8 scales: float32 (rows,), finite and >= 0.
  FloatArray scales(const std::string& ref, dim_t rows) const {
    std::string key;
    py::array a = py::array::ensure(resolve(ref, key));
    if (!a || !a.dtype().is(py::dtype::of<float>()))
      fastrnn::fail<FormatError>(where, ": tensor '", key, "' (", ref, ") must be float32 scales, got ",
                                 a ? std::string(py::str(a.dtype())) : std::string("a non-array"));
    check_shape(a, key, {rows});
    FloatArray f = FloatArray::ensure(a);
    for (py::ssize_t i = 0; i < f.size(); ++i)
      if (!std::isfinite(f.data()[i]) || f.data()[i] < 0.f)
        fastrnn::fail<FormatError>(where, ": tensor '", key, "' (", ref, ") has a non-finite or negative scale at row ",
                                   i, " (", f.data()[i], ")");
    return f;
  }
};

template <typename E>
E pick(const Ctx& c, const char* key, std::initializer_list<std::pair<const char*, E>> options) {
  std::string v = c.get<std::string>(key);
  for (auto& [name, e] : options)
    if (v == name) return e;
  fastrnn::fail<FormatError>(c.where, ": unknown ", key, " '", v, "'");
}

std::shared_ptr<fastrnn::Model> build(const py::dict& header, const py::dict& tensors) {
  using fastrnn::LayerKind;
  auto model = std::make_shared<fastrnn::Model>();
  if (!header.contains("layers")) fastrnn::fail<FormatError>("header: missing 'layers'");
  py::list layers = header["layers"].cast<py::list>();
  // The header's format version (v1 files predate the per-layer "precision" key).
  long format = 1;
  if (header.contains("format")) {
    try {
      format = header["format"].cast<long>();
    } catch (const py::cast_error&) {
      fastrnn::fail<FormatError>("header: 'format' must be an integer");
    }
  }
  std::size_t i = 0;
  for (auto item : layers) {
    Ctx c;
    c.where = "layer " + std::to_string(i);
    if (!py::isinstance<py::dict>(item)) fastrnn::fail<FormatError>(c.where, ": not a dict");
    c.layer = item.cast<py::dict>();
    c.tensors = tensors;
    if (!c.layer.contains("kind") || !c.layer.contains("name"))
      fastrnn::fail<FormatError>(c.where, ": missing 'kind' or 'name'");
    std::string kind = c.get<std::string>("kind"), name = c.get<std::string>("name");
    c.where = "layer '" + name + "' (" + kind + ")";
    c.refs = c.layer.contains("tensors") ? c.layer["tensors"].cast<py::dict>() : py::dict();
    if (kind == "embedding") {
      FloatArray t = c.tensor2d("embeddings");
      model->add_embedding(name, t.data(), t.shape(0), t.shape(1), c.get<bool>("mask_zero"));
    } else if (kind == "masking") {
      model->add_masking(name, c.get<float>("mask_value"));
    } else if (kind == "simple_rnn" || kind == "lstm" || kind == "gru") {
      fastrnn::RecurrentConfig cfg;
      cfg.name = name;
      cfg.cell = kind == "lstm" ? LayerKind::Lstm : kind == "gru" ? LayerKind::Gru : LayerKind::SimpleRnn;
      cfg.input_size = c.get<dim_t>("input_size");
      cfg.units = c.get<dim_t>("units");
      cfg.proj_size = c.get<dim_t>("proj_size");
      if (cfg.input_size < 1 || cfg.units < 1 || cfg.proj_size < 0 || (cfg.proj_size && kind != "lstm"))
        fastrnn::fail<FormatError>(c.where, ": bad sizes");
      cfg.act = fastrnn::cpu::act_from_name(c.get<std::string>("activation"));
      cfg.ract = fastrnn::cpu::act_from_name(c.get<std::string>("recurrent_activation"));
      if (fastrnn::cpu::is_axis_act(cfg.act) || fastrnn::cpu::is_axis_act(cfg.ract))
        fastrnn::fail<fastrnn::UnsupportedError>(c.where, ": softmax, log_softmax and l2_normalize (over the last "
                                                          "axis) are not cell activations");
      cfg.reset_after = c.get<bool>("reset_after");
      cfg.direction = pick<fastrnn::Direction>(c, "direction", {{"forward", fastrnn::Direction::Forward},
                                                                {"reverse", fastrnn::Direction::Reverse},
                                                                {"bidirectional", fastrnn::Direction::Bidirectional}});
      cfg.merge = pick<fastrnn::Merge>(c, "merge_mode", {{"concat", fastrnn::Merge::Concat},
                                                         {"sum", fastrnn::Merge::Sum},
                                                         {"mul", fastrnn::Merge::Mul},
                                                         {"ave", fastrnn::Merge::Ave},
                                                         {"none", fastrnn::Merge::None}});
      cfg.return_sequences = c.get<bool>("return_sequences");
      cfg.mask_mode = pick<fastrnn::MaskMode>(c, "mask_mode", {{"zero", fastrnn::MaskMode::Zero},
                                                               {"hold", fastrnn::MaskMode::Hold}});
      // "precision": required from format 2 on; a v1 header (no key) is float32.
      if (c.layer.contains("precision") || format >= 2)
        cfg.precision = pick<fastrnn::Precision>(c, "precision", {{"f32", fastrnn::Precision::F32},
                                                                   {"bf16", fastrnn::Precision::Bf16},
                                                                   {"int8", fastrnn::Precision::Int8}});
      // Options (format 3): "clip" (null or a number >= 0), "input_forget", "gate_activations" (null, or
      // per direction [[name, alpha, beta], ...]: f, g, h in ONNX's order); tensors "<dir>.peephole".
      if (c.layer.contains("clip") || format >= 3) {
        py::object clip = c.get<py::object>("clip");
        if (!clip.is_none()) {
          cfg.clip_on = true;
          cfg.clip = c.get<float>("clip");
          if (!std::isfinite(cfg.clip) || cfg.clip < 0.f) fastrnn::fail<FormatError>(c.where, ": 'clip' must be finite and >= 0");
        }
      }
      if (c.layer.contains("input_forget") || format >= 3) cfg.input_forget = c.get<bool>("input_forget");
      if (cfg.input_forget && kind != "lstm") fastrnn::fail<FormatError>(c.where, ": input_forget is LSTM only");
      if (c.layer.contains("gate_activations") || format >= 3) {
        py::object ga = c.get<py::object>("gate_activations");
        if (!ga.is_none()) {
          const std::size_t per = kind == "lstm" ? 3 : kind == "gru" ? 2 : 1;
          try {
            py::list dl = ga.cast<py::list>();
            if (dl.size() != static_cast<std::size_t>(cfg.num_directions())) throw py::cast_error();
            for (std::size_t d = 0; d < dl.size(); ++d) {
              py::list fl = dl[d].cast<py::list>();
              if (fl.size() != per) throw py::cast_error();
              for (std::size_t r = 0; r < per; ++r) {
                py::list e = fl[r].cast<py::list>();
                if (e.size() != 3) throw py::cast_error();
                const std::string fn = e[0].cast<std::string>();
                static const std::pair<const char*, fastrnn::GateFn> names[] = {
                    {"Relu", fastrnn::GateFn::Relu}, {"Tanh", fastrnn::GateFn::Tanh},
                    {"Sigmoid", fastrnn::GateFn::Sigmoid}, {"Affine", fastrnn::GateFn::Affine},
                    {"LeakyRelu", fastrnn::GateFn::LeakyRelu}, {"ThresholdedRelu", fastrnn::GateFn::ThresholdedRelu},
                    {"ScaledTanh", fastrnn::GateFn::ScaledTanh}, {"HardSigmoid", fastrnn::GateFn::HardSigmoid},
                    {"Elu", fastrnn::GateFn::Elu}, {"Softsign", fastrnn::GateFn::Softsign},
                    {"Softplus", fastrnn::GateFn::Softplus}};
                bool found = false;
                for (auto& [n, f] : names)
                  if (fn == n) cfg.acts[d][r].fn = f, found = true;
                if (!found) fastrnn::fail<FormatError>(c.where, ": unknown gate activation '", fn, "'");
                cfg.acts[d][r].alpha = e[1].cast<float>();
                cfg.acts[d][r].beta = e[2].cast<float>();
                if (!std::isfinite(cfg.acts[d][r].alpha) || !std::isfinite(cfg.acts[d][r].beta))
                  fastrnn::fail<FormatError>(c.where, ": gate activation '", fn, "' has a non-finite alpha / beta");
              }
            }
          } catch (const py::cast_error&) {
            fastrnn::fail<FormatError>(c.where, ": 'gate_activations' must hold, per direction, ", per,
                                       " [name, alpha, beta] entries");
          }
          cfg.gate_acts = true;
        }
      }
      cfg.peephole = c.refs.contains("forward.peephole");
      if (cfg.peephole && kind != "lstm") fastrnn::fail<FormatError>(c.where, ": peepholes are LSTM only");
      const dim_t GH = cfg.gates() * cfg.units, P = cfg.hidden_out();
      fastrnn::DirectionTensors dirs[2];
      std::vector<py::array> keep;
      // A weight matrix in the layer's precision (int8: with its scales).
      auto matrix = [&](const std::string& ref, dim_t rows, dim_t cols, const float** scale) -> const void* {
        switch (cfg.precision) {
          case fastrnn::Precision::F32: keep.push_back(c.tensor(ref, {rows, cols})); break;
          case fastrnn::Precision::Bf16:
            keep.push_back(c.qmatrix<std::uint16_t>(ref, rows, cols, "uint16 (bf16 bit patterns)"));
            break;
          case fastrnn::Precision::Int8: {
            if (cols > fastrnn::kInt8MaxColumns)
              fastrnn::fail<fastrnn::UnsupportedError>(c.where, ": int8 tensor '", ref, "' has ", cols, " columns (more than ",
                                                       fastrnn::kInt8MaxColumns, " would overflow the int32 sums); use bf16 or f32");
            keep.push_back(c.qmatrix<std::int8_t>(ref, rows, cols, "int8"));
            const void* q = keep.back().data();
            FloatArray s = c.scales(ref + "_scale", rows);
            keep.push_back(s);
            *scale = s.data();
            return q;
          }
        }
        return keep.back().data();
      };
      for (int d = 0; d < cfg.num_directions(); ++d) {
        const std::string p = d ? "backward." : "forward.";
        dirs[d].w_ih = matrix(p + "w_ih", GH, cfg.input_size, &dirs[d].s_ih);
        dirs[d].w_hh = matrix(p + "w_hh", GH, P, &dirs[d].s_hh);
        keep.push_back(c.tensor(p + "b_ih", {GH}));
        dirs[d].b_ih = static_cast<const float*>(keep.back().data());
        keep.push_back(c.tensor(p + "b_hh", {GH}));
        dirs[d].b_hh = static_cast<const float*>(keep.back().data());
        if (cfg.proj_size) dirs[d].w_hr = matrix(p + "w_hr", P, cfg.units, &dirs[d].s_hr);
        // optional float32 tensors: peepholes (every direction when the first has them), default state
        auto opt = [&](const std::string& ref, std::vector<dim_t> shape, bool required) -> const float* {
          if (!required && !c.refs.contains(ref.c_str())) return nullptr;
          keep.push_back(c.tensor(ref, std::move(shape)));
          return static_cast<const float*>(keep.back().data());
        };
        dirs[d].peephole = opt(p + "peephole", {3, cfg.units}, cfg.peephole);
        dirs[d].h0 = opt(p + "h0", {P}, false);
        if (kind == "lstm") dirs[d].c0 = opt(p + "c0", {cfg.units}, false);
      }
      model->add_recurrent(cfg, dirs);
    } else if (kind == "dense") {
      FloatArray w = c.tensor2d("weight");
      FloatArray b = c.tensor("bias", {w.shape(0)});
      model->add_dense(name, w.data(), b.data(), w.shape(0), w.shape(1),
                       fastrnn::cpu::act_from_name(c.get<std::string>("activation")));
    } else if (kind == "activation") {
      model->add_activation(name, fastrnn::cpu::act_from_name(c.get<std::string>("activation")));
    } else if (kind == "last_step") {
      model->add_last_step(name);
    } else {
      fastrnn::fail<fastrnn::UnsupportedError>("layer '", name, "': unknown layer kind '", kind, "'");
    }
    ++i;
  }
  // Format 3: "layer_inputs" {layer: earlier layer} and "outputs" [{"kind", "layers"}...]; the core
  // returns the "output" entries' layers (each once, in order); state outputs are runtime.py's.
  const bool reads = header.contains("layer_inputs") && !header["layer_inputs"].is_none();
  const bool outs = header.contains("outputs") && !header["outputs"].is_none();
  if (reads || outs) {
    std::map<std::string, std::int64_t> index;
    std::int64_t k = 0;
    for (auto item : layers) index[item.cast<py::dict>()["name"].cast<std::string>()] = k++;
    auto find = [&](py::handle name, const char* what) {
      std::string n;
      try {
        n = name.cast<std::string>();
      } catch (const py::cast_error&) {
        fastrnn::fail<FormatError>(what, ": layer names must be strings");
      }
      auto it = index.find(n);
      if (it == index.end()) fastrnn::fail<FormatError>(what, ": unknown layer '", n, "'");
      return it->second;
    };
    std::vector<std::int64_t> src(layers.size());
    for (std::size_t j = 0; j < src.size(); ++j) src[j] = static_cast<std::int64_t>(j) - 1;
    if (reads) {
      if (!py::isinstance<py::dict>(header["layer_inputs"])) fastrnn::fail<FormatError>("header: 'layer_inputs' must be a dict");
      for (auto kv : header["layer_inputs"].cast<py::dict>()) src[find(kv.first, "layer_inputs")] = find(kv.second, "layer_inputs");
    }
    std::vector<std::size_t> data;
    if (outs) {
      if (!py::isinstance<py::list>(header["outputs"])) fastrnn::fail<FormatError>("header: 'outputs' must be a list");
      for (auto o : header["outputs"].cast<py::list>()) {
        if (!py::isinstance<py::dict>(o)) fastrnn::fail<FormatError>("header: each output must be a dict");
        py::dict d = o.cast<py::dict>();
        if (!d.contains("kind") || !d.contains("layers") || !py::isinstance<py::list>(d["layers"]))
          fastrnn::fail<FormatError>("header: each output needs 'kind' and a list 'layers'");
        if (py::str(d["kind"]).cast<std::string>() != "output") continue;
        py::list names = d["layers"].cast<py::list>();
        if (names.size() != 1) fastrnn::fail<FormatError>("header: an 'output' names exactly one layer");
        const auto li = static_cast<std::size_t>(find(names[0], "outputs"));
        if (std::find(data.begin(), data.end(), li) == data.end()) data.push_back(li);
      }
    }
    model->set_graph(src, data);
  }
  return model;
}

}  // namespace

// Ids under the one rule of fastrnn.runtime.ids_array (predict, Stream.step / run, generate):
// an integer array, or floats that are all integral (1.0 is id 1; 1.7 is refused, never
// truncated by a cast); bools, strings and objects are refused.  Ranges are the model's check.
IdArray id_array(py::handle x, const char* what) {
  py::array a = py::array::ensure(x);
  if (!a) fastrnn::fail<ShapeError>(what, ": expects integer ids");
  const char kind = a.dtype().kind();
  if (kind == 'f') {
    using Doubles = py::array_t<double, py::array::c_style | py::array::forcecast>;
    Doubles d = Doubles::ensure(a);
    const double* p = d.data();
    for (py::ssize_t i = 0; i < d.size(); ++i) {
      if (!std::isfinite(p[i]) || p[i] != std::floor(p[i]))
        fastrnn::fail<ShapeError>(what, ": ids must be integers, got non-integral floats");
      if (std::fabs(p[i]) >= 9.2e18) fastrnn::fail<ShapeError>(what, ": id ", p[i], " is outside the int64 range");
    }
  } else if (kind == 'u' && a.itemsize() == 8) {
    using U64 = py::array_t<std::uint64_t, py::array::c_style | py::array::forcecast>;
    U64 u = U64::ensure(a);
    for (py::ssize_t i = 0; i < u.size(); ++i)
      if (u.data()[i] > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        fastrnn::fail<ShapeError>(what, ": id ", u.data()[i], " is outside the int64 range");
  } else if (kind != 'i' && kind != 'u') {
    fastrnn::fail<ShapeError>(what, ": expects integer ids, got dtype ", std::string(py::str(a.dtype())));
  }
  return IdArray::ensure(a);
}

// The array takes over the output's buffer (no copy: SimpleRNN 32 -> 128, batch 256, T = 100, Zen 4: this
// and reading x in place took a call from 14.1-14.6 to 12.4-12.7 ms); a buffer much larger than its
// values (a reused block, up to twice the size) or the caller's own input (a model that wrote nothing)
// is copied instead.
py::array activations_to_numpy(fastrnn::Activations& a) {
  std::vector<py::ssize_t> shape = a.seq ? std::vector<py::ssize_t>{a.B, a.T, a.F} : std::vector<py::ssize_t>{a.B, a.F};
  const std::size_t n = static_cast<std::size_t>(a.size());
  if (!a.view && n && a.data.capacity() <= n + n / 4) {
    auto* owner = new fastrnn::Buffer(std::move(a.data));
    py::capsule keep(owner, [](void* p) { delete static_cast<fastrnn::Buffer*>(p); });
    return py::array_t<float>(shape, owner->data(), keep);
  }
  py::array_t<float> out(shape);
  if (n) std::memcpy(out.mutable_data(), a.values(), n * sizeof(float));
  return std::move(out);
}

// What predict / Stream.run return: the one output, the two of a final merge 'none' layer, or a
// tuple of the set_graph outputs (always a tuple then, whatever their number).
py::object outputs_object(const fastrnn::Model& model, std::vector<fastrnn::Activations>& outs) {
  if (outs.size() == 1 && !model.graph_outputs()) return activations_to_numpy(outs[0]);
  py::tuple t(outs.size());
  for (std::size_t i = 0; i < outs.size(); ++i) t[i] = activations_to_numpy(outs[i]);
  return std::move(t);
}

void register_model(py::module_& m) {
  m.def("quantized_paths", [] { return std::string(fastrnn::cpu::kernels().qpaths()); },
        "The bf16 / int8 kernels the current ISA runs on this CPU, in words");
  m.def("int8_activation_max", [] { return fastrnn::cpu::int8_xmax(); },
        "int8 activations are quantized per row to [-m, m]: 127 (8 bits), or 63 (7 bits, the range "
        "reduction) on x86 CPUs without VNNI; FASTRNN_INT8_ACT_BITS=7|8 overrides (cpu/kernels.h)");
  py::class_<fastrnn::Model, std::shared_ptr<fastrnn::Model>>(m, "Model")
      .def(py::init(&build), py::arg("header"), py::arg("tensors"),
           "Build from ModelSpec.to_core() = (header dict, {name: float32 array}); weights are copied.")
      .def_property_readonly("takes_ids", &fastrnn::Model::takes_ids)
      .def_property_readonly("num_outputs", &fastrnn::Model::num_outputs,
                             "Outputs predict() computes in the core (state outputs are assembled in Python)")
      .def_property_readonly("weight_bytes", &fastrnn::Model::weight_bytes,
                             "Bytes of weights the core holds (packed layouts included)")
      .def_property_readonly("precisions", [](const fastrnn::Model& self) {
             py::list out;
             for (const auto* c : self.recurrent_layers()) out.append(fastrnn::precision_name(c->precision));
             return out;
           }, "The weight precision of each recurrent layer ('f32', 'bf16', 'int8')")
      .def("stream", [](std::shared_ptr<fastrnn::Model> self, dim_t batch) {
             py::object cls = py::module_::import("fastrnn._core").attr("Stream");
             return cls(self, batch);
           }, py::arg("batch_size"))
      .def(
          "predict",
          [](const fastrnn::Model& self, py::array x, py::object lengths, py::list states, bool want_state) {
            // x: float32 C-contiguous (B,T,F)/(B,F) or int64 ids (B,T)/(B,).  states: one entry per recurrent
            // layer: None or (h, c|None) float32 arrays with the exact shapes (checked by runtime.py and here).
            const bool ids = self.takes_ids();
            FloatArray xf;
            IdArray xi;
            dim_t B, T = 0, F = 0;
            bool seq;
            if (ids) {
              xi = id_array(x, "predict");
              if (!xi || xi.ndim() < 1 || xi.ndim() > 2) throw ShapeError("ids must be a (batch, time) integer array");
              B = xi.shape(0);
              seq = xi.ndim() == 2;
              T = seq ? xi.shape(1) : 1;
            } else {
              xf = FloatArray::ensure(x);
              if (!xf || xf.ndim() < 2 || xf.ndim() > 3) throw ShapeError("x must be (batch, time, features)");
              B = xf.shape(0);
              seq = xf.ndim() == 3;
              T = seq ? xf.shape(1) : 1;
              F = xf.shape(xf.ndim() - 1);
            }
            IdArray len;
            const bool has_len = !lengths.is_none();
            if (has_len) {
              len = IdArray::ensure(lengths);
              if (!len || len.ndim() != 1 || len.shape(0) != B) throw ShapeError("lengths must have shape (batch,)");
            }
            auto rnns = self.recurrent_layers();
            std::vector<fastrnn::StateIO> io(rnns.size());
            std::vector<FloatArray> keep;
            py::list finals;
            for (std::size_t r = 0; r < rnns.size(); ++r) {
              const auto* c = rnns[r];
              const py::ssize_t dirs = c->num_directions();
              const bool lstm = c->cell == fastrnn::LayerKind::Lstm;
              auto check = [&](py::handle o, dim_t width, const char* what) -> const float* {
                if (o.is_none()) return nullptr;
                FloatArray a = FloatArray::ensure(o);
                if (!a || a.ndim() != 3 || a.shape(0) != dirs || a.shape(1) != B || a.shape(2) != width)
                  fastrnn::fail<ShapeError>("layer '", c->name, "': initial ", what, " must have shape (", dirs, ", ",
                                            B, ", ", width, ")");
                keep.push_back(a);
                return a.data();
              };
              if (r < states.size() && !states[r].is_none()) {
                py::tuple t = states[r].cast<py::tuple>();
                io[r].h0 = check(t[0], c->hidden_out(), "h");
                if (lstm && t.size() > 1) io[r].c0 = check(t[1], c->units, "c");
              }
              if (want_state) {
                py::array_t<float> h({dirs, static_cast<py::ssize_t>(B), static_cast<py::ssize_t>(c->hidden_out())});
                io[r].h_n = h.mutable_data();
                if (lstm) {
                  py::array_t<float> cc({dirs, static_cast<py::ssize_t>(B), static_cast<py::ssize_t>(c->units)});
                  io[r].c_n = cc.mutable_data();
                  finals.append(py::make_tuple(h, cc));
                } else {
                  finals.append(h);
                }
              }
            }
            std::vector<fastrnn::Activations> outs;
            // Ctrl-C: every 50 ms the calling thread takes the GIL and runs Python's signal handlers.
            fastrnn::CancelToken cancel(
                [](void*) {
                  py::gil_scoped_acquire gil;
                  return PyErr_CheckSignals() != 0;
                },
                nullptr);
            try {
              py::gil_scoped_release nogil;
              self.predict(ids ? nullptr : xf.data(), ids ? xi.data() : nullptr, B, T, F, seq,
                           has_len ? len.data() : nullptr, io, outs, &cancel);
            } catch (const fastrnn::Cancelled&) {
              throw py::error_already_set();  // the KeyboardInterrupt (or other) the signal handler raised
            }
            py::object y = outputs_object(self, outs);
            if (want_state) return py::object(py::make_tuple(y, finals));
            return y;
          },
          py::arg("x"), py::arg("lengths") = py::none(), py::arg("states") = py::list(), py::arg("return_state") = false);
}
