"""Efficient-attention claims (Naim & Asher 2024; Jain & Wallace 2019), measured on a transformer.

Run: ``python benchmarks/efficient_claims.py [--n 200] [--fast]``. Over test examples of Rotten
Tomatoes and IMDB (IMDB cut to ``--max-tokens``) it prints, for the default sentiment model (or
``--model``):

1. the nullity ``n - rank(V)`` of every head, per layer;
2. the output change when every head is swapped for its efficient attention (value basis), in
   one layer and in all layers at once (expected: float error);
3. the output change and the 1-D Wasserstein distance between prediction distributions over the
   dataset (p(positive)) for: original vs efficient, vs null-shifted (a random null-space
   component of norm ``||A||`` added to every head of ``--layer``), vs efficient-shifted (the same
   inside col(V));
4. on a smaller subset, Jain & Wallace adversaries for one head of ``--adv-layer`` (default: the
   middle layer; in the last layer of a [CLS]-pooled classifier only the [CLS] query row reaches
   the output, so adversaries there are free in every other row): their JSD from the original
   attention, and the distance between their efficient attention and the original's, next to
   the raw distance and a reference share for unconstrained random attention.

``--parts outputs`` or ``--parts adversarial`` runs one half only.

Tables only, no pass/fail: the numbers are what they are.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from tqdm.auto import tqdm

from analysis import load_dataset, load_model
from analysis.adversarial import search
from analysis.efficient import decompose_layer
from analysis.interventions import output_logits, random_component
from analysis.metrics import tvd, wasserstein_1d


def table(title: str, headers: list[str], rows: list[list], notes: str = "") -> None:
    """Print a plain-text table."""
    cells = [[f"{c:.3g}" if isinstance(c, (float, np.floating)) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(f"\n## {title}\n")
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths)))
    for r in cells:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    if notes:
        print(notes)


def capped(model, text: str, max_tokens: int) -> str:
    """``text`` cut to at most ``max_tokens`` tokens (special tokens included)."""
    ids = model.tokenizer(text, add_special_tokens=False, truncation=True, max_length=max_tokens - 2)["input_ids"]
    return text if len(ids) < max_tokens - 2 else model.tokenizer.decode(ids)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def examples(model, name: str, n: int, max_tokens: int, seed: int) -> list[str]:
    data = load_dataset(name, "test")
    sample = data.sample(min(n, len(data)), seed=seed)
    return [capped(model, t, max_tokens) for t in sample.texts]


# --------------------------------------------------------------------------- claims 1-3
def measure(model, text: str, layer: int, seed: int) -> dict:
    """Nullities [L, H], efficient-attention statistics and the logits under each edit."""
    trace = model.trace(text)
    parts = [decompose_layer(trace, lay) for lay in range(model.n_layers)]
    rng = np.random.default_rng(seed)
    shifted = {inside: {(layer, p.head): p.attention + random_component(p, rng, scale=1.0, inside=inside)
                        for p in parts[layer]} for inside in (False, True)}
    edits = {
        f"efficient, layer {layer}": {(layer, p.head): p.effective for p in parts[layer]},
        "efficient, all layers": {(p.layer, p.head): p.effective for layer_parts in parts for p in layer_parts},
        f"null-shifted, layer {layer}": shifted[False],
        f"efficient-shifted, layer {layer}": shifted[True],
    }
    return {"n": trace.n_tokens,
            "nullity": np.array([[p.nullity for p in lp] for lp in parts]),
            "row_sum_error": np.array([[p.row_sum_error for p in lp] for lp in parts]),
            "negative_mass": np.array([[p.negative_mass for p in lp] for lp in parts]),
            "original": output_logits(model, text),
            "edited": {name: output_logits(model, text, attention_override=ov) for name, ov in edits.items()}}


def report_nullity(name: str, runs: list[dict], n_layers: int) -> None:
    lengths = np.array([r["n"] for r in runs])
    rows = []
    for lay in range(n_layers):
        nul = np.concatenate([r["nullity"][lay] for r in runs])
        rse = np.concatenate([r["row_sum_error"][lay] for r in runs])
        neg = np.concatenate([r["negative_mass"][lay] for r in runs])
        some = nul > 0                      # A_eff = A exactly where the nullity is 0
        med = (lambda x: float(np.median(x[some]))) if some.any() else (lambda x: float("nan"))  # noqa: E731
        rows.append([lay, int(nul.min()), float(np.median(nul)), int(nul.max()), f"{np.mean(nul == 0):.0%}",
                     med(rse), med(neg)])
    table(f"{name}: nullity n - rank(V) per head ({len(runs)} examples, tokens median "
          f"{int(np.median(lengths))}, range {lengths.min()}-{lengths.max()})",
          ["layer", "min", "median", "max", "heads with nullity 0", "median row-sum error",
           "median negative mass"], rows,
          "Medians of the last two columns over heads with nullity > 0. row-sum error = max_q |sum_k A_eff[q,k] - 1|;"
          "\nnegative mass = total negative weight of A_eff / n (value basis, plain projection).")


def score(probs: np.ndarray) -> np.ndarray:
    """The prediction value compared over the dataset: p(positive) for two classes, else p(top)."""
    return probs[:, 1] if probs.shape[1] == 2 else probs.max(1)


def report_outputs(name: str, runs: list[dict]) -> None:
    original = np.stack([softmax(r["original"]) for r in runs])
    rows = []
    for edit in runs[0]["edited"]:
        logits = np.stack([r["edited"][edit] for r in runs])
        probs = np.stack([softmax(x) for x in logits])
        change = np.abs(logits - np.stack([r["original"] for r in runs])).max(1)
        t = tvd(probs, original)
        rows.append([edit, float(change.max()), float(np.median(change)), float(t.mean()), float(t.max()),
                     f"{np.mean(probs.argmax(1) != original.argmax(1)):.1%}",
                     float(wasserstein_1d(score(original), score(probs)))])
    table(f"{name}: output change and Wasserstein distance between prediction distributions "
          f"({len(runs)} examples)",
          ["edit (every head of the layer)", "max |d logit|", "median |d logit|", "mean TVD", "max TVD",
           "flipped", "W1(p+)"], rows,
          "W1(p+): 1-D Wasserstein distance between the p(positive) values over the examples, original vs "
          "edited.\nShifted: a random component of Frobenius norm ||A|| per head, in the null space or inside "
          "col(V) (seeded).")


# --------------------------------------------------------------------------- claim 4
def random_share(model, text: str, layer: int, head: int, k: int, seed: int) -> float:
    """Reference: mean ||(R - A) P|| / ||R - A|| for unconstrained random attentions R
    (softmax of 3 N(0, 1) logits over the visible keys, as the search starts)."""
    trace = model.trace(text)
    p = decompose_layer(trace, layer)[head].projection
    a = trace.attentions[layer, head].astype(np.float64)
    n = a.shape[0]
    logits = 3 * np.random.default_rng(seed).standard_normal((k, n, n))
    if model.is_causal:
        logits = np.where(np.tril(np.ones((n, n), dtype=bool)), logits, -np.inf)
    r = np.exp(logits - logits.max(-1, keepdims=True))
    r /= r.sum(-1, keepdims=True)
    d = r - a
    return float(np.mean(np.linalg.norm(d @ p, axis=(1, 2)) / np.linalg.norm(d, axis=(1, 2))))


def with_null_space(model, texts: list[str], args) -> list[str]:
    """The first ``args.adv_n`` texts (cut to ``args.adv_max_tokens``) whose adversarial head has
    nullity > 0: with nullity 0 every adversary's efficient attention is itself (share 1)."""
    chosen = []
    for text in texts:
        text = capped(model, text, args.adv_max_tokens)
        if decompose_layer(model.trace(text), args.adv_layer)[args.adv_head].nullity > 0:
            chosen.append(text)
        if len(chosen) == args.adv_n:
            break
    return chosen


def report_adversarial(name: str, results: list, shares: list[float], args) -> None:
    def row(label, tokens, group: list, share: float) -> list:
        feasible = [r for r in group if r.feasible.any()]

        def mean(attr: str) -> float:
            values = [getattr(r, attr)[r.feasible] for r in feasible]
            return float(np.concatenate(values).mean()) if values else float("nan")

        found = f"{sum(int(r.feasible.sum()) for r in group)}/{sum(r.k for r in group)}"
        return [label, tokens, found] + [mean(a) for a in ("jsd", "tvd", "raw_row_tvd", "efficient_row_tvd",
                                                           "raw_distance", "efficient_distance",
                                                           "efficient_share")] + [share]

    rows = [row(i, len(r.tokens), [r], s) for i, (r, s) in enumerate(zip(results, shares))]
    rows.append(row("all", "", results, float(np.mean(shares)) if shares else float("nan")))
    table(f"{name}: adversarial attention, layer {args.adv_layer}, head {args.adv_head} (k={args.k}, "
          f"eps={args.eps}, {args.adv_steps} steps, value basis; examples with nullity > 0, cut to "
          f"{args.adv_max_tokens} tokens)",
          ["example", "tokens", "feasible", "JSD(a_i, a)", "pred TVD", "row TVD raw", "row TVD eff",
           "||a_i - a||", "||(a_i - a)P||", "eff share", "random share"], rows,
          "Means over feasible adversaries (pred TVD <= eps). JSD in bits, mean over query rows. Row TVD = "
          "mean over rows of 0.5 |.|_1.\neff share = ||(a_i - a)P|| / ||a_i - a||: 0 would mean the adversary "
          "changed only the null part;\nrandom share = the same for unconstrained random attention (no "
          "prediction constraint), as a reference.")


def adversarial(model, name: str, texts: list[str], args) -> None:
    adv_texts = with_null_space(model, texts, args)
    results = [search(model, t, layer=args.adv_layer, head=args.adv_head, k=args.k, eps=args.eps,
                      steps=args.adv_steps, seed=args.seed + i, progress=False)
               for i, t in enumerate(tqdm(adv_texts, desc=f"{name} adversaries"))]
    shares = [random_share(model, t, args.adv_layer, args.adv_head, args.k, args.seed + i)
              for i, t in enumerate(adv_texts)]
    report_adversarial(name, results, shares, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model name or folder (default: the embedded sentiment model)")
    parser.add_argument("--datasets", nargs="+", default=["rotten_tomatoes", "imdb"])
    parser.add_argument("--n", type=int, default=200, help="test examples per dataset")
    parser.add_argument("--max-tokens", type=int, default=256, help="cut longer inputs (IMDB) to this many tokens")
    parser.add_argument("--parts", nargs="+", choices=["outputs", "adversarial"], default=["outputs", "adversarial"])
    parser.add_argument("--layer", type=int, default=-1, help="layer of the shifts (every head)")
    parser.add_argument("--adv-layer", type=int, default=None, help="layer of the adversaries (default: middle)")
    parser.add_argument("--adv-n", type=int, default=4, help="examples per dataset for the adversarial search")
    parser.add_argument("--adv-head", type=int, default=0)
    parser.add_argument("--adv-steps", type=int, default=500)
    parser.add_argument("--adv-max-tokens", type=int, default=64)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--eps", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="a quick run: 30 examples, 2 short searches")
    args = parser.parse_args()
    if args.fast:
        args.n, args.max_tokens, args.adv_n, args.adv_steps = 30, 128, 2, 60
    model = load_model(args.model)
    args.layer %= model.n_layers
    args.adv_layer = model.n_layers // 2 if args.adv_layer is None else args.adv_layer % model.n_layers
    print(f"model: {model}; datasets: {', '.join(args.datasets)}; seed {args.seed}")
    start = time.perf_counter()
    for name in args.datasets:
        texts = examples(model, name, args.n, min(args.max_tokens, model.max_length), args.seed)
        if "outputs" in args.parts:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                runs = [measure(model, t, args.layer, args.seed + i) for i, t in enumerate(tqdm(texts, desc=name))]
            report_nullity(name, runs, model.n_layers)
            report_outputs(name, runs)
        if "adversarial" in args.parts:
            adversarial(model, name, texts, args)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
