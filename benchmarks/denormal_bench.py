"""Denormal benchmark (not a unit test): a model whose state decays into the subnormal range
against the same model kept in the normal range, fastrnn and PyTorch, same weights, 1 thread.

    PYTHONPATH=. python benchmarks/denormal_bench.py [--threads N] [--T 2000] [--B 1]

fastrnn flushes denormals while it computes (FTZ/DAZ, src/fastrnn/cpu/fpenv.h), so both models
take the same time; a framework that does not pays a microcode assist per operation on the
decaying one (ONNX Runtime issue #7448).  The input is an impulse at t=0, then zeros."""
import argparse
import time

import numpy as np

import fastrnn
from fastrnn import spec as S


def lstm_spec(H, I, decay):
    """decay=True: an LSTM whose cell state is set to ~1.8e-35 by the first input (input gate
    sigmoid(-80), candidate ~1), then shut (sigmoid(-100)) while the forget gate (0.9933) lets c
    decay: subnormal (< 1.18e-38) from step ~1100 to ~3500, and h = 0.5*tanh(c) with it, fed back
    through W_hh.  decay=False: the input gate stays open and the state in the normal range."""
    rng = np.random.default_rng(0)
    G = 4
    w_ih = np.zeros((G * H, I))
    w_ih[:H] = 20.0 / I                  # the impulse opens the input gate at t=0 only
    b = np.zeros(G * H)
    b[:H] = -100.0 if decay else 3.0     # input gate: shut / open
    b[H:2 * H] = 5.0                     # forget gate 0.9933
    b[2 * H:3 * H] = 3.0                 # candidate ~0.995
    w_hh = rng.standard_normal((G * H, H)) * 0.01
    w = S.DirectionWeights(w_ih, w_hh, b, np.zeros(G * H), None)
    return S.ModelSpec(layers=[S.RecurrentSpec(kind="lstm", name="lstm", input_size=I, units=H, weights=[w])],
                       input_features=I, source="denormal_bench")


def rnn_spec(H, I, decay):
    """decay=True: a ReLU SimpleRNN (torch nn.RNN(nonlinearity='relu')) whose state is set to ~1e-35
    by the first input and then multiplied by 0.9933 every step through a dense W_hh (every
    product of the H x H matmul takes a subnormal input from step ~1100 to ~3500).
    decay=False: the same with a state started at ~1 (normal range throughout)."""
    start = 1e-35 if decay else 1.0
    w_ih = np.full((H, I), start / I)
    w_hh = np.full((H, H), 0.9933 / H)
    w = S.DirectionWeights(w_ih, w_hh, np.zeros(H), np.zeros(H), None)
    return S.ModelSpec(layers=[S.RecurrentSpec(kind="simple_rnn", name="rnn", input_size=I, units=H, weights=[w],
                                               activation="relu")], input_features=I, source="denormal_bench")


def interleaved_min_ms(fns, reps):
    """Each function in turn, `reps` rounds; the minimum of each (a load change hits all alike)."""
    for f in fns:
        f()
    best = [float("inf")] * len(fns)
    for _ in range(reps):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            f()
            best[i] = min(best[i], time.perf_counter() - t0)
    return [b * 1e3 for b in best]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--T", type=int, default=3000)
    ap.add_argument("--B", type=int, default=1)
    ap.add_argument("--H", type=int, default=256)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--cell", choices=["lstm", "rnn"], default="rnn")
    args = ap.parse_args()
    I = 16
    x = np.zeros((args.B, args.T, I), np.float32)
    x[:, 0] = 1.0
    fastrnn.set_num_threads(args.threads)
    tiny = np.finfo(np.float32).tiny
    engines = {}  # (engine, decay) -> callable
    outputs = {}
    for decay in (False, True):
        spec = (lstm_spec if args.cell == "lstm" else rnn_spec)(args.H, I, decay)
        m = fastrnn.Model(spec)
        engines["fastrnn", decay] = lambda m=m: m.predict(x)
        outputs["fastrnn", decay] = m.predict(x)
        try:
            import torch
        except ImportError:
            continue
        torch.set_num_threads(args.threads)
        if args.cell == "lstm":
            t = torch.nn.LSTM(I, args.H, batch_first=True)
        else:
            t = torch.nn.RNN(I, args.H, batch_first=True, nonlinearity="relu")
        w = spec.layers[0].weights[0]
        with torch.no_grad():
            for name, v in (("weight_ih_l0", w.w_ih), ("weight_hh_l0", w.w_hh), ("bias_ih_l0", w.b_ih),
                            ("bias_hh_l0", w.b_hh)):
                getattr(t, name).copy_(torch.from_numpy(np.asarray(v, np.float32)))
        xt = torch.from_numpy(x)

        def run_torch(t=t):
            with torch.inference_mode():
                return t(xt)[0]

        engines["torch", decay] = run_torch
        outputs["torch", decay] = run_torch().numpy()
    keys = list(engines)
    times = dict(zip(keys, interleaved_min_ms([engines[k] for k in keys], args.reps)))
    print(f"{args.cell.upper()} {I}->{args.H}, B={args.B}, T={args.T}, {args.threads} thread(s), ISA {fastrnn.info()['isa']}; "
          f"best of {args.reps} ms (interleaved)")
    for (eng, decay), ms in times.items():
        y = outputs[eng, decay]
        sub = int(((np.abs(y) < tiny) & (y != 0)).sum())
        print(f"  {eng:8s} {'decaying into subnormals' if decay else 'normal range':26s} {ms:9.2f} ms"
              f"   subnormal outputs: {sub}")
    for eng in ("fastrnn", "torch"):
        if (eng, True) in times:
            print(f"  {eng}: decaying / normal = {times[eng, True] / times[eng, False]:.2f}x")
    if ("torch", True) in outputs:
        print(f"  max |fastrnn - torch| (decaying): {np.abs(outputs['fastrnn', True] - outputs['torch', True]).max():.3g}")


if __name__ == "__main__":
    main()
