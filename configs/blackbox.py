"""The blackbox exporter's `config.yml` (`prom/blackbox-exporter`).

Pure: plain values in, YAML text out. One module, `registry_tls`, probes the registry's API
over HTTPS trusting only the stack's root CA, so a probe succeeds only when the served chain
verifies up to that root and `/v2/` answers 200.

Upstream sources: docs/upstream-references.md
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml

from configs.spec import Deployment, MonitoringInputs, ServiceSpec, Upload
from contract import Blackbox

if TYPE_CHECKING:
    from settings import MonitoringSettings

# the image's default: blackbox_exporter Dockerfile CMD --config.file=<this path>
CONFIG_PATH = Blackbox.CONFIG_PATH
CA_PATH = Blackbox.CA_PATH
PORT = Blackbox.PORT
MODULE = Blackbox.MODULE


def render_blackbox_config(
    ca_file: str = CA_PATH,
    *,
    module: str = MODULE,
    timeout: str = "5s",
    users: bool = False,
    client_cert: bool = False,
) -> str:
    """Render a blackbox config whose one module checks the registry's TLS endpoint.

    With `users` the registry answers /v2/ with 401 to a client without credentials: the
    probe expects exactly that (the chain verified and auth is enforced) and holds no
    password. With `client_cert` it presents the stack's client certificate."""
    tls_config: dict[str, object] = {
        # trust only the root CA: never insecure_skip_verify
        "ca_file": ca_file,
        "insecure_skip_verify": False,
    }
    if client_cert:
        tls_config |= {"cert_file": Blackbox.CLIENT_CERT_PATH, "key_file": Blackbox.CLIENT_KEY_PATH}
    config = {
        "modules": {
            Blackbox.UPSTREAM_MODULE: {
                "prober": "http",
                # under the front's 10 s upstream timeout: a silent upstream fails the probe
                "timeout": "8s",
                "http": {
                    "method": "GET",
                    "valid_status_codes": [200, 401],
                    "preferred_ip_protocol": "ip4",
                },
            },
            module: {
                "prober": "http",
                "timeout": timeout,
                "http": {
                    "method": "GET",
                    # distribution answers GET /v2/ with 200 `{}` when no auth is configured
                    "valid_status_codes": [401] if users else [200],
                    "fail_if_not_ssl": True,
                    # Docker networks are IPv4 by default; the exporter's default is ip6
                    "preferred_ip_protocol": "ip4",
                    "tls_config": tls_config,
                },
            }
        }
    }
    return yaml.safe_dump(config, sort_keys=True, default_flow_style=False)


def enabled(settings: MonitoringSettings) -> bool:
    return True


SCRAPE_JOB: tuple[str, str] | None = None  # probes through Prometheus's blackbox job


def deployment(settings: MonitoringSettings, inputs: MonitoringInputs) -> Deployment:
    return Deployment("Blackbox", ServiceSpec(
        service=Blackbox.ALIAS,
        image=settings.blackbox_image,
        memory_mb=64,
        uploads=[
            Upload(CONFIG_PATH, render_blackbox_config(
                CA_PATH, users=inputs.registry_users, client_cert=inputs.client_cert is not None)),
            Upload(CA_PATH, inputs.root_ca_pem),
            *([] if inputs.client_cert is None else [
                Upload(Blackbox.CLIENT_CERT_PATH, inputs.client_cert[0]),
                # the exporter runs as nobody and uploads are root-owned: readable by all,
                # inside a container that runs nothing else
                Upload(Blackbox.CLIENT_KEY_PATH, inputs.client_cert[1], permissions="0644", secret=True),
            ]),
        ],
        healthcheck=["CMD", "wget", "-q", "-O", "/dev/null",
                     f"http://127.0.0.1:{PORT}{Blackbox.READY_PATH}"],
    ))
