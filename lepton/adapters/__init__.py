"""Adapters decide what trains. One file per method, each registered in ADAPTERS."""

from lepton.adapters.base import ADAPTERS, Adapter, AdapterOptions, Classifier
from lepton.adapters import full, linear_probe, lora, partial  # noqa: F401  (registration)


def list_adapters() -> list[str]:
    return list(ADAPTERS)


def get_adapter(name: str, options: AdapterOptions | None = None) -> Adapter:
    return ADAPTERS.get(name)(options)


__all__ = ["ADAPTERS", "Adapter", "AdapterOptions", "Classifier", "list_adapters", "get_adapter"]
