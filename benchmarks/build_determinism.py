"""Does the CPU code path change trained weights? A probe for the zoo's cross-machine rebuilds.

Run: ``python benchmarks/build_determinism.py [--steps 30]``.

Trains a small random BERT classifier (2 layers, hidden 128; fixed seed, fixed random batches)
for ``--steps`` AdamW steps in a fresh Python process per setting, and prints the SHA-256 of its
weights and its last loss. Settings: the machine's own code paths with 2 threads (the zoo's
builds on the project's machines), the same again (determinism on one machine), ATen's kernels
forced to their portable build (``ATEN_CPU_CAPABILITY=default``, what a machine of another
vector width would also change), MKL forced to its portable branch (``MKL_CBWR=COMPATIBLE``), and
one thread instead of 2, and the path every zoo build is pinned to (``analysis.zoo.codepath``:
ATen AVX2, MKL's AVX2 branch, oneDNN at most AVX2, 2 threads). A different hash means that
setting alone gives another model: why zoo builds pin their path, so that a model rebuilt on
another machine can have the run's fingerprint and a committed experiment run can be resumed
there. On a machine whose own path is AVX2 the pinned row should match the first; on an AVX-512
machine the first rows differ from an AVX2 machine's and the pinned row should not.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

from _tables import table

from analysis.zoo.codepath import PINNED

PROBE = r"""
import hashlib, os, sys
import torch
from transformers import BertConfig, BertForSequenceClassification
torch.set_num_threads(int(sys.argv[2]))
torch.manual_seed(0)
m = BertForSequenceClassification(BertConfig(vocab_size=500, hidden_size=128, num_hidden_layers=2,
                                             num_attention_heads=4, intermediate_size=256))
opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
g = torch.Generator().manual_seed(1)
for _ in range(int(sys.argv[1])):
    loss = m(input_ids=torch.randint(0, 500, (16, 48), generator=g), labels=torch.randint(0, 2, (16,), generator=g)).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
h = hashlib.sha256()
for _, v in sorted(m.state_dict().items()):
    h.update(v.detach().numpy().tobytes())
print(torch.backends.cpu.get_cpu_capability(), h.hexdigest()[:12], f"{loss.item():.6f}")
"""

SETTINGS = [("this machine, 2 threads", {}, 2), ("the same again", {}, 2),
            ("ATen portable kernels", {"ATEN_CPU_CAPABILITY": "default"}, 2),
            ("MKL portable branch", {"MKL_CBWR": "COMPATIBLE"}, 2), ("1 thread", {}, 1),
            ("the zoo's pinned path", PINNED, 2)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    rows, reference = [], None
    for label, env, threads in SETTINGS:
        out = subprocess.run([sys.executable, "-c", PROBE, str(args.steps), str(threads)], capture_output=True,
                             text=True, check=True, env={**os.environ, **env}).stdout.split()
        capability, digest, loss = out[-3:]
        reference = reference or digest
        rows.append([label, capability, digest, loss, "yes" if digest == reference else "no"])
    table(f"Weights after {args.steps} training steps, by code path", ["setting", "ATen kernels", "weights SHA-256",
          "last loss", "same weights as the first"], rows)


if __name__ == "__main__":
    main()
