"""Rehearsal: every PromQL expression of the Grafana dashboard parses in real promtool.

Grafana's own variables (`$__rate_interval`, `$__range`, ...) are replaced by literal
durations first, each expression becomes a recording rule in a temporary rules file, and
Debian's `promtool check rules` (Prometheus 2.42) parses it. The helpers here also give the
metric names an expression selects; test_prometheus_rehearsal.py uses them to prove every
name is in a real scrape of registry 3.1.1 (and of the blackbox exporter and Prometheus).

LogQL (the logs panel) has no binary here: its shape is checked in the unit tests only.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from configs.grafana import DASHBOARD_FILE
from configs.prometheus import render_alert_rules
from tests.conftest import require_tool

DASHBOARD_PATH = DASHBOARD_FILE

# Grafana's built-in interval variables -> a literal PromQL duration for parsing.
GRAFANA_INTERVALS = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
}
# The dashboard's own variables -> what Grafana puts there for "All" (the variable's allValue).
DASHBOARD_VARIABLES = {"$upstream": ".*"}

# PromQL words that are not metric names (Prometheus promql/parser lex.go key words and
# aggregators; functions are recognised by the "(" that follows them).
_KEYWORDS = frozenset(
    {
        "and", "or", "unless", "atan2", "bool", "by", "without", "on", "ignoring",
        "group_left", "group_right", "offset", "start", "end",
        "sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk",
        "bottomk", "count_values", "quantile", "inf", "nan",
    }
)  # fmt: skip
_TOKEN = re.compile(
    r"""
      (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    | (?P<braces>\{[^}]*\})
    | (?P<range>\[[^\]]*\])
    | (?P<duration>(?:[0-9]+(?:ms|[smhdwy]))+(?![A-Za-z0-9_:]))
    | (?P<number>(?:0x[0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?))
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<other>\s+|.)
    """,
    re.VERBOSE,
)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (identifiers that are not functions,
    keywords or label names), by a small lexer over PromQL's grammar."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(expr)]
    tokens = [(kind, text) for kind, text in tokens if not (kind == "other" and text.isspace())]
    names: set[str] = set()
    skip_label_list = False
    for index, (kind, text) in enumerate(tokens):
        if kind == "braces":
            match = re.search(r'__name__\s*=\s*"([^"]+)"', text)
            if match:
                names.add(match.group(1))
            continue
        if kind != "ident":
            if kind == "other" and text == ")":
                skip_label_list = False
            continue
        if skip_label_list:
            continue  # label names inside by (...), without (...), on (...), ...
        lower = text.lower()
        following = tokens[index + 1][1] if index + 1 < len(tokens) else ""
        if lower in {"by", "without", "on", "ignoring", "group_left", "group_right"}:
            skip_label_list = following == "("
            continue
        if lower in _KEYWORDS or following == "(":
            continue  # key word, aggregator or function call
        names.add(text)
    return names


def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD_PATH.read_text())
    assert isinstance(loaded, dict)
    return loaded


def dashboard_promql() -> dict[str, str]:
    """`panel-<id>-<refId>` -> the panel's PromQL with Grafana intervals made literal."""
    exprs: dict[str, str] = {}
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):  # a row has none
            if target["datasource"]["type"] != "prometheus":
                continue
            expr = target["expr"]
            for variable, literal in (GRAFANA_INTERVALS | DASHBOARD_VARIABLES).items():
                expr = expr.replace(variable, literal)
            exprs[f"panel-{panel['id']}-{target['refId']}"] = expr
    return exprs


def alert_promql() -> dict[str, str]:
    """Every alert's PromQL, the bounded cache's included."""
    document = yaml.safe_load(render_alert_rules(cache=True))
    return {rule["alert"]: rule["expr"] for rule in document["groups"][0]["rules"]}


def _promtool_check(promtool: str, exprs: dict[str, str], directory: Path) -> str:
    """Write the expressions as recording rules and run `promtool check rules`; raise with
    promtool's output when it refuses them."""
    rules = [
        {"record": "dashboard:" + re.sub(r"[^a-zA-Z0-9_]", "_", label), "expr": expr}
        for label, expr in sorted(exprs.items())
    ]
    path = directory / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise AssertionError(f"promtool check rules refused the expressions:\n{output}")
    return output


def test_every_dashboard_promql_expression_parses_in_promtool(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    exprs = dashboard_promql()
    assert len(exprs) >= 15  # every Prometheus target of every panel
    for label, expr in exprs.items():
        assert "$" not in expr, f"{label}: unknown Grafana variable left in {expr!r}"
    output = _promtool_check(promtool, exprs, tmp_path)
    assert f"SUCCESS: {len(exprs)} rules found" in output


def test_each_dashboard_expression_parses_on_its_own(tmp_path: Path) -> None:
    """One file per expression, so a wrong one is named by the failure."""
    promtool = require_tool("promtool")
    for label, expr in dashboard_promql().items():
        directory = tmp_path / label
        directory.mkdir()
        assert "SUCCESS: 1 rules found" in _promtool_check(promtool, {label: expr}, directory)


def test_promtool_check_refuses_a_malformed_expression(tmp_path: Path) -> None:
    """The harness can fail: an unbalanced `by (` list is refused by the real parser."""
    promtool = require_tool("promtool")
    broken = "sum by (handler (rate(registry_http_requests_total[5m]))"
    with pytest.raises(AssertionError, match="refused"):
        _promtool_check(promtool, {"broken": broken}, tmp_path)


def test_grafana_range_variables_become_literal_durations() -> None:
    exprs = dashboard_promql()
    assert any("[5m]" in e for e in exprs.values())  # $__rate_interval
    assert any("[1h]" in e for e in exprs.values())  # $__range (bandwidth saved)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('up{job="registry"} == 0', {"up"}),
        (
            "sum by (handler, code) (rate(registry_http_requests_total[5m]))",
            {"registry_http_requests_total"},
        ),
        (
            "histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m])))"
            " / on (job) group_left (x) b",
            {"a_bucket", "b"},
        ),
        ('probe_ssl_earliest_cert_expiry{job="blackbox"} - time() < 14 * 86400', {
            "probe_ssl_earliest_cert_expiry"
        }),
        ('{__name__="x_total", code=~"5.."} offset 1h30m', {"x_total"}),
        ('count_values("by", up) or vector(1) unless sum without (job) (y)', {"up", "y"}),
        ('clamp_min(sum(increase(p[1h])) - sum(increase(q[1h])), 0)', {"p", "q"}),
    ],
)  # fmt: skip
def test_metric_name_lexer_finds_selectors_and_skips_labels_and_functions(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def test_metric_name_lexer_sees_every_metric_of_the_dashboard_and_rules() -> None:
    found = set().union(*(promql_metric_names(e) for e in dashboard_promql().values()))
    found |= set().union(*(promql_metric_names(e) for e in alert_promql().values()))
    assert {
        "up",
        "probe_success",
        "probe_ssl_earliest_cert_expiry",
        "registry_http_requests_total",
        "registry_http_request_duration_seconds_bucket",
        "registry_storage_action_seconds_bucket",
        "registry_storage_cache_hits_total",
        "registry_storage_cache_requests_total",
        "registry_proxy_hits_total",
        "registry_proxy_misses_total",
        "registry_proxy_requests_total",
        "registry_proxy_pulled_bytes_total",
        "registry_proxy_pushed_bytes_total",
        "registry_mirror_front_redirects_refused_total",
        # the cache keeper's (cachekeeper/service.py), for mirrors with cacheMaxSize or cachePin
        "registry_cache_bytes_used",
        "registry_cache_bytes_limit",
        "registry_cache_high_watermark_bytes",
        "registry_cache_low_watermark_bytes",
        "registry_cache_evicted_images_total",
        "registry_cache_evicted_bytes_total",
        "registry_cache_pinned_images_missing",
        "registry_cache_last_eviction_timestamp_seconds",
        "registry_cache_last_eviction_duration_seconds",
    } == found
