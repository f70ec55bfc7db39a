"""The README's faithfulness tables, in Markdown, from runner results folders.

Run: ``python benchmarks/faithfulness_report.py DIR [DIR ...] [--head 0]``.

Reads the finished units of one or more ``faithfulness`` results folders on the same inputs
(e.g. one run with head 0 and the pooled layer and every method, one with the other heads),
summarises them with the task's own ``summarize`` (censored inputs kept, bootstrap 95%
intervals, sign tests) and prints: what was run (inputs, tokens, exhaustive subset, failed units,
compute), the explainer table (flip share, Kaplan-Meier median size, AOPC comprehensiveness,
reaching the exhaustive minimum), CLEANN's paired comparisons for ``--head`` and the pooled layer
(sizes, and against equal-budget random search whether each flipped within the same calls),
and with more than two CLEANN heads the per-head table on the inputs every head finished. An
interval bound that the data never reach (a Kaplan-Meier median above every found size) prints
as "not reached"; a Kaplan-Meier median that rests on fewer than ``FEW_AT_RISK`` inputs still at
risk says how many ("4 [3, not reached]; 1 at risk"): with most inputs censored early (a search
that ran out of calls) such a median is no evidence of a small set. Nothing is dropped or
averaged over a subset without saying so.
"""
from __future__ import annotations

import argparse
import math

import pandas as pd

from analysis.evaluation import explainer_label, per_head_table
from analysis.experiments import faithfulness
from analysis.experiments.runner import load_results, read_manifest

NAMES = {"cleann": "CLEANN", "attention": "raw attention top-k", "efficient_attention": "efficient attention top-k",
         "random": "random search, CLEANN's calls per size", "rollout": "rollout", "grad_x_input": "gradient x input",
         "integrated_gradients": "integrated gradients", "leave_one_out": "leave-one-out",
         "exhaustive": "exhaustive search"}


def _num(x: float, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if math.isinf(x):
        return "not reached"
    return f"{x:.0f}" if float(x).is_integer() and digits == 0 else f"{x:.{digits}f}"


def _ci(row: pd.Series, col: str, digits: int = 2) -> str:
    return f"{_num(row[col], digits)} [{_num(row[col + '_low'], digits)}, {_num(row[col + '_high'], digits)}]"


#: a Kaplan-Meier median resting on fewer inputs than this says how many
FEW_AT_RISK = 10


def _median(row: pd.Series) -> str:
    cell = _ci(row, "median_size", 0)
    at_risk = row.get("median_at_risk", math.nan)
    return cell + (f"; {int(at_risk)} at risk" if not math.isnan(at_risk) and at_risk < FEW_AT_RISK else "")


def _split(label: str) -> tuple[str, str]:
    """``"random[0]"`` -> ``("random", "0")``; ``"rollout"`` -> ``("rollout", "")``."""
    method, _, rest = label.partition("[")
    return method, rest.rstrip("]")


def _ran_out_where_random_found(df: pd.DataFrame, head: str) -> int:
    """Inputs where CLEANN ran out of calls part-way through size k (censored at k - 1) and random
    search, given CLEANN's calls at each size, found a set of size k: "undecided" under the
    censoring rule, which counts random search's size k as searched once its quota is spent but
    CLEANN's only once it checked every set it proposes (README: the asymmetry favours CLEANN)."""
    c = df[(df.method == "cleann") & (df["head"] == head)].set_index("id")
    r = df[(df.method == "random") & (df["head"] == head)].set_index("id").reindex(c.index)
    hit = ~c.found.astype(bool) & r.found.fillna(False).astype(bool) & (c.censored_at == r["size"] - 1)
    return int(hit.sum())


def _label(method: str, head: object) -> str:
    name = NAMES.get(method, method)
    if head in ("", None) or (isinstance(head, float) and math.isnan(head)):
        return name
    return f"{name}, {'pooled layer' if head == 'all' else f'head {head}'}"


def _p(p: float) -> str:
    return "-" if p is None or math.isnan(p) else f"{p:.2g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--head", default="0", help="the single head of the main tables (besides the pooled layer)")
    args = ap.parse_args()
    frames = [load_results(f, include_failed=True) for f in args.folders]
    failed = sum(int(f["error"].notna().sum()) if "error" in f else 0 for f in frames)
    df = pd.concat([f[f["error"].isna()] if "error" in f else f for f in frames], ignore_index=True)
    df = df.drop(columns=[c for c in ("unit_id", "error") if c in df])
    tables = faithfulness.summarize(df)
    model = read_manifest(args.folders[0]).get("model") or {}
    per_input = df.drop_duplicates("id")
    ex = df[df.method == "exhaustive"]
    seconds = sum(f.drop_duplicates("id")["input_seconds"].sum() for f in frames if "input_seconds" in f)
    print(f"inputs: {df['id'].nunique()} ({', '.join(sorted(df['dataset'].unique()))}); tokens "
          f"{int(per_input.n_tokens.min())}-{int(per_input.n_tokens.max())}, median {per_input.n_tokens.median():g}; "
          f"exhaustive search on {ex['id'].nunique()} inputs; failed units: {failed}; "
          f"{seconds / 3600:.2f} core-hours of evaluation (sum of per-input seconds); "
          f"budget: {df['budget'].iloc[0]}; model fingerprint {str(model.get('fingerprint', '?'))[:12]}\n")
    head = str(args.head)                                    # heads are stored as text: "0", "all"
    sizes = tables["sizes"]
    faith = tables.get("faithfulness", pd.DataFrame(columns=["explainer"])).set_index("explainer")
    exact = tables.get("exhaustive", pd.DataFrame(columns=["explainer"])).set_index("explainer")
    keep = sizes[sizes["head"].isin([head, "all", ""])]
    n_exact = int(exact["n"].max()) if len(exact) else 0
    print("| explainer | inputs | flips within budget | median size of the smallest flipping set (Kaplan-Meier) "
          f"| AOPC comprehensiveness | reached the exhaustive minimum size ({n_exact} inputs) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for _, r in keep.iterrows():
        e = r["explainer"]
        aopc = _ci(faith.loc[e], "aopc_comp") if e in faith.index else "-"
        reached = _ci(exact.loc[e], "exact_size") if e in exact.index else "-"
        print(f"| {_label(r['method'], r['head'])} | {int(r['n'])} | {_ci(r, 'found')} | "
              f"{_median(r)} | {aopc} | {reached} |")
    paired = tables.get("paired")
    if paired is not None:
        for h in dict.fromkeys((head, "all")):               # --head all: once
            ref = paired[paired.reference == explainer_label("cleann", h)]
            if ref.empty:
                continue
            print(f"\n| CLEANN {'pooled' if h == 'all' else f'head {h}'} vs | inputs | smaller | equal | larger "
                  "| undecided | sign test p | Holm-adjusted p |")
            print("| --- | --- | --- | --- | --- | --- | --- | --- |")
            for _, r in ref.iterrows():
                print(f"| {_label(*_split(r['other']))} | {int(r['n'])} | {int(r['smaller'])} | {int(r['equal'])} | "
                      f"{int(r['larger'])} | {int(r['undecided'])} | {_p(r['sign_test_p'])} | {_p(r['p_holm'])} |")
            print("\nUndecided because neither found a flipping set within its budget: " + ", ".join(
                f"{_label(*_split(r['other']))} {int(r['flip_neither'])}" for _, r in ref.iterrows()))
            rand = ref[ref.other.str.startswith("random[")]
            if len(rand):                                    # the one method given CLEANN's own calls
                r = rand.iloc[0]
                print(f"\nFlipped within the same calls, CLEANN {'pooled' if h == 'all' else f'head {h}'} vs "
                      f"equal-budget random search, on {int(r['n'])} inputs: both {int(r['flip_both'])}, CLEANN only "
                      f"{int(r['flip_ref_only'])}, random only {int(r['flip_other_only'])}, neither "
                      f"{int(r['flip_neither'])} (exact McNemar p = {_p(r['flip_p'])}); undecided although random "
                      f"search found a set at the size CLEANN ran out of calls in, with the same calls there: "
                      f"{_ran_out_where_random_found(df, h)}")
    heads = df.loc[df.method == "cleann", "head"].unique()
    if len(heads) > 2:
        ph = per_head_table(df, same_inputs=True)
        print(f"\nPer head, on the {int(ph['n'].iloc[0])} inputs every CLEANN head finished:\n")
        print("| CLEANN head | flips within budget | median size (KM) | vs raw attention s/e/l/u (p; Holm) "
              "| vs equal-budget random s/e/l/u (p; Holm) | vs integrated gradients s/e/l/u (p; Holm) "
              "| reached exhaustive minimum |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for _, r in ph.iterrows():
            cells = []
            for m in ("attention", "random", "integrated_gradients"):
                cells.append("/".join(str(int(r[f"{m}_{k}"])) if not math.isnan(r[f"{m}_{k}"]) else "-"
                                      for k in ("smaller", "equal", "larger", "undecided"))
                             + f" ({_p(r[f'{m}_sign_test_p'])}; {_p(r[f'{m}_p_holm'])})")
            reached = _ci(r, "exact_size") + f" of {int(r['exact_n'])}" if "exact_n" in r and not math.isnan(
                r["exact_n"]) else "-"
            print(f"| {'pooled' if r['head'] == 'all' else r['head']} | {_ci(r, 'found')} | "
                  f"{_median(r)} | {' | '.join(cells)} | {reached} |")


if __name__ == "__main__":
    main()
