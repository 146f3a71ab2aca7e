"""Prometheus's `prometheus.yml` and the stack's alert rules (`prom/prometheus` v3).

Pure: plain values in, YAML text out; every key is also accepted by Debian's Prometheus 2.42,
which the rehearsal runs. No `fallback_scrape_protocol` is rendered: every scraped target sends
a Content-Type that v3 parses (the rehearsal checks it).

Upstream sources: docs/upstream-references.md
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import yaml

from configs.alloy import FRONT_REFUSALS_METRIC, FRONT_REFUSALS_PREFIX
from configs.spec import Deployment, MonitoringInputs, Port, ServiceSpec, Upload
from contract import Blackbox, Prometheus

if TYPE_CHECKING:
    from settings import MonitoringSettings

CONFIG_PATH = Prometheus.CONFIG_PATH
RULES_PATH = Prometheus.RULES_PATH
PORT = Prometheus.PORT
BLACKBOX_ADDRESS = f"{Blackbox.ALIAS}:{Blackbox.PORT}"
SCRAPE_JOB: tuple[str, str] | None = (Prometheus.ALIAS, f"localhost:{PORT}")  # itself

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


UPSTREAM_ALERT = "MirrorUpstreamUnreachable"
REDIRECT_ALERT = "FrontRedirectRefused"
# counted by Alloy from the fronts' access logs (configs/alloy.py); absent with logging off
REDIRECTS_REFUSED = f"{FRONT_REFUSALS_PREFIX}{FRONT_REFUSALS_METRIC}"
REFUSAL_WINDOW = "15m"
CACHE_OVER_LIMIT_ALERT = "MirrorCacheOverLimit"
PINNED_MISSING_ALERT = "MirrorPinnedImageNotCached"


def _static_config(targets: list[str], upstream: str | None) -> dict[str, Any]:
    # `upstream` names the registry a mirror serves (docker.io, ghcr.io; `private` for the push
    # registry): the dashboard's selector and the alerts' text come from it
    return {"targets": targets, "labels": {"upstream": upstream}} if upstream else {"targets": targets}


def _static_job(job: str, target: str, upstream: str | None = None) -> dict[str, Any]:
    return {
        "job_name": job,
        "metrics_path": "/metrics",
        "scheme": "http",
        "static_configs": [_static_config([target], upstream)],
    }


def render_prometheus_config(
    scrape_jobs: Sequence[tuple[str, str]],
    probe_urls: Sequence[str],
    *,
    rules_path: str = RULES_PATH,
    scrape_interval: str = "15s",
    evaluation_interval: str = "15s",
    blackbox_module: str = Blackbox.MODULE,
    upstreams: Mapping[str, str] | None = None,
    upstream_probe_urls: Sequence[str] = (),
) -> str:
    """Render prometheus.yml: one job per (job, host:port) of the running services, the
    blackbox job probing each of `probe_urls`, and with fronts the `upstream` job probing
    each front's view of its upstream (nginx has no metrics of its own). `upstreams` labels a
    target (host:port or URL) with the upstream its mirror serves."""
    upstreams = upstreams or {}
    jobs: list[dict[str, Any]] = [_static_job(job, target, upstreams.get(target)) for job, target in scrape_jobs]
    if any(url in upstreams for url in probe_urls):
        probes = [_static_config([url], upstreams.get(url)) for url in probe_urls]
    else:
        probes = [{"targets": list(probe_urls)}]
    jobs.append(
        {
            # The multi-target exporter pattern: Prometheus asks blackbox to probe the
            # target URL; the probed URL becomes `instance`.
            "job_name": "blackbox",
            "metrics_path": "/probe",
            "scheme": "http",
            "params": {"module": [blackbox_module]},
            "static_configs": probes,
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": BLACKBOX_ADDRESS},
            ],
        }
    )
    if upstream_probe_urls:
        jobs.append(_probe_job(Blackbox.UPSTREAM_JOB, Blackbox.UPSTREAM_MODULE, upstream_probe_urls, upstreams))
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


def _probe_job(job: str, module: str, urls: Sequence[str], upstreams: Mapping[str, str]) -> dict[str, Any]:
    labelled = any(url in upstreams for url in urls)
    return {
        "job_name": job,
        "metrics_path": "/probe",
        "scheme": "http",
        "params": {"module": [module]},
        "static_configs": [_static_config([url], upstreams.get(url)) for url in urls] if labelled
        else [{"targets": list(urls)}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": BLACKBOX_ADDRESS},
        ],
    }


def _alert(name: str, expr: str, duration: str, severity: str, summary: str, description: str) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": duration,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description},
    }


def render_alert_rules(cert_expiry_days: int = 14, *, cache: bool = False) -> str:
    """Render the alert rules file that prometheus.yml's `rule_files` points at; with `cache`
    (a mirror runs a cache keeper) also the bounded cache's alerts."""
    if cert_expiry_days <= 0:
        raise ValueError(f"cert_expiry_days must be positive, got {cert_expiry_days}")
    rules = [
        _alert(
            "RegistryDown",
            # the registries' debug targets (registry, registry-<instance>); the probe jobs'
            # targets carry `upstream` too, but their `up` is the exporter's own scrape
            'up{job=~"registry|registry-.+"} == 0',
            "2m",
            "critical",
            "Registry of {{ $labels.upstream }} is down",
            "Prometheus cannot scrape the debug server of the {{ $labels.upstream }} registry at "
            "{{ $labels.instance }} for 2 minutes: that mirror is down or unreachable.",
        ),
        _alert(
            "RegistryHigh5xxRatio",
            'sum by (upstream) (rate(registry_http_requests_total{code=~"5.."}[5m]))'
            " / sum by (upstream) (rate(registry_http_requests_total[5m])) > 0.05",
            "10m",
            "warning",
            "Registry of {{ $labels.upstream }} answers more than 5% of requests with 5xx",
            "{{ $value | humanizePercentage }} of the requests to the {{ $labels.upstream }} registry "
            "failed with a 5xx status over the last 5 minutes (often that upstream failing).",
        ),
        _alert(
            "RegistryCertificateExpiresSoon",
            f'probe_ssl_earliest_cert_expiry{{job="blackbox"}} - time() < {cert_expiry_days} * {SECONDS_PER_DAY}',
            "15m",
            "warning",
            f"Registry TLS certificate of {{{{ $labels.upstream }}}} expires within {cert_expiry_days} days",
            "The earliest certificate of the chain served at {{ $labels.instance }} ({{ $labels.upstream }}) "
            "expires in "
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
            "Registry TLS endpoint probe of {{ $labels.upstream }} is failing",
            "The blackbox probe of {{ $labels.instance }} ({{ $labels.upstream }}) has failed for 5 minutes: the TLS "
            "handshake, the certificate chain or the GET /v2/ answer is wrong.",
        ),
        _alert(
            UPSTREAM_ALERT,
            f'probe_success{{job="{Blackbox.UPSTREAM_JOB}"}} == 0',
            "15m",
            "warning",
            "The mirror of {{ $labels.upstream }} has been serving without its upstream for 15 minutes",
            "The front {{ $labels.instance }} has not reached its upstream ({{ $labels.upstream }}) for 15 "
            "minutes: cached images still pull, new images and tags do not. Check the host's "
            "network and DNS, or that upstream's status.",
        ),
        _alert(
            REDIRECT_ALERT,
            # a series Alloy has just created starts at its first count, which increase() cannot
            # see: one that did not exist a window ago counts as well
            f"sum by (service, redirect_refused) (increase({REDIRECTS_REFUSED}[{REFUSAL_WINDOW}])) > 0"
            f" or (sum by (service, redirect_refused) ({REDIRECTS_REFUSED})"
            f" unless sum by (service, redirect_refused) ({REDIRECTS_REFUSED} offset {REFUSAL_WINDOW}))",
            "1m",
            "warning",
            "The front {{ $labels.service }} refused an upstream redirect ({{ $labels.redirect_refused }})",
            "The upstream of {{ $labels.service }} redirected a request where the front never follows "
            "({{ $labels.redirect_refused }}): the front answered 502 and fetched nothing. The access log lines "
            "name the host: {service=\"{{ $labels.service }}\", redirect_refused=\"{{ $labels.redirect_refused }}\"} "
            "in Loki. A custom upstream's storage may need its redirectHosts (docs/operations.md).",
        ),
    ]
    if cache:
        rules += [
            _alert(
                CACHE_OVER_LIMIT_ALERT,
                # the keeper's own series: both carry its job, instance and upstream
                "registry_cache_bytes_used > registry_cache_bytes_limit",
                "15m",
                "critical",
                "The cache of {{ $labels.upstream }} has been above cacheMaxSize for 15 minutes",
                "The mirror of {{ $labels.upstream }} holds {{ $value | humanize }}B, more than its cacheMaxSize, "
                "for 15 minutes: eviction is failing (see the registry-cache logs) or pinned and recently pulled "
                "images alone exceed the limit. The disk may fill: raise cacheMaxSize or pin fewer images.",
            ),
            _alert(
                PINNED_MISSING_ALERT,
                "registry_cache_pinned_images_missing > 0",
                "30m",
                "warning",
                "{{ $value }} pinned image(s) of {{ $labels.upstream }} not in the cache",
                "{{ $value }} image(s) of cachePin have not been complete in the {{ $labels.upstream }} mirror's "
                "cache for 30 minutes: they would not pull with the upstream down. The upstream was unreachable "
                "since the stack came up, or a pin names an image, tag or platform it does not have (see the "
                "registry-cache logs).",
            ),
        ]
    document = {"groups": [{"name": RULE_GROUP, "rules": rules}]}
    return yaml.safe_dump(document, sort_keys=True, default_flow_style=False, width=4096)


def enabled(settings: MonitoringSettings) -> bool:
    return True


def deployment(settings: MonitoringSettings, inputs: MonitoringInputs) -> Deployment:
    return Deployment("Prometheus", ServiceSpec(
        service=Prometheus.ALIAS,
        image=settings.prometheus_image,
        memory_mb=512,
        uploads=[
            Upload(CONFIG_PATH, render_prometheus_config(inputs.scrape_jobs, inputs.probe_urls,
                                                          upstreams=inputs.upstreams,
                                                          upstream_probe_urls=inputs.upstream_probe_urls)),
            Upload(RULES_PATH, render_alert_rules(cache=inputs.cache)),
        ],
        ports=[Port(PORT, settings.prometheus_port, settings.ui_bind_address)],
        command=[
            f"--config.file={CONFIG_PATH}",
            f"--storage.tsdb.path={Prometheus.DATA_PATH}",
            f"--storage.tsdb.retention.time={settings.prometheus_retention}",
        ],
        # prom/prometheus is busybox-based: wget is there
        healthcheck=["CMD", "wget", "-q", "-O", "/dev/null",
                     f"http://127.0.0.1:{PORT}{Prometheus.READY_PATH}"],
    ), volumes=[("data", Prometheus.DATA_PATH)], published_port=settings.prometheus_port)
