"""Rehearsal: every rendered alert fires on its condition and stays silent otherwise.

Debian's `promtool test rules` (Prometheus 2.42) evaluates the rules that
configs/prometheus.py renders against input series written here by hand, and compares the
firing alerts, with their labels and templated annotations, to the expectations below. The
expectations are written out literally (not derived from the renderer), so a wrong
threshold, `for` duration, selector, label or annotation template in the code shows up as a
promtool failure.

The alert names come from the rendered rules: an alert without a case here, or without both
a firing and a silent check, fails `test_every_rendered_alert_has_a_firing_and_a_silent_check`.

Time in a promtool test starts at the Unix epoch, so `time()` is the evaluation time in
seconds and a certificate expiry is written as seconds after 1970-01-01.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from configs.prometheus import render_alert_rules
from tests.conftest import require_tool

PROMTOOL_TIMEOUT = 60
DAY = 86400

# Labels the series carry on the stack's network, as the scrape config gives them.
REGISTRY_UP = 'up{job="registry", instance="registry:5001", upstream="docker.io"}'
GHCR_UP = 'up{job="registry-ghcr", instance="registry-ghcr:5001", upstream="ghcr.io"}'
# the blackbox exporter's own scrape: its targets carry `upstream`, but it is not a registry
BLACKBOX_UP = 'up{job="blackbox", instance="https://registry:5000/v2/", upstream="docker.io"}'
LOKI_UP = 'up{job="loki", instance="loki:3100"}'
GRAFANA_UP = 'up{job="grafana", instance="grafana:3000"}'
PROBE = 'job="blackbox", instance="https://registry:5000/v2/", upstream="docker.io"'
UPSTREAM = 'job="upstream", instance="http://registry-front:8080/_front/upstream", upstream="docker.io"'
# the front probe's own scrape: labelled with its upstream too, and not a registry either
UPSTREAM_UP = 'up{job="upstream", instance="http://registry-front:8080/_front/upstream", upstream="docker.io"}'


def requests(code: str, per_minute: int, upstream: str = "docker.io") -> tuple[str, str]:
    """A registry request counter growing by `per_minute` for 20 minutes."""
    return (
        f'registry_http_requests_total{{code="{code}", handler="manifest", method="get", upstream="{upstream}"}}',
        f"0+{per_minute}x20",
    )


@dataclass(frozen=True)
class Check:
    eval_time: str
    alerts: list[dict[str, Any]]  # promtool exp_alerts; [] = nothing firing

    @property
    def fires(self) -> bool:
        return bool(self.alerts)


@dataclass(frozen=True)
class Case:
    why: str
    series: dict[str, str]  # series -> promtool expanding notation, one sample a minute
    checks: list[Check]


def silent(eval_time: str) -> Check:
    return Check(eval_time, [])


def registry_down(job: str, upstream: str) -> dict[str, Any]:
    return {
        "exp_labels": {"severity": "critical", "job": job, "instance": f"{job}:5001", "upstream": upstream},
        "exp_annotations": {
            "summary": f"Registry of {upstream} is down",
            "description": f"Prometheus cannot scrape the debug server of the {upstream} registry at {job}:5001 "
            "for 2 minutes: that mirror is down or unreachable.",
        },
    }


REGISTRY_DOWN = registry_down("registry", "docker.io")


def high_5xx(percentage: str, upstream: str = "docker.io") -> dict[str, Any]:
    return {
        "exp_labels": {"severity": "warning", "upstream": upstream},
        "exp_annotations": {
            "summary": f"Registry of {upstream} answers more than 5% of requests with 5xx",
            "description": f"{percentage} of the requests to the {upstream} registry failed with a 5xx status "
            "over the last 5 minutes (often that upstream failing).",
        },
    }


def cert_expires(remaining: str) -> dict[str, Any]:
    return {
        "exp_labels": {"severity": "warning", "job": "blackbox", "instance": "https://registry:5000/v2/",
                       "upstream": "docker.io"},
        "exp_annotations": {
            "summary": "Registry TLS certificate of docker.io expires within 14 days",
            "description": "The earliest certificate of the chain served at https://registry:5000/v2/ (docker.io) "
            f"expires in {remaining}. Run `pulumi up` to renew it.",
        },
    }


def target_down(job: str, instance: str, **labels: str) -> dict[str, Any]:
    return {
        "exp_labels": {"severity": "warning", "job": job, "instance": instance, **labels},
        "exp_annotations": {
            "summary": f"Scrape target {job} is down",
            "description": f"Prometheus has failed to scrape {instance} (job {job}) for 5 minutes.",
        },
    }


PROBE_FAILING = {
    "exp_labels": {"severity": "critical", "job": "blackbox", "instance": "https://registry:5000/v2/",
                   "upstream": "docker.io"},
    "exp_annotations": {
        "summary": "Registry TLS endpoint probe of docker.io is failing",
        "description": "The blackbox probe of https://registry:5000/v2/ (docker.io) has failed for 5 minutes: the TLS "
        "handshake, the certificate chain or the GET /v2/ answer is wrong.",
    },
}


UPSTREAM_UNREACHABLE = {
    "exp_labels": {"severity": "warning", "job": "upstream", "instance": "http://registry-front:8080/_front/upstream",
                   "upstream": "docker.io"},
    "exp_annotations": {
        "summary": "The mirror of docker.io has been serving without its upstream for 15 minutes",
        "description": "The front http://registry-front:8080/_front/upstream has not reached its upstream "
        "(docker.io) for 15 minutes: cached images still pull, new images and tags do not. Check the "
        "host's network and DNS, or that upstream's status.",
    },
}


# as Prometheus scrapes Alloy's counter (configs/alloy.py): the Loki entry's labels, then job and instance
REFUSED = ('registry_mirror_front_redirects_refused_total{job="alloy", instance="alloy:12345", '
           'container="registry-mirror-dev-registry-front-ghcr", service="registry-front-ghcr", stack="dev", '
           'redirect_refused="ip-literal"}')
REFUSED_HUB = REFUSED.replace("registry-front-ghcr", "registry-front").replace("ip-literal", "scheme")


def redirect_refused(service: str, reason: str) -> dict[str, Any]:
    return {
        "exp_labels": {"severity": "warning", "service": service, "redirect_refused": reason},
        "exp_annotations": {
            "summary": f"The front {service} refused an upstream redirect ({reason})",
            "description": f"The upstream of {service} redirected a request where the front never follows "
            f"({reason}): the front answered 502 and fetched nothing. The access log lines name the host: "
            f'{{service="{service}", redirect_refused="{reason}"}} in Loki. A custom upstream\'s storage may '
            "need its redirectHosts (docs/operations.md).",
        },
    }


# the cache keeper's series (job and instance its scrape target, upstream its mirror's)
KEEPER = 'job="registry-cache", instance="registry-cache:5080", upstream="docker.io"'
GHCR_KEEPER = 'job="registry-cache-ghcr", instance="registry-cache-ghcr:5080", upstream="ghcr.io"'
GB = 1_000_000_000


def cache_over_limit(value: str, labels: str = KEEPER, upstream: str = "docker.io") -> dict[str, Any]:
    job, instance = re.findall(r'"([^"]+)"', labels)[:2]
    return {
        "exp_labels": {"severity": "critical", "job": job, "instance": instance, "upstream": upstream},
        "exp_annotations": {
            "summary": f"The cache of {upstream} has been above cacheMaxSize for 15 minutes",
            "description": f"The mirror of {upstream} holds {value}B, more than its cacheMaxSize, for 15 minutes: "
            "eviction is failing (see the registry-cache logs) or pinned and recently pulled images alone exceed "
            "the limit. The disk may fill: raise cacheMaxSize or pin fewer images.",
        },
    }


def pinned_missing(count: int) -> dict[str, Any]:
    return {
        "exp_labels": {"severity": "warning", "job": "registry-cache", "instance": "registry-cache:5080",
                       "upstream": "docker.io"},
        "exp_annotations": {
            "summary": f"{count} pinned image(s) of docker.io not in the cache",
            "description": f"{count} image(s) of cachePin have not been complete in the docker.io mirror's cache "
            "for 30 minutes: they would not pull with the upstream down. The upstream was unreachable since the "
            "stack came up, or a pin names an image, tag or platform it does not have (see the registry-cache logs).",
        },
    }


CASES: dict[str, list[Case]] = {
    "RegistryDown": [
        Case(
            "the registry's scrape fails: pending for the first 2 minutes, firing from then on",
            {REGISTRY_UP: "0x10"},
            [silent("1m"), Check("2m", [REGISTRY_DOWN]), Check("10m", [REGISTRY_DOWN])],
        ),
        Case(
            "another job down is not the registry, nor are the blackbox exporter's own scrapes",
            {REGISTRY_UP: "1x10", GRAFANA_UP: "0x10", BLACKBOX_UP: "0x10", UPSTREAM_UP: "0x10"},
            [silent("10m")],
        ),
        Case(
            "the ghcr.io mirror down while Docker Hub's is up: the alert names ghcr.io",
            {REGISTRY_UP: "1x10", GHCR_UP: "0x10"},
            [silent("1m"), Check("2m", [registry_down("registry-ghcr", "ghcr.io")])],
        ),
        Case(
            "one successful scrape restarts the 2 minutes",
            {REGISTRY_UP: "0 0 1 0 0 0"},
            [silent("4m"), Check("5m", [REGISTRY_DOWN])],
        ),
    ],
    "RegistryHigh5xxRatio": [
        Case(
            # 30 + 22 of 1000 requests a minute are 5xx (5.2%); the 404s count in the total only.
            # The first rate exists at 1m (two samples), so it fires 10 minutes later, at 11m.
            "5.2% of the requests are 5xx, of two different codes",
            dict([requests("200", 900), requests("404", 48), requests("503", 30), requests("500", 22)]),
            [silent("10m"), Check("11m", [high_5xx("5.2%")])],
        ),
        Case(
            "quay.io's mirror fails 10% while Docker Hub's (with ten times the traffic) fails none: "
            "the ratio is per upstream, and the alert names quay.io",
            dict([requests("200", 1000), requests("200", 90, "quay.io"), requests("502", 10, "quay.io")]),
            [silent("10m"), Check("11m", [high_5xx("10%", "quay.io")])],
        ),
        Case(
            "4.9% of the requests are 5xx: just below the threshold, with 5.1% 404s besides",
            dict([requests("200", 900), requests("404", 51), requests("502", 49)]),
            [silent("11m"), silent("20m")],
        ),
    ],
    "RegistryCertificateExpiresSoon": [
        Case(
            # one minute inside the 14-day window from the start: firing at 15m, when 900 s
            # less remain: 14 d - 60 s - 900 s = 13d 23h 44m 0s
            "the chain expires 14 days minus a minute from now",
            {f"probe_ssl_earliest_cert_expiry{{{PROBE}}}": f"{14 * DAY - 60}x40"},
            [silent("14m"), Check("15m", [cert_expires("13d 23h 44m 0s")])],
        ),
        Case(
            # 14 d + 16 min: outside the window until 16m (exactly 14 d left is not < 14 d),
            # inside from 17m, firing 15 minutes later at 32m with 14 d - 16 min left
            "a chain that enters the window as time passes",
            {f"probe_ssl_earliest_cert_expiry{{{PROBE}}}": f"{14 * DAY + 16 * 60}x40"},
            [silent("16m"), silent("31m"), Check("32m", [cert_expires("13d 23h 44m 0s")])],
        ),
        Case(
            "a chain with 30 days left",
            {f"probe_ssl_earliest_cert_expiry{{{PROBE}}}": f"{30 * DAY}x40"},
            [silent("40m")],
        ),
    ],
    "TargetDown": [
        Case(
            "Loki's and the registry's scrapes fail, Grafana's succeed: one alert per down target",
            {LOKI_UP: "0x10", REGISTRY_UP: "1 0x9", GRAFANA_UP: "1x10"},
            [
                silent("4m"),
                Check("5m", [target_down("loki", "loki:3100")]),
                Check("6m", [target_down("loki", "loki:3100"),
                             target_down("registry", "registry:5001", upstream="docker.io")]),
            ],
        ),
        Case(
            "every target is up",
            {LOKI_UP: "1x10", REGISTRY_UP: "1x10", GRAFANA_UP: "1x10"},
            [silent("10m")],
        ),
    ],
    "BlackboxProbeFailing": [
        Case(
            "the probe fails: pending for the first 5 minutes",
            {f"probe_success{{{PROBE}}}": "0x10"},
            [silent("4m"), Check("5m", [PROBE_FAILING])],
        ),
        Case(
            "the probe succeeds, and a probe of another job failing does not count",
            {f"probe_success{{{PROBE}}}": "1x10", 'probe_success{job="other", instance="x"}': "0x10"},
            [silent("10m")],
        ),
    ],
    "MirrorCacheOverLimit": [
        Case(
            "usage stays above the 50 GB limit: eviction is failing; pending for 15 minutes, then firing",
            {f"registry_cache_bytes_used{{{KEEPER}}}": f"{52 * GB}x40",
             f"registry_cache_bytes_limit{{{KEEPER}}}": f"{50 * GB}x40"},
            [silent("14m"), Check("15m", [cache_over_limit("52G")])],
        ),
        Case(
            "ghcr.io's cache over its limit while Docker Hub's is under its own: the alert names ghcr.io",
            {f"registry_cache_bytes_used{{{KEEPER}}}": f"{40 * GB}x40",
             f"registry_cache_bytes_limit{{{KEEPER}}}": f"{50 * GB}x40",
             f"registry_cache_bytes_used{{{GHCR_KEEPER}}}": f"{11 * GB}x40",
             f"registry_cache_bytes_limit{{{GHCR_KEEPER}}}": f"{10 * GB}x40"},
            [silent("14m"), Check("15m", [cache_over_limit("11G", GHCR_KEEPER, "ghcr.io")])],
        ),
        Case(
            "a pull passes the limit for 10 minutes, then an eviction brings it back: no alert",
            {f"registry_cache_bytes_used{{{KEEPER}}}": f"{51 * GB}x10 {40 * GB}x30",
             f"registry_cache_bytes_limit{{{KEEPER}}}": f"{50 * GB}x40"},
            [silent("9m"), silent("15m"), silent("40m")],
        ),
        Case(
            "a cache without a limit (cachePin alone) has no limit series: never fires",
            {f"registry_cache_bytes_used{{{KEEPER}}}": f"{500 * GB}x40"},
            [silent("40m")],
        ),
    ],
    "MirrorPinnedImageNotCached": [
        Case(
            "two pins never fetched (the upstream was down since the start): firing after 30 minutes",
            {f"registry_cache_pinned_images_missing{{{KEEPER}}}": "2x60"},
            [silent("29m"), Check("30m", [pinned_missing(2)])],
        ),
        Case(
            "seeding succeeds after 20 minutes: silent",
            {f"registry_cache_pinned_images_missing{{{KEEPER}}}": "1x20 0x40"},
            [silent("25m"), silent("60m")],
        ),
    ],
    "MirrorUpstreamUnreachable": [
        Case(
            "the front has not reached Docker Hub: pending for 15 minutes, firing from then on",
            {f"probe_success{{{UPSTREAM}}}": "0x40"},
            [silent("14m"), Check("15m", [UPSTREAM_UNREACHABLE]), Check("30m", [UPSTREAM_UNREACHABLE])],
        ),
        Case(
            "a 10-minute outage, then Docker Hub answers again; the registry's TLS probe failing is not this",
            {f"probe_success{{{UPSTREAM}}}": "1x10 0x10 1x20", f"probe_success{{{PROBE}}}": "0x40"},
            [silent("5m"), silent("20m"), silent("40m")],
        ),
    ],
    "FrontRedirectRefused": [
        Case(
            # Alloy creates the series at its first count (3 refusals before the first scrape):
            # increase() sees nothing there, the new-series clause does; firing a minute later,
            # and for as long as the series is younger than the 15-minute window
            "ghcr.io's front refuses three redirects at minute 5, then none",
            {REFUSED: "_x5 3x40"},
            [silent("5m"), Check("6m", [redirect_refused("registry-front-ghcr", "ip-literal")]),
             Check("19m", [redirect_refused("registry-front-ghcr", "ip-literal")]), silent("21m")],
        ),
        Case(
            "a counter that already existed grows by one at minute 21",
            {REFUSED_HUB: "2x20 3x30"},
            [silent("21m"), Check("22m", [redirect_refused("registry-front", "scheme")]), silent("40m")],
        ),
        Case(
            "a counter that has not moved for its whole window",
            {REFUSED: "4x40"},
            [silent("16m"), silent("40m")],
        ),
    ],
}


def rendered_rules() -> dict[str, dict[str, Any]]:
    [group] = yaml.safe_load(render_alert_rules(cache=True))["groups"]
    return {rule["alert"]: rule for rule in group["rules"]}


ALERTS = sorted(rendered_rules())


def promtool_test_file(alert: str, cases: list[Case], rules_name: str) -> dict[str, Any]:
    return {
        "rule_files": [rules_name],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": f"{alert}: {case.why}",
                "interval": "1m",
                "input_series": [{"series": series, "values": values} for series, values in case.series.items()],
                "alert_rule_test": [
                    {"eval_time": check.eval_time, "alertname": alert, "exp_alerts": check.alerts}
                    for check in case.checks
                ],
            }
            for case in cases
        ],
    }


def run_promtool_test(
    tmp_path: Path, rules_text: str, alert: str, cases: list[Case]
) -> subprocess.CompletedProcess[str]:
    promtool = require_tool("promtool")
    (tmp_path / "rules.yml").write_text(rules_text)
    tests = tmp_path / "tests.yml"
    tests.write_text(yaml.safe_dump(promtool_test_file(alert, cases, "rules.yml"), sort_keys=False))
    return subprocess.run(
        [promtool, "test", "rules", tests.name],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT,
        check=False,
        cwd=tmp_path,
    )


def test_every_rendered_alert_has_a_firing_and_a_silent_check() -> None:
    assert ALERTS, "no alert rendered"
    assert sorted(CASES) == ALERTS  # a case list for an alert the code no longer has is stale
    for alert, cases in CASES.items():
        checks = [check for case in cases for check in case.checks]
        assert any(check.fires for check in checks), f"{alert} has no firing check"
        assert any(not check.fires for check in checks), f"{alert} has no silent check"


@pytest.mark.parametrize("alert", ALERTS)
def test_alert_fires_on_its_condition_and_stays_silent_otherwise(tmp_path: Path, alert: str) -> None:
    if alert not in CASES:
        pytest.fail(f"{alert} is rendered but has no cases here", pytrace=False)
    result = run_promtool_test(tmp_path, render_alert_rules(cache=True), alert, CASES[alert])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _slower(rules_text: str, alert: str) -> str:
    """The rendered rules with this alert's `for` doubled: it fires later."""
    document = yaml.safe_load(rules_text)
    for rule in document["groups"][0]["rules"]:
        if rule["alert"] == alert:
            duration = re.fullmatch(r"(\d+)([smh])", rule["for"])
            assert duration, rule["for"]
            rule["for"] = f"{int(duration[1]) * 2}{duration[2]}"
    return yaml.safe_dump(document)


@pytest.mark.parametrize("alert", ALERTS)
def test_the_firing_checks_fail_when_the_alert_waits_twice_as_long(tmp_path: Path, alert: str) -> None:
    """The firing checks sit right at the `for` duration: promtool notices a slower rule."""
    result = run_promtool_test(tmp_path, _slower(render_alert_rules(cache=True), alert), alert, CASES[alert])
    assert result.returncode != 0, result.stdout
    assert alert in result.stderr + result.stdout


def test_promtool_reports_a_wrong_annotation(tmp_path: Path) -> None:
    """promtool compares the templated annotations, not only the alert's presence."""
    wrong = {**REGISTRY_DOWN, "exp_annotations": {**REGISTRY_DOWN["exp_annotations"], "summary": "wrong"}}
    case = Case("a wrong expected summary", {REGISTRY_UP: "0x5"}, [Check("2m", [wrong])])
    result = run_promtool_test(tmp_path, render_alert_rules(cache=True), "RegistryDown", [case])
    assert result.returncode != 0, result.stdout
    assert "wrong" in result.stderr + result.stdout
