"""Errors meant for people: each says what is wrong and what to do."""


class LeptonError(Exception):
    """Base class. The CLI prints str(err) on one line; the UI shows it in st.error."""


class DataError(LeptonError):
    """Bad input data: a file, column, label or archive problem."""


class ConfigError(LeptonError):
    """A RunConfig field, YAML file or CLI flag that is not valid."""


class RegistryError(LeptonError):
    """An unknown backbone, adapter or modality name."""


class IncompatibleError(LeptonError):
    """An adapter that cannot wrap a given backbone."""


class RunError(LeptonError):
    """A run that does not exist or is not in a state that allows the action."""


class ModelError(LeptonError):
    """A model folder or hub snapshot that cannot be loaded safely: bad config, missing or unsafe weights, custom code."""


class ExportError(LeptonError):
    """An export that cannot be made, or whose artefact does not predict what the run did."""
