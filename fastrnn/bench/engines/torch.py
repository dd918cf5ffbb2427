"""PyTorch eager under ``torch.inference_mode()``: ``module(x)``; steps: the torch cells
(``nn.LSTMCell`` / ``GRUCell`` / ``RNNCell``, one per layer, weights copied), state carried."""
from ..models import carried, torch_cells

ORDER = 10
REQUIRES = ("torch",)


def sequence(ctx):
    import torch

    torch.set_num_threads(ctx.threads)
    module = ctx.module

    def run(x):
        with torch.inference_mode():
            return module(torch.from_numpy(x))[0].numpy()

    return run


def step(ctx):
    import torch

    torch.set_num_threads(ctx.threads)
    cells = torch_cells(ctx.module)
    lstm = ctx.case.cell == "lstm"

    def one(x, state):
        h, new = torch.from_numpy(x), []
        with torch.inference_mode():
            for cell, s in zip(cells, state):
                s = cell(h, s)
                new.append(s)
                h = s[0] if lstm else s
        return h.numpy(), new

    return carried(one, lambda: [None] * len(cells))
