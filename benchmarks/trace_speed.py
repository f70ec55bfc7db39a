"""Trace latency and memory: full traces on the embedded default model, and selective capture
(one head) vs every head vs the plain forward pass on a tiny-width BERT up to 2,048 tokens.

Run: ``python benchmarks/trace_speed.py [--part default|selective|all] [--repeats 5]``.

``default`` (the embedded model, 16/64/256/512 tokens): median and best time per
``Model.trace`` (every head: attentions, values, hidden states), the same forward through
plain Hugging Face eager attention with ``output_attentions=True`` on a copy of the model
(the reference, measured in the same process), and their ratio.

``selective`` (a random BERT, ``--layers`` x ``--heads``, hidden ``--hidden``, a 2,056-row
position table; 128 / 512 / 2,048 tokens): median (and best) time of the plain forward pass (Hugging
Face eager attention, no outputs asked), ``Model.trace(text, heads=[(L-1, 0)])`` (one head),
and ``Model.trace(text)`` (every head), timed in interleaved rounds, with the ratios of
medians and of best times to the plain forward (on a shared machine the best time is the
steadier one). Peak memory is
the rise of the process's peak resident set (Linux ``VmHWM``, reset through
``/proc/self/clear_refs``) during one call, each call in a fresh process after a short
warm-up. It counts torch's tensors; tracemalloc would not (it sees Python and numpy
allocations only, and a trace's numpy arrays share torch's memory). ``attnlab forward`` is
``Model.forward`` on the prepared batch with nothing captured; ``predict`` is
``Model.predict(text)`` (tokenisation + forward + softmax: the same work as a trace minus the
capture).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time

import torch

POSITIONS = 2056
MODES = ("forward", "attnlab forward", "predict", "one head", "all heads")


def text_of_length(model, n_tokens: int) -> str:
    """A real review cut to exactly ``n_tokens`` tokens (special tokens included)."""
    from analysis import load_dataset

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


def default_table(repeats: int) -> None:
    from analysis import load_model

    model = load_model()
    reference = copy.deepcopy(model.module)
    reference.set_attn_implementation("eager")  # Hugging Face's own eager attention
    print(f"model: {model}, torch threads: {torch.get_num_threads()}")
    print(f"{'tokens':>6} {'trace median ms':>16} {'trace best ms':>14} {'HF eager ms':>12} {'ratio':>6}")
    for n in (16, 64, 256, 512):
        text = text_of_length(model, n)
        enc = model.encode(text)
        batch = model.batch([enc])
        t_trace = timed(lambda: model.trace(text), repeats)

        def hf():
            with torch.no_grad():
                reference(**batch, output_attentions=True, output_hidden_states=True)

        t_hf = timed(hf, repeats)
        m, r = statistics.median(t_trace), statistics.median(t_hf)
        print(f"{len(enc.input_ids):>6} {1e3 * m:>16.1f} {1e3 * min(t_trace):>14.1f} {1e3 * r:>12.1f} {m / r:>6.2f}")


# ---------------------------------------------------------------------------- selective capture
def wide_bert(layers: int, heads: int, hidden: int):
    """(attnlab Model, an eager copy of the same HF module) for a random BERT, 2,056 positions."""
    import transformers

    from analysis.models import Model
    from analysis.zoo.sentiment import base_model_dir

    torch.manual_seed(0)
    cfg = transformers.BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                  intermediate_size=4 * hidden, max_position_embeddings=POSITIONS, num_labels=2)
    hf = transformers.BertForSequenceClassification(cfg).eval()
    hf.set_attn_implementation("eager")
    reference = copy.deepcopy(hf)
    tok = transformers.AutoTokenizer.from_pretrained(base_model_dir(), local_files_only=True)
    tok.model_max_length = POSITIONS
    return Model(hf, tok, task="sequence-classification", name="wide-bert"), reference


def text_with(model, n: int) -> str:
    """A text of exactly ``n`` tokens with this tokenizer ([CLS] and [SEP] included)."""
    words = "the film is a quiet , funny and moving story about two friends who never give up".split()
    return " ".join(words[i % len(words)] for i in range(n - 2))


def runner(model, reference, mode: str, text: str):
    batch = model.batch([model.encode(text)])
    last = model.n_layers - 1

    def forward():
        with torch.no_grad():
            reference(**batch)

    def attnlab():
        with torch.no_grad():
            model.forward(batch)

    return {"forward": forward, "attnlab forward": attnlab, "predict": lambda: model.predict(text), "one head": lambda: model.trace(text, heads=[(last, 0)]),
            "all heads": lambda: model.trace(text)}[mode]


def peak_child(spec: str) -> None:
    """In a fresh process: peak RSS rise (MiB) of one call; prints JSON."""
    import gc

    layers, heads, hidden, n, mode = json.loads(spec)
    model, reference = wide_bert(layers, heads, hidden)
    runner(model, reference, mode, text_with(model, 16))()        # warm-up on a short input
    fn = runner(model, reference, mode, text_with(model, n))
    gc.collect()

    def status(key: str) -> float:
        line = next(x for x in open("/proc/self/status") if x.startswith(key))
        return int(line.split()[1]) / 1024

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                                               # reset VmHWM to the current RSS
    before = status("VmRSS")
    result = fn()
    print(json.dumps({"rss": status("VmHWM") - before}))
    del result


def selective_table(repeats: int, layers: int, heads: int, hidden: int, lengths: list[int]) -> None:
    model, reference = wide_bert(layers, heads, hidden)
    print(f"model: random BERT, {layers} layers x {heads} heads, hidden {hidden}, {POSITIONS} positions; "
          f"torch threads: {torch.get_num_threads()}; time: median of {repeats}; memory: peak RSS rise "
          "(VmHWM) of one call in a fresh process")
    print(f"{'tokens':>6} {'mode':>16} {'median ms':>10} {'best ms':>8} {'x fwd (median)':>15} "
          f"{'x fwd (best)':>13} {'peak MiB':>9}")
    for n in lengths:
        text = text_with(model, n)
        assert len(model.encode(text).input_ids) == n
        times = interleaved({mode: runner(model, reference, mode, text) for mode in MODES}, repeats)
        base, best = statistics.median(times["forward"]), min(times["forward"])
        for mode in MODES:
            spec = json.dumps([layers, heads, hidden, n, mode])
            out = subprocess.run([sys.executable, __file__, "--peak-child", spec], capture_output=True, text=True,
                                 check=False)
            rss = json.loads(out.stdout.strip().splitlines()[-1])["rss"] if out.returncode == 0 else float("nan")
            t = statistics.median(times[mode])
            print(f"{n:>6} {mode:>16} {1e3 * t:>10.1f} {1e3 * min(times[mode]):>8.1f} {t / base:>15.2f} "
                  f"{min(times[mode]) / best:>13.2f} {rss:>9.1f}", flush=True)


def interleaved(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function, timed in rounds (one call of each per round, after a
    warm-up round) so that load from other processes falls on every mode alike."""
    for fn in fns.values():
        fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            out[k].append(time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("default", "selective", "all"), default="all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--peak-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_child:
        peak_child(args.peak_child)
        return
    if args.part in ("selective", "all"):
        selective_table(args.repeats, args.layers, args.heads, args.hidden, args.lengths)
    if args.part in ("default", "all"):
        default_table(args.repeats)


if __name__ == "__main__":
    main()
