"""lazarus: neuron-level introspection of transformer language models.

    import lazarus
    model = lazarus.load("lazarus:demo")
    result = model.neurons(["2+3=", "45*45="], layers=0)

See `lazarus.api` for the whole surface. Names are imported on first use, so `import lazarus`
(and `lazarus --help`) stays light.
"""

__version__ = "0.1.0"

_PUBLIC = {
    "load": "lazarus.api",
    "Model": "lazarus.api",
    "LazarusWarning": "lazarus.engine.handle",
    "LazarusError": "lazarus.errors",
    "Activations": "lazarus.results.activations",
    "NeuronsResult": "lazarus.results.neurons",
    "ProbeResult": "lazarus.results.probe",
    "AblationResult": "lazarus.results.ablation",
    "SteerResult": "lazarus.results.steer",
    "ExamplesResult": "lazarus.results.examples",
    "AttributionResult": "lazarus.results.attribute",
    "PatchResult": "lazarus.results.patch",
    "CardResult": "lazarus.results.card",
    "Direction": "lazarus.io.directions",
    "load_direction": "lazarus.io.directions",
    "save_direction": "lazarus.io.directions",
    "cache_info": "lazarus.engine.cache",
    "clear_cache": "lazarus.engine.cache",
    "cache_dir": "lazarus.engine.cache",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):  # noqa: ANN202 - PEP 562: the public names, imported lazily
    if name not in _PUBLIC:
        raise AttributeError(f"module 'lazarus' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(_PUBLIC[name])
    value = getattr(module, {"cache_info": "describe", "clear_cache": "clear"}.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
