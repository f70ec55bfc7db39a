"""ABCD graph learning per head from 64 to 2,048 tokens: PC, FCI, ICD, growth exponents.

Run: ``python benchmarks/abcd_speed.py [--sizes 64 128 256 512 1024 2048] [--heads 3]
[--pc-fci-max 512] [--workers 2]``.

Input: real IMDB text cut to n tokens and the deepest layer of the default model (MiniLM,
C = A A^T, n_samples = hidden size 384, alpha = 0.01). MiniLM has 512 positions, so for
n > 512 the same model (same weights) gets its position table linearly interpolated to n
rows: real text through real learned attention, every head attending over all n tokens
(its correlations look like those of the real 512-token heads: median 0.87 at 2,048 vs
0.84 at 512, head 0). Concatenating 512-token blocks instead would make A A^T block
diagonal, and r = 0 would remove 3/4 of all pairs at once: a much easier problem.

Per size: CPU seconds per head (median over the first ``--heads`` heads; ``time.process_time``,
so other jobs on a shared machine inflate it less than wall time) for our PC, FCI (up to
``--pc-fci-max`` tokens: their order-1 level is dense, cubic in n) and ICD, edges of each,
and the ICD time of the pre-issue-14 implementation measured the same way (``OLD_ICD``,
recorded before the change on the same inputs) with the ratio; at 512 tokens the time for
ICD on all 12 heads through ``abcd.learn_graph`` (one process, and with ``--workers`` a
process pool over heads, wall time). Then the growth exponent of each algorithm: the
least-squares slope of log time on log n over the sizes >= 128. causal-learn's FCI on the
same heads: ``benchmarks/causal_speed.py``.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import copy
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from analysis import abcd, load_dataset, load_model  # noqa: E402
from analysis.causal import correlation_from_covariance, learn_graph  # noqa: E402

#: CPU seconds per head (median of heads 0-2; at 2,048 head 0 only) of the ICD implementation
#: before issue 14 (dense order-1 table), recorded with this script's inputs on this machine.
OLD_ICD = {64: 0.0308, 128: 0.1014, 512: 2.5815, 1024: 19.0517}
#: PC and FCI before issue 14, same conditions.
OLD_PC_FCI = {("pc", 512): 2.8817, ("fci", 512): 2.6243}


def long_model(model, n: int):
    """A copy of the default model's network with its position table interpolated to n rows."""
    import torch

    hf = copy.deepcopy(model.module)
    for mod in hf.modules():
        if hasattr(mod, "config"):
            mod.config._attn_implementation = "eager"
    emb = hf.base_model.embeddings
    old = emb.position_embeddings.weight.data
    x = torch.linspace(0, old.shape[0] - 1, n)
    lo = x.floor().long().clamp(max=old.shape[0] - 2)
    w = (x - lo).unsqueeze(1)
    emb.position_embeddings = torch.nn.Embedding.from_pretrained(old[lo] * (1 - w) + old[lo + 1] * w,
                                                                 freeze=True)
    emb.register_buffer("position_ids", torch.arange(n).unsqueeze(0), persistent=False)
    emb.register_buffer("token_type_ids", torch.zeros(1, n, dtype=torch.long), persistent=False)
    hf.config.max_position_embeddings = n
    return hf


def correlations(model, n: int, heads: list[int]) -> list[np.ndarray]:
    """corr(A A^T) (n, n) of the given heads of the last layer on n tokens of real text."""
    import torch

    if n <= model.config.max_position_embeddings:
        from trace_speed import text_of_length

        trace = model.trace(text_of_length(model, n))
        return [abcd.attention_correlation(trace, -1, h) for h in heads]
    tok = model.tokenizer
    long = " ".join(load_dataset("imdb", "test").texts[:40])
    ids = tok(long, add_special_tokens=False)["input_ids"][: n - 2]
    ids = torch.tensor([[tok.cls_token_id] + ids + [tok.sep_token_id]])
    with torch.no_grad():
        att = long_model(model, n)(input_ids=ids, attention_mask=torch.ones_like(ids),
                                   output_attentions=True).attentions[-1][0]
    a = att.double().numpy()
    return [correlation_from_covariance(a[h] @ a[h].T) for h in heads]


def cpu_timed(fn):
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def _icd_head(args):
    corr, n_samples = args
    return len(learn_graph(corr, n_samples, algorithm="icd"))


def all_heads(model, n_samples: float, workers: int) -> tuple[float, float, float | None]:
    """ICD on the 12 heads of the last layer at 512 tokens: CPU s and wall s in this process
    (through abcd.learn_graph), and the wall s with a pool of ``workers`` processes."""
    from trace_speed import text_of_length

    trace = model.trace(text_of_length(model, 512))
    wall, cpu = time.perf_counter(), time.process_time()
    for h in range(trace.n_heads):
        abcd.learn_graph(trace, layer=-1, head=h, algorithm="icd", n_samples=n_samples)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    pooled = None
    if workers > 1:
        mats = [(abcd.attention_correlation(trace, -1, h), n_samples) for h in range(trace.n_heads)]
        with cf.ProcessPoolExecutor(workers) as pool:
            list(pool.map(_icd_head, mats[:workers]))                 # start the workers
            start = time.perf_counter()
            list(pool.map(_icd_head, mats))
            pooled = time.perf_counter() - start
    return cpu, wall, pooled


def slope(xs: list[int], ys: list[float]) -> float:
    """Least-squares slope of log y on log x."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[64, 128, 256, 512, 1024, 2048])
    ap.add_argument("--heads", type=int, default=3, help="heads timed per size (median)")
    ap.add_argument("--heads-long", type=int, default=1, help="heads timed at sizes > 1,024")
    ap.add_argument("--pc-fci-max", type=int, default=512, help="largest size for PC and FCI")
    ap.add_argument("--workers", type=int, default=2, help="process pool for the 12-head column")
    ap.add_argument("--alpha", type=float, default=0.01)
    args = ap.parse_args()
    model = load_model()
    n_samples = float(model.config.hidden_size)
    print(f"model: {model}; n_samples={n_samples:g}, alpha={args.alpha}, layer=-1; CPU s per head")
    cols = ["tokens", "pc s", "fci s", "icd s", "pc/fci/icd edges", "icd before s", "x icd"]
    head = f"{cols[0]:>6} {cols[1]:>7} {cols[2]:>7} {cols[3]:>7} {cols[4]:>17} {cols[5]:>12} {cols[6]:>6}"
    print(head)
    print("-" * len(head))
    times: dict[str, dict[int, float]] = {"pc": {}, "fci": {}, "icd": {}}
    for n in args.sizes:
        heads = list(range(args.heads if n <= 1024 else args.heads_long))
        mats = correlations(model, n, heads)
        row, edges = {}, {}
        for algo in ("pc", "fci", "icd"):
            if algo != "icd" and n > args.pc_fci_max:
                continue
            runs = [cpu_timed(lambda c=c: learn_graph(c, n_samples, alpha=args.alpha, algorithm=algo))
                    for c in mats]
            row[algo] = statistics.median(t for t, _ in runs)
            edges[algo] = round(float(np.mean([len(g) for _, g in runs])))
            times[algo][n] = row[algo]
        fmt = lambda a: f"{row[a]:>7.3f}" if a in row else f"{'-':>7}"  # noqa: E731
        old = OLD_ICD.get(n)
        before = f"{old:.3f}" if old else "-"
        ratio = f"{old / row['icd']:.1f}x" if old else "-"
        counts = "/".join(str(edges.get(a, "-")) for a in ("pc", "fci", "icd"))
        line = f"{n:>6} {fmt('pc')} {fmt('fci')} {fmt('icd')} {counts:>17} {before:>12} {ratio:>6}"
        print(line, flush=True)
    if 512 in args.sizes:
        cpu, wall, pooled = all_heads(model, n_samples, args.workers)
        print(f"\nICD, all 12 heads at 512 tokens (abcd.learn_graph): {cpu:.1f} s CPU, {wall:.1f} s wall "
              f"in one process" + (f"; {pooled:.1f} s wall with {args.workers} worker processes"
                                   if pooled is not None else ""))
    print("\ngrowth exponent (slope of log time on log n, sizes >= 128):")
    for algo, t in times.items():
        xs = [n for n in sorted(t) if n >= 128]
        if len(xs) >= 2:
            print(f"  {algo}: n^{slope(xs, [t[n] for n in xs]):.2f} over {xs[0]}-{xs[-1]} tokens")
    xs = [n for n in sorted(OLD_ICD) if n >= 128]
    print(f"  icd before issue 14: n^{slope(xs, [OLD_ICD[n] for n in xs]):.2f} over {xs[0]}-{xs[-1]} tokens")
    for (algo, n), old in OLD_PC_FCI.items():
        if n in times[algo]:
            print(f"  {algo} at {n}: {old:.2f} s before, {times[algo][n]:.2f} s now ({old / times[algo][n]:.1f}x)")


if __name__ == "__main__":
    main()
