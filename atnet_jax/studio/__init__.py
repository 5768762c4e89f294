"""The annotation studio: ``python -m atnet_jax.studio`` serves a web page over an interactive session, in three
parts: :mod:`~atnet_jax.studio.app` (HTTP: routes, request parsing, errors to statuses),
:mod:`~atnet_jax.studio.controller` (rounds, locks, events over the session API) and
:mod:`~atnet_jax.studio.history` (the steps on disk); ``static/`` holds the page."""
