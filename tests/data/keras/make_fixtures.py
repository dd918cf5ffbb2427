"""Hand-crafted Keras 2.2-era HDF5 model files (seeded; run from the repo root):

    KERAS_BACKEND=tensorflow python tests/data/keras/make_fixtures.py

Multi-backend Keras 2.2 cannot be installed next to TensorFlow 2.21, so the files are written with
h5py following the Keras 2.2.4 layout (``keras/engine/saving.py``): root attributes ``keras_version``
(b"2.2.4"), ``backend``, ``model_config`` (JSON bytes; a bare layer list for the Keras 2.1 style
Sequential); group ``model_weights`` with ``layer_names`` and per-layer ``weight_names`` such as
``lstm_1/kernel:0`` / ``bidirectional_1/forward_lstm_1/kernel:0``; large attributes chunked as
``weight_names0``, ``weight_names1``...  Keras 2.2 defaults: LSTM/GRU recurrent_activation
"hard_sigmoid" (clip(0.2x + 0.5, 0, 1)) and GRU reset_after=False.

The expected outputs come from tf_keras (Keras 2 semantics, the same hard_sigmoid) running the same
architecture with the same weights; they are stored in ``expected.npz`` so the test needs no
framework.  Needs numpy, h5py, tf_keras.
"""
import json
import os

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def lstm_cfg(name, units, rs, batch_input_shape=None, **kw):
    c = {"name": name, "trainable": True, "return_sequences": rs, "return_state": False, "go_backwards": False,
         "stateful": False, "unroll": False, "units": units, "activation": "tanh",
         "recurrent_activation": "hard_sigmoid", "use_bias": True,
         "kernel_initializer": {"class_name": "VarianceScaling", "config": {"scale": 1.0, "mode": "fan_avg",
                                                                            "distribution": "uniform", "seed": None}},
         "unit_forget_bias": True, "kernel_regularizer": None, "dropout": 0.0, "recurrent_dropout": 0.0,
         "implementation": 1}
    if batch_input_shape is not None:
        c["batch_input_shape"] = batch_input_shape
        c["dtype"] = "float32"
    c.update(kw)
    return c


def gru_cfg(name, units, rs, **kw):
    c = lstm_cfg(name, units, rs, **kw)
    c.pop("unit_forget_bias")
    c.setdefault("reset_after", False)
    return c


def write_h5(path, model_config, layers, chunk=None):
    """layers: [(layer name, [(weight name, array)])].  chunk: split weight_names of that layer in two."""
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.2.4"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(model_config).encode("utf-8")
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = np.array([n.encode() for n, _ in layers])
        g.attrs["backend"] = b"tensorflow"
        g.attrs["keras_version"] = b"2.2.4"
        for lname, ws in layers:
            lg = g.create_group(lname)
            names = np.array([wn.encode() for wn, _ in ws])
            if lname == chunk:
                half = (len(names) + 1) // 2
                lg.attrs["weight_names0"] = names[:half]
                lg.attrs["weight_names1"] = names[half:]
            else:
                lg.attrs["weight_names"] = names
            for wn, a in ws:
                lg.create_dataset(wn, data=a.astype(np.float32))


def rand(rng, *shape, scale=0.6):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def main():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tf_keras as tk

    L = tk.layers
    rng = np.random.default_rng(2024)
    expected = {}

    # 1. Keras 2.1-style Sequential (bare layer list): LSTM(hard_sigmoid) -> Dense(softmax)
    T, F, H = 7, 3, 5
    k, r, b = rand(rng, F, 4 * H), rand(rng, H, 4 * H), rand(rng, 4 * H)
    dk, db = rand(rng, H, 4), rand(rng, 4)
    cfg = {"class_name": "Sequential", "config": [
        {"class_name": "LSTM", "config": lstm_cfg("lstm_1", H, False, [None, T, F])},
        {"class_name": "Dense", "config": {"name": "dense_1", "trainable": True, "units": 4, "activation": "softmax",
                                           "use_bias": True}}]}
    write_h5(os.path.join(HERE, "keras22_lstm.h5"), cfg,
             [("lstm_1", [("lstm_1/kernel:0", k), ("lstm_1/recurrent_kernel:0", r), ("lstm_1/bias:0", b)]),
              ("dense_1", [("dense_1/kernel:0", dk), ("dense_1/bias:0", db)])])
    m = tk.Sequential([L.LSTM(H, recurrent_activation="hard_sigmoid", input_shape=(T, F)), L.Dense(4, activation="softmax")])
    m.set_weights([k, r, b, dk, db])
    x = rand(rng, 4, T, F, scale=1.5)
    expected["keras22_lstm.x"], expected["keras22_lstm.y"] = x, m.predict(x, verbose=0)

    # 2. Keras 2.2 functional: Embedding(mask_zero) -> GRU(reset_after=False, hard_sigmoid, go_backwards)
    #    -> GRU(hard_sigmoid) -> Dense
    V, E, H1, H2, T2 = 9, 4, 6, 3, 8
    emb = rand(rng, V, E)
    g1 = [rand(rng, E, 3 * H1), rand(rng, H1, 3 * H1), rand(rng, 3 * H1)]
    g2 = [rand(rng, H1, 3 * H2), rand(rng, H2, 3 * H2), rand(rng, 3 * H2)]
    dk, db = rand(rng, H2, 2), rand(rng, 2)
    layers_cfg = [
        {"name": "input_1", "class_name": "InputLayer", "config": {"batch_input_shape": [None, T2], "dtype": "int32",
                                                                   "sparse": False, "name": "input_1"},
         "inbound_nodes": []},
        {"name": "embedding_1", "class_name": "Embedding",
         "config": {"name": "embedding_1", "trainable": True, "input_dim": V, "output_dim": E, "mask_zero": True,
                    "input_length": None}, "inbound_nodes": [[["input_1", 0, 0, {}]]]},
        {"name": "gru_1", "class_name": "GRU", "config": gru_cfg("gru_1", H1, True, go_backwards=True),
         "inbound_nodes": [[["embedding_1", 0, 0, {}]]]},
        {"name": "gru_2", "class_name": "GRU", "config": gru_cfg("gru_2", H2, False),
         "inbound_nodes": [[["gru_1", 0, 0, {}]]]},
        {"name": "dense_1", "class_name": "Dense",
         "config": {"name": "dense_1", "trainable": True, "units": 2, "activation": "linear", "use_bias": True},
         "inbound_nodes": [[["gru_2", 0, 0, {}]]]},
    ]
    cfg = {"class_name": "Model", "config": {"name": "model_1", "layers": layers_cfg,
                                             "input_layers": [["input_1", 0, 0]], "output_layers": [["dense_1", 0, 0]]}}
    write_h5(os.path.join(HERE, "keras22_gru.h5"), cfg,
             [("input_1", []), ("embedding_1", [("embedding_1/embeddings:0", emb)]),
              ("gru_1", [("gru_1/kernel:0", g1[0]), ("gru_1/recurrent_kernel:0", g1[1]), ("gru_1/bias:0", g1[2])]),
              ("gru_2", [("gru_2/kernel:0", g2[0]), ("gru_2/recurrent_kernel:0", g2[1]), ("gru_2/bias:0", g2[2])]),
              ("dense_1", [("dense_1/kernel:0", dk), ("dense_1/bias:0", db)])])
    i = tk.Input((T2,), dtype="int32")
    y = L.Embedding(V, E, mask_zero=True)(i)
    y = L.GRU(H1, return_sequences=True, go_backwards=True, reset_after=False, recurrent_activation="hard_sigmoid")(y)
    y = L.GRU(H2, reset_after=False, recurrent_activation="hard_sigmoid")(y)
    m = tk.Model(i, L.Dense(2)(y))
    m.set_weights([emb] + g1 + g2 + [dk, db])
    ids = rng.integers(1, V, size=(5, T2)).astype(np.int32)
    ids[1, 5:] = 0
    ids[2, :3] = 0
    ids[3, 2] = 0
    ids[4, :] = 0
    expected["keras22_gru.x"], expected["keras22_gru.y"] = ids, m.predict(ids, verbose=0)

    # 3. Keras 2.2 Sequential: Bidirectional(LSTM(hard_sigmoid)) concat (weight_names chunked) -> Dense
    T3, F3, H3 = 6, 4, 3
    fw = [rand(rng, F3, 4 * H3), rand(rng, H3, 4 * H3), rand(rng, 4 * H3)]
    bw = [rand(rng, F3, 4 * H3), rand(rng, H3, 4 * H3), rand(rng, 4 * H3)]
    dk, db = rand(rng, 2 * H3, 1), rand(rng, 1)
    cfg = {"class_name": "Sequential", "config": {"name": "sequential_1", "layers": [
        {"class_name": "Bidirectional", "config": {"name": "bidirectional_1", "trainable": True,
                                                   "batch_input_shape": [None, T3, F3], "dtype": "float32",
                                                   "layer": {"class_name": "LSTM",
                                                             "config": lstm_cfg("lstm_1", H3, False)},
                                                   "merge_mode": "concat"}},
        {"class_name": "Dense", "config": {"name": "dense_1", "trainable": True, "units": 1, "activation": "sigmoid",
                                           "use_bias": True}}]}}
    wn = lambda d, n: f"bidirectional_1/{d}_lstm_1/{n}:0"  # noqa: E731
    write_h5(os.path.join(HERE, "keras22_bidi.h5"), cfg,
             [("bidirectional_1", [(wn(d, n), a) for d, ws in (("forward", fw), ("backward", bw))
                                   for n, a in zip(("kernel", "recurrent_kernel", "bias"), ws)]),
              ("dense_1", [("dense_1/kernel:0", dk), ("dense_1/bias:0", db)])], chunk="bidirectional_1")
    m = tk.Sequential([L.Bidirectional(L.LSTM(H3, recurrent_activation="hard_sigmoid"), input_shape=(T3, F3)),
                       L.Dense(1, activation="sigmoid")])
    m.set_weights(fw + bw + [dk, db])
    x = rand(rng, 3, T3, F3, scale=1.5)
    expected["keras22_bidi.x"], expected["keras22_bidi.y"] = x, m.predict(x, verbose=0)

    np.savez(os.path.join(HERE, "expected.npz"), **{k: np.asarray(v) for k, v in expected.items()})


if __name__ == "__main__":
    main()
