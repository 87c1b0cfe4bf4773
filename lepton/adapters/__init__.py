"""Adapters decide what trains. One file per method, each registered in ADAPTERS."""

from lepton.adapters.base import ADAPTERS, Adapter, Classifier
from lepton.adapters import (adalora, bitfit, branches, dora, full, houlsby, ia3, linear_probe, loha, lokr, lora, lp_ft,  # noqa: F401
                             oft, partial, prefix, prompt)  # (registration)


def list_adapters() -> list[str]:
    return list(ADAPTERS)


def get_adapter(name: str, options: dict | None = None) -> Adapter:
    return ADAPTERS.get(name)(options)


__all__ = ["ADAPTERS", "Adapter", "Classifier", "list_adapters", "get_adapter"]


def trainable_counts(spec, num_classes: int, only: dict[str, dict] | None = None) -> dict[str, dict]:
    """{adapter: trainable, total, fraction} on one build of the backbone (each adapter wraps a fresh copy);
    only: {adapter: options} to count just these, with these options."""
    import copy

    base = spec.build()
    out = {}
    for name, options in (only or {a: {} for a in spec.supports}).items():
        model = get_adapter(name, options).wrap(copy.deepcopy(base), base.make_head("classification", max(num_classes, 2)))
        c = Adapter.count(model)
        out[name] = {"trainable": int(c["trainable"]), "total": int(c["total"]), "fraction": float(c["fraction"])}
    return out
