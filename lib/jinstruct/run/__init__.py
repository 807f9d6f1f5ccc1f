"""Running the pipeline: the config schema and its loading, the stage context every notebook opens, the runner,
the manifest, sweeps and the no-call estimate."""

from jinstruct.lazy import exports

__getattr__, __dir__ = exports(__name__, {
    "ConfigError": "config",
    "RunConfig": "schema",
    "Stage": "stage",
    "load_config": "schema",
})
__all__ = sorted(__dir__())
