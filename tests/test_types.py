"""The string options are Literal aliases defined once in ``analysis.types``: the runtime tuples
of valid values are derived from them, and public signatures use them rather than bare ``str``."""
from __future__ import annotations

import inspect
from typing import get_args

import pytest

import analysis.abcd
import analysis.causal
import analysis.efficient
import analysis.evaluation.evaluate
import analysis.evaluation.explainers
import analysis.evaluation.metrics
import analysis.interventions
import analysis.models.base
import analysis.models.loading
import analysis.models.model
import analysis.models.text
import analysis.stability
import widgets.controls
from analysis import types
from analysis.causal import graph

#: option parameter name -> the alias its annotation must name (checked where the default is one of its values)
ALIASES = {"algorithm": types.Algorithm, "removal": types.Removal, "basis": types.Basis,
           "attention": types.AttentionKind, "nodes": types.NodeSet, "task": types.Task}
MODULES = [analysis.abcd, analysis.causal, analysis.efficient, analysis.evaluation.evaluate,
           analysis.evaluation.explainers, analysis.evaluation.metrics, analysis.interventions,
           analysis.models.base, analysis.models.loading, analysis.models.model, analysis.models.text,
           analysis.stability, widgets.controls]


@pytest.mark.parametrize(("values", "alias"), [
    (analysis.causal.ALGORITHMS, types.Algorithm), (analysis.models.base.REMOVALS, types.Removal),
    (analysis.efficient.BASES, types.Basis), (analysis.abcd.ATTENTIONS, types.AttentionKind),
    (analysis.abcd.NODE_SETS, types.NodeSet), (analysis.models.model.TASKS, types.Task),
    (graph.GRAPH_KINDS, types.GraphKind)])
def test_runtime_tuples_are_the_literal_values_in_order(values, alias):
    assert values == get_args(alias) and isinstance(values, tuple)


def test_model_bases_are_bases():
    assert set(widgets.controls.MODEL_BASES) <= set(get_args(types.Basis))


def _callables(module):
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            yield f"{module.__name__}.{name}", obj
        elif inspect.isclass(obj):
            for meth_name, meth in vars(obj).items():
                if inspect.isfunction(meth) and (not meth_name.startswith("_") or meth_name == "__init__"):
                    yield f"{module.__name__}.{name}.{meth_name}", meth


def test_public_option_parameters_are_typed_with_the_aliases():
    checked, wrong = 0, []
    for module in MODULES:
        for qualname, fn in _callables(module):
            for p in inspect.signature(fn).parameters.values():
                alias = ALIASES.get(p.name)
                if alias is None or p.default not in get_args(alias):
                    continue                 # another meaning (an array, a "custom" label) or no default
                checked += 1
                name = next(k for k, v in vars(types).items() if v is alias)
                if name not in str(p.annotation):
                    wrong.append(f"{qualname}({p.name}: {p.annotation})")
    assert checked >= 25, checked        # the scan reaches the public API
    assert not wrong, "typed as bare str instead of the analysis.types alias: " + "; ".join(wrong)


def test_types_module_is_typing_only():
    """analysis.causal imports analysis.types, and analysis.causal stays numpy-only."""
    source = inspect.getsource(types)
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports == ["from __future__ import annotations", "from typing import Literal"]
