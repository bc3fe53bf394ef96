"""The model registry: pydantic schema, YAML loading and merging of fragments."""


def refresh() -> None:
    """Discover the installed family plugins again and re-read the registry (after installing one at run time)."""
    from zoo import plugins
    from zoo.registry import loader, resolve

    plugins.clear_cache()
    loader.clear_cache()
    resolve.clear_cache()
