"""Prometheus's `prometheus.yml` and the stack's alert rules (`prom/prometheus` v3).

Pure: plain values in, YAML text out. Every key rendered here is also accepted by Debian's
Prometheus 2.42, which the rehearsal runs: nothing v3-only is needed.

`fallback_scrape_protocol` (v3 fails a scrape whose Content-Type is blank or invalid:
prometheus/prometheus docs/configuration/configuration.md, `<scrape_config>`) is not rendered.
The registry's debug server serves `metrics.Handler()` of docker/go-metrics (distribution
registry/registry.go `configurePrometheus`), which is `promhttp.Handler()` (docker/go-metrics
handler.go): it always sets the negotiated Content-Type. The rehearsal checks the header that
Debian's docker-registry 2.8.2, the blackbox exporter and Prometheus send
(`text/plain; version=0.0.4`). Jaeger, Loki, Alloy and Grafana are Go services that export
through client_golang's promhttp as well (not rehearsed: no binaries here).
"""

from __future__ import annotations

from typing import Any

import yaml

from configs.blackbox import MODULE as BLACKBOX_MODULE
from configs.blackbox import PORT as BLACKBOX_PORT

CONFIG_PATH = "/etc/prometheus/prometheus.yml"  # the image's default --config.file
RULES_PATH = "/etc/prometheus/rules/registry-mirror.rules.yml"
PORT = 9090

# Network aliases and internal ports on the stack's private network.
REGISTRY_METRICS_TARGET = "registry:5001"  # debug server: plain HTTP only
REGISTRY_PROBE_URL = "https://registry:5000/v2/"  # the TLS API, probed through blackbox
BLACKBOX_ADDRESS = f"blackbox:{BLACKBOX_PORT}"
JAEGER_METRICS_TARGET = "jaeger:8888"  # Jaeger v2's own metrics (v1 used 14269)
LOKI_TARGET = "loki:3100"
ALLOY_TARGET = "alloy:12345"
GRAFANA_TARGET = "grafana:3000"
PROMETHEUS_TARGET = f"localhost:{PORT}"

RULE_GROUP = "registry-mirror"
SECONDS_PER_DAY = 86400

_HEADER = """\
# Rendered by configs/prometheus.py: do not edit by hand.
#
# The registry is scraped over plain HTTP on the stack's private network: its metrics live
# on distribution's debug server (http.debug, port 5001), which cannot serve TLS
# (registry/registry.go configureDebugServer uses http.ListenAndServe), so mutual TLS
# scraping is impossible. The debug port is never published on the host.
# The registry's TLS endpoint (port 5000) is checked by the blackbox exporter instead,
# trusting only the stack's root CA.
"""


def _static_job(job: str, target: str) -> dict[str, Any]:
    return {
        "job_name": job,
        "metrics_path": "/metrics",
        "scheme": "http",
        "static_configs": [{"targets": [target]}],
    }


def render_prometheus_config(
    *,
    tracing: bool = True,
    logging: bool = True,
    rules_path: str = RULES_PATH,
    scrape_interval: str = "15s",
    evaluation_interval: str = "15s",
    blackbox_module: str = BLACKBOX_MODULE,
) -> str:
    """Render prometheus.yml; jobs of services that are turned off are left out."""
    jobs: list[dict[str, Any]] = [_static_job("registry", REGISTRY_METRICS_TARGET)]
    if tracing:
        jobs.append(_static_job("jaeger", JAEGER_METRICS_TARGET))
    if logging:
        jobs.append(_static_job("loki", LOKI_TARGET))
        jobs.append(_static_job("alloy", ALLOY_TARGET))
    jobs.append(_static_job("grafana", GRAFANA_TARGET))
    jobs.append(_static_job("prometheus", PROMETHEUS_TARGET))
    jobs.append(
        {
            # The multi-target exporter pattern: Prometheus asks blackbox to probe the
            # target URL; the probed URL becomes `instance`.
            "job_name": "blackbox",
            "metrics_path": "/probe",
            "scheme": "http",
            "params": {"module": [blackbox_module]},
            "static_configs": [{"targets": [REGISTRY_PROBE_URL]}],
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": BLACKBOX_ADDRESS},
            ],
        }
    )
    config = {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "rule_files": [rules_path],
        "scrape_configs": jobs,
    }
    body = yaml.safe_dump(config, sort_keys=True, default_flow_style=False, width=4096)
    return _HEADER + body


def _alert(name: str, expr: str, duration: str, severity: str, summary: str, description: str) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": duration,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description},
    }


def render_alert_rules(cert_expiry_days: int = 14) -> str:
    """Render the alert rules file that prometheus.yml's `rule_files` points at."""
    if cert_expiry_days <= 0:
        raise ValueError(f"cert_expiry_days must be positive, got {cert_expiry_days}")
    rules = [
        _alert(
            "RegistryDown",
            'up{job="registry"} == 0',
            "2m",
            "critical",
            "Registry metrics endpoint is down",
            "Prometheus cannot scrape the registry's debug server at {{ $labels.instance }} "
            "for 2 minutes: the mirror is down or unreachable.",
        ),
        _alert(
            "RegistryHigh5xxRatio",
            'sum(rate(registry_http_requests_total{code=~"5.."}[5m]))'
            " / sum(rate(registry_http_requests_total[5m])) > 0.05",
            "10m",
            "warning",
            "Registry answers more than 5% of requests with 5xx",
            "{{ $value | humanizePercentage }} of the registry's requests failed with a 5xx "
            "status over the last 5 minutes (often the upstream, Docker Hub, failing).",
        ),
        _alert(
            "RegistryCertificateExpiresSoon",
            f'probe_ssl_earliest_cert_expiry{{job="blackbox"}} - time() < {cert_expiry_days} * {SECONDS_PER_DAY}',
            "15m",
            "warning",
            f"Registry TLS certificate expires within {cert_expiry_days} days",
            "The earliest certificate of the chain served at {{ $labels.instance }} expires in "
            "{{ $value | humanizeDuration }}. Run `pulumi up` to renew it.",
        ),
        _alert(
            "TargetDown",
            "up == 0",
            "5m",
            "warning",
            "Scrape target {{ $labels.job }} is down",
            "Prometheus has failed to scrape {{ $labels.instance }} (job {{ $labels.job }}) for 5 minutes.",
        ),
        _alert(
            "BlackboxProbeFailing",
            'probe_success{job="blackbox"} == 0',
            "5m",
            "critical",
            "Registry TLS endpoint probe is failing",
            "The blackbox probe of {{ $labels.instance }} has failed for 5 minutes: the TLS "
            "handshake, the certificate chain or the GET /v2/ answer is wrong.",
        ),
    ]
    document = {"groups": [{"name": RULE_GROUP, "rules": rules}]}
    return yaml.safe_dump(document, sort_keys=True, default_flow_style=False, width=4096)
