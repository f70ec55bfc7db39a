"""Trace latency on the embedded default model for 16/64/256/512-token inputs.

Run: ``python benchmarks/trace_speed.py [--repeats 5]``. Prints a table: median and best
time per ``Model.trace`` (one forward pass capturing attentions, values, hidden states), the
same forward through plain Hugging Face eager attention with ``output_attentions=True``
on a copy of the model
(the reference, measured in the same process), and their ratio.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from analysis import load_dataset, load_model


def text_of_length(model, n_tokens: int) -> str:
    """A real review cut to exactly ``n_tokens`` tokens (special tokens included)."""
    long = " ".join(load_dataset("imdb", "test").texts[:20])
    ids = model.tokenizer(long, add_special_tokens=False)["input_ids"][: n_tokens - 2]
    return model.tokenizer.decode(ids)


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model = load_model()
    reference = copy.deepcopy(model.module)
    reference.set_attn_implementation("eager")  # Hugging Face's own eager attention
    print(f"model: {model}, torch threads: {torch.get_num_threads()}")
    print(f"{'tokens':>6} {'trace median ms':>16} {'trace best ms':>14} {'HF eager ms':>12} {'ratio':>6}")
    for n in (16, 64, 256, 512):
        text = text_of_length(model, n)
        enc = model.encode(text)
        batch = model.batch([enc])
        t_trace = timed(lambda: model.trace(text), args.repeats)

        def hf():
            with torch.no_grad():
                reference(**batch, output_attentions=True, output_hidden_states=True)

        t_hf = timed(hf, args.repeats)
        m, r = statistics.median(t_trace), statistics.median(t_hf)
        print(f"{len(enc.input_ids):>6} {1e3 * m:>16.1f} {1e3 * min(t_trace):>14.1f} {1e3 * r:>12.1f} {m / r:>6.2f}")


if __name__ == "__main__":
    main()
