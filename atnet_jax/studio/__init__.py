"""The annotation studio: ``python -m atnet_jax.studio`` serves a web page over an interactive session
(:mod:`~atnet_jax.studio.app` the API, :mod:`~atnet_jax.studio.workspace` the state on disk,
:mod:`~atnet_jax.io.export` the exports, ``static/`` the page)."""
