"""The program's router config (configs/router.py) laid out for Debian's nginx on this host:
the rendered nginx.conf with only its listen address, file paths and backend addresses
mapped, each replaced text checked to still be there. Used by the rehearsal and the engine
test alike."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

NGINX_CERTS = "/etc/nginx/certs/"
CONFIG_PATH = "/etc/nginx/nginx.conf"


def _replace(text: str, old: str, new: str) -> str:
    if old not in text:
        raise AssertionError(f"the rendered router config no longer holds {old!r}")
    return text.replace(old, new)


def lay_out_router(container: Any, home: Path, listen: str, backends: Mapping[str, str]) -> Path:
    """Write the router container's uploads under `home` and its nginx.conf mapped to listen on
    `listen` (host:port) and reach each mirror alias at `backends[alias]` (host:port)."""
    uploads = {u["file"]: u["content"] for u in container.inputs["uploads"]}
    (home / "certs").mkdir(parents=True)
    (home / "cache").mkdir()
    for path, content in uploads.items():
        if path.startswith(NGINX_CERTS):
            (home / "certs" / path.removeprefix(NGINX_CERTS)).write_text(content)
    text = uploads[CONFIG_PATH]
    text = _replace(text, "listen 5000 ssl;", f"listen {listen} ssl;")
    text = _replace(text, NGINX_CERTS, f"{home}/certs/")
    text = _replace(text, "pid /var/run/nginx.pid;", f"pid {home}/nginx.pid;")
    text = _replace(text, "/var/cache/nginx/", f"{home}/cache/")
    text = _replace(text, "access_log /dev/stdout;", f"access_log {home}/access.log;")
    for alias, address in backends.items():
        text = _replace(text, f"set $mirror {alias}:5000;", f"set $mirror {address};")
    config = home / "nginx.conf"
    config.write_text(text)
    return config
