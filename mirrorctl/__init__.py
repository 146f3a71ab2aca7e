"""mirrorctl: the operator commands of registry-mirror (the old `make` habits, as a CLI).

Reads the stack's outputs (`pulumi stack output --json`, or explicit flags) and talks to the
running stack: the registry over TLS trusting only the stack's root CA, the monitoring
services over their health endpoints, Prometheus's HTTP API for metrics, and the Docker CLI
for `gc` and `logs`. Run it as `python -m mirrorctl --help` (or through the Makefile).
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
