"""predict() of each named case (fastrnn/bench.py CASES) for every installed engine."""
import numpy as np
import pytest

import fastrnn
from fastrnn.bench import CASES, engines, make_input


@pytest.mark.parametrize("engine", ["fastrnn", "torch"])
@pytest.mark.parametrize("case", list(CASES))
def bench_predict(benchmark, case, engine, threads):
    c = CASES[case]
    eng, ref = engines(c, threads)
    if engine not in eng:
        pytest.skip(f"{engine} is not installed")
    x = make_input(c)
    if ref is not None:
        np.testing.assert_allclose(eng[engine](x), ref(x), rtol=1e-4, atol=1e-5)
    benchmark.extra_info.update(engine=engine, threads=threads, shape=c.describe(), **fastrnn.info())
    benchmark.pedantic(eng[engine], args=(x,), warmup_rounds=2, rounds=20)
