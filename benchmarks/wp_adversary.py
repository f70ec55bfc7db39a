"""Wiegreffe & Pinter's model-consistent adversary, trained against the real single-attention classifier.

Run: ``python benchmarks/wp_adversary.py [--model attention-classifier-rt] [--train 2000] [--lams 0.1 1 10]``.

For each lambda an adversary (a copy of the classifier whose attention scorer alone is trained with
``TVD(y_adv, y) - lambda KL(a_adv || a)``) is trained on a seeded sample of the training split and
measured on it and on the held-out test split: mean attention JSD from the base (bits), mean
prediction TVD, and the share of unchanged predictions. Prints a table only.
"""
from __future__ import annotations

import argparse
import time
import warnings

from analysis import load_dataset, load_model
from analysis.adversarial_model import _measure, train_adversary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="attention-classifier-rt")
    ap.add_argument("--train", type=int, default=2000, help="training texts (seeded sample of the train split)")
    ap.add_argument("--test", type=int, default=1066, help="held-out test texts")
    ap.add_argument("--lams", type=float, nargs="+", default=[0.1, 1.0, 10.0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--trainable", default="attention", choices=["attention", "all"])
    args = ap.parse_args()
    model = load_model(args.model)
    dataset = "imdb" if "imdb" in args.model else "rotten_tomatoes"
    train = load_dataset(dataset, "train").sample(args.train, seed=0)
    test = load_dataset(dataset, "test").sample(args.test, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test_encoded = [model.encode(t) for t in test.texts]
    print(f"model: {model}; {len(train)} training / {len(test)} test texts of {dataset}; "
          f"{args.epochs} epochs; trainable={args.trainable}")
    head = (f"{'lambda':>7} {'train JSD':>9} {'train TVD':>9} {'train same':>10} "
            f"{'test JSD':>8} {'test TVD':>8} {'test same':>9} {'seconds':>7}")
    print(head)
    print("-" * len(head))
    for lam in args.lams:
        start = time.perf_counter()
        adv = train_adversary(model, train, lam=lam, epochs=args.epochs, trainable=args.trainable, progress=False)
        seconds = time.perf_counter() - start
        t, _, j, same = _measure(model, adv.model, test_encoded, 64)
        print(f"{lam:>7g} {adv.jsd.mean():>9.3f} {adv.tvd.mean():>9.4f} {adv.same_prediction.mean():>10.1%} "
              f"{j.mean():>8.3f} {t.mean():>8.4f} {same.mean():>9.1%} {seconds:>7.0f}", flush=True)


if __name__ == "__main__":
    main()
