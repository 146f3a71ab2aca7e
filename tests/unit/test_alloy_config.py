"""Alloy config renderer: syntax, component/argument/block names and JSON-field extraction.

No Alloy binary runs here. The file is read back by a small Alloy-syntax reader written for this
test (tokens, string escapes, blocks, attributes, lists, objects — the rules of TYPES_DOC), and
every component, argument and block name is compared with the upstream docs named below.
"""

from __future__ import annotations

import http.server
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from configs.alloy import alloy_command, alloy_healthcheck, render_alloy_config
from tests.conftest import require_tool
from tests.unit.conftest import StatusHandler

# Upstream sources, named in assertion messages; repository, path and commit of each:
# docs/upstream-references.md ("Source names used by the unit tests").
DISCOVERY_DOCKER_DOC = "DISCOVERY_DOCKER_DOC (docs/upstream-references.md)"
DISCOVERY_RELABEL_DOC = "DISCOVERY_RELABEL_DOC (docs/upstream-references.md)"
RULE_BLOCK_DOC = "RULE_BLOCK_DOC (docs/upstream-references.md)"
SOURCE_DOCKER_DOC = "SOURCE_DOCKER_DOC (docs/upstream-references.md)"
PROCESS_DOC = "PROCESS_DOC (docs/upstream-references.md)"
WRITE_DOC = "WRITE_DOC (docs/upstream-references.md)"
MONITOR_DOCKER_DOC = "MONITOR_DOCKER_DOC (docs/upstream-references.md)"
TYPES_DOC = "TYPES_DOC (docs/upstream-references.md)"
RUN_DOC = "RUN_DOC (docs/upstream-references.md)"
HEALTH_DOC = "HEALTH_DOC (docs/upstream-references.md)"
ALLOY_DOCKERFILE = "ALLOY_DOCKERFILE (docs/upstream-references.md)"
JMESPATH_SPEC = "JMESPATH_SPEC (docs/upstream-references.md)"
REGISTRY_LOG_FIELDS = "REGISTRY_LOG_FIELDS (docs/upstream-references.md)"
DOCKER_SD = "DOCKER_SD (docs/upstream-references.md)"
MOBY_FILTERS = "MOBY_FILTERS (docs/upstream-references.md)"

# Arguments (a) and blocks (b) each component documents (only those this config may use).
DOCUMENTED: dict[str, dict[str, set[str]]] = {
    "discovery.docker": {"a": {"host", "port", "refresh_interval"}, "b": {"filter"}},  # DISCOVERY_DOCKER_DOC
    "discovery.relabel": {"a": {"targets"}, "b": {"rule"}},  # DISCOVERY_RELABEL_DOC
    "loki.source.docker": {  # SOURCE_DOCKER_DOC
        "a": {"host", "targets", "forward_to", "labels", "relabel_rules", "refresh_interval"},
        "b": {"client"},
    },
    "loki.process": {"a": {"forward_to"}, "b": {"stage.match", "stage.json", "stage.labels"}},  # PROCESS_DOC
    "loki.write": {"a": {"max_streams", "external_labels"}, "b": {"endpoint"}},  # WRITE_DOC
}
FILTER_ARGS = {"name", "values"}  # DISCOVERY_DOCKER_DOC, filter block
RULE_ARGS = {
    "action",
    "modulus",
    "regex",
    "replacement",
    "separator",
    "source_labels",
    "target_label",
}  # RULE_BLOCK_DOC
MATCH_ARGS = {"selector", "pipeline_name", "action", "drop_counter_reason"}  # PROCESS_DOC, stage.match
MATCH_STAGES = {"stage.json", "stage.labels", "stage.structured_metadata", "stage.regex",
                "stage.metrics"}  # PROCESS_DOC: same stage.NAME blocks
REGEX_ARGS = {"expression", "source"}  # PROCESS_DOC, stage.regex
METRICS_BLOCKS = {"metric.counter", "metric.gauge", "metric.histogram"}  # PROCESS_DOC, stage.metrics
COUNTER_ARGS = {"name", "action", "description", "source", "prefix", "max_idle_duration", "value", "match_all",
                "count_entry_bytes"}  # PROCESS_DOC, metric.counter
JSON_ARGS = {"expressions", "source", "drop_malformed"}  # PROCESS_DOC, stage.json
LABELS_ARGS = {"values"}  # PROCESS_DOC, stage.labels
STRUCTURED_METADATA_ARGS = {"values"}  # PROCESS_DOC, stage.structured_metadata
ENDPOINT_ARGS = {"url", "name", "headers", "batch_wait", "batch_size", "remote_timeout", "tenant_id"}  # WRITE_DOC
# Exported fields each component documents.
EXPORTS = {
    "discovery.docker": {"targets"},  # DISCOVERY_DOCKER_DOC
    "discovery.relabel": {"output", "rules"},  # DISCOVERY_RELABEL_DOC
    "loki.process": {"receiver"},  # PROCESS_DOC
    "loki.write": {"receiver"},  # WRITE_DOC
}

# A registry access log line, with the field names of REGISTRY_LOG_FIELDS (GetRequestLogger /
# GetResponseLogger keys) as logrus's JSON formatter writes them (flat, dotted keys).
REGISTRY_LINE = json.dumps(
    {
        "go.version": "go1.25.8",
        "http.request.host": "mirror.local:5000",
        "http.request.id": "3f6c1b9a-0d4e-4c4f-9a55-2b8e7f0e1c11",
        "http.request.method": "GET",
        "http.request.remoteaddr": "172.18.0.1:51234",
        "http.request.uri": "/v2/library/alpine/manifests/3.20",
        "http.request.useragent": "docker/28.2.2",
        "http.response.contenttype": "application/vnd.oci.image.index.v1+json",
        "http.response.duration": "412.5ms",
        "http.response.status": 200,
        "http.response.written": 9218,
        "level": "info",
        "msg": "response completed",
        "time": "2026-11-02T10:11:12.123456789Z",
    }
)


# --- a minimal reader for the Alloy syntax (TYPES_DOC) ----------------------------------------


class AlloySyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Ref:
    """A reference to another component's export, e.g. discovery.docker.stack.targets."""

    path: str


@dataclass
class Block:
    name: str
    label: str | None
    body: list[Any]

    def attrs(self) -> dict[str, Any]:
        return {item.name: item.value for item in self.body if isinstance(item, Attr)}

    def blocks(self, name: str | None = None) -> list[Block]:
        return [item for item in self.body if isinstance(item, Block) and (name is None or item.name == name)]


@dataclass
class Attr:
    name: str
    value: Any


_SIMPLE_ESCAPES = {"\\": "\\", "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_SIMPLE_ESCAPES.update({"'": "'", '"': '"'})
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


def _read_string(text: str, i: int) -> tuple[str, int]:
    """Decode a double-quoted string starting at text[i] == '"' with TYPES_DOC's escapes."""
    out: list[str] = []
    i += 1
    while True:
        if i >= len(text):
            raise AlloySyntaxError("unterminated string")
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "\n":
            raise AlloySyntaxError("newline inside a double-quoted string")
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = text[i + 1 : i + 2]
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
        elif esc in ("u", "U", "x"):
            width = {"u": 4, "U": 8, "x": 2}[esc]
            digits = text[i + 2 : i + 2 + width]
            if not re.fullmatch(f"[0-9a-fA-F]{{{width}}}", digits):
                raise AlloySyntaxError(f"bad \\{esc} escape")
            code = int(digits, 16)
            if 0xD800 <= code <= 0xDFFF:
                raise AlloySyntaxError("surrogate code point in escape")
            out.append(chr(code))
            i += 2 + width
        elif re.fullmatch(r"[0-7]{3}", text[i + 1 : i + 4]):
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            raise AlloySyntaxError(f"unknown escape \\{esc}")


def _lex(text: str) -> list[tuple[str, Any, int]]:
    tokens: list[tuple[str, Any, int]] = []
    i, line = 0, 1
    while i < len(text):
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif ch in " \t\r":
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise AlloySyntaxError("unterminated block comment")
            line += text.count("\n", i, end)
            i = end + 2
        elif ch == '"':
            value, i = _read_string(text, i)
            tokens.append(("str", value, line))
        elif ch == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise AlloySyntaxError("unterminated raw string")
            tokens.append(("str", text[i + 1 : end], line))
            line += text.count("\n", i, end)
            i = end + 1
        elif ch in "{}[]=,":
            tokens.append((ch, ch, line))
            i += 1
        elif match := _IDENT.match(text, i):
            tokens.append(("ident", match.group(), line))
            i = match.end()
        elif match := _NUMBER.match(text, i):
            tokens.append(("num", float(match.group()), line))
            i = match.end()
        else:
            raise AlloySyntaxError(f"unexpected {ch!r} on line {line}")
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any, int]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> tuple[str, Any, int]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("eof", None, -1)

    def take(self, kind: str) -> tuple[str, Any, int]:
        token = self.peek()
        if token[0] != kind:
            raise AlloySyntaxError(f"expected {kind}, got {token[0]} {token[1]!r} on line {token[2]}")
        self.pos += 1
        return token

    def body(self, closing: str | None) -> list[Any]:
        items: list[Any] = []
        while True:
            kind, value, line = self.peek()
            if kind == "eof" and closing is None:
                return items
            if closing is not None and kind == closing:
                self.pos += 1
                return items
            name = self.take("ident")[1]
            nxt = self.peek()[0]
            if nxt == "=":
                self.pos += 1
                items.append(Attr(name, self.expr()))
            elif nxt == "str":
                label = self.take("str")[1]
                self.take("{")
                items.append(Block(name, label, self.body("}")))
            elif nxt == "{":
                self.pos += 1
                items.append(Block(name, None, self.body("}")))
            else:
                raise AlloySyntaxError(f"expected '=' or a block after {name!r} on line {line}")

    def _sequence(self, closing: str, item: Any) -> list[Any]:
        values: list[Any] = []
        last_line = self.peek()[2]
        while self.peek()[0] != closing:
            values.append(item())
            last_line = self.tokens[self.pos - 1][2]
            if self.peek()[0] == ",":
                self.pos += 1
                continue
            # TYPES_DOC: a comma after the final value must be present if the closing bracket
            # is on a different line than the final value.
            if self.peek()[0] == closing and self.peek()[2] != last_line:
                raise AlloySyntaxError(f"missing trailing comma before {closing!r} on line {self.peek()[2]}")
            break
        self.take(closing)
        return values

    def expr(self) -> Any:
        kind, value, line = self.peek()
        if kind in ("str", "num"):
            self.pos += 1
            return value
        if kind == "ident":
            self.pos += 1
            return {"true": True, "false": False, "null": None}.get(value, Ref(value))
        if kind == "[":
            self.pos += 1
            return self._sequence("]", self.expr)
        if kind == "{":
            self.pos += 1

            def pair() -> tuple[str, Any]:
                key_kind, key, _ = self.peek()
                if key_kind not in ("ident", "str"):
                    raise AlloySyntaxError(f"bad object key on line {line}")
                self.pos += 1
                self.take("=")
                return key, self.expr()

            return dict(self._sequence("}", pair))
        raise AlloySyntaxError(f"unexpected {kind} {value!r} on line {line}")


def parse_alloy(text: str) -> list[Block]:
    items = _Parser(_lex(text)).body(None)
    if not all(isinstance(item, Block) for item in items):
        raise AlloySyntaxError("top level must contain only component blocks")
    return items


def _walk(blocks: list[Block]) -> Iterator[Block]:
    for block in blocks:
        yield block
        yield from _walk(block.blocks())


# --- a minimal JMESPath evaluator for identifiers and sub-expressions (JMESPATH_SPEC) --------


def jmespath_search(expression: str, document: Any) -> Any:
    """identifier (unquoted, or quoted = a JSON string) joined by '.' into sub-expressions."""
    parts: list[str] = []
    i = 0
    while i < len(expression):
        if expression[i] == '"':
            end = i + 1
            while expression[end] != '"':
                end += 2 if expression[end] == "\\" else 1
            parts.append(json.loads(expression[i : end + 1]))
            i = end + 1
        else:
            match = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(expression, i)
            if match is None:
                raise ValueError(f"not an identifier at {expression[i:]!r}")
            parts.append(match.group())
            i = match.end()
        if i < len(expression):
            if expression[i] != ".":
                raise ValueError(f"expected '.' at {expression[i:]!r}")
            i += 1
    node = document
    for part in parts:
        node = node.get(part) if isinstance(node, dict) else None
    return node


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def components() -> dict[str, Block]:
    blocks = parse_alloy(render_alloy_config("registry-mirror", "dev"))
    return {f"{b.name}.{b.label}": b for b in blocks}


def _one(components: dict[str, Block], kind: str) -> Block:
    found = [b for b in components.values() if b.name == kind]
    assert len(found) == 1, f"expected exactly one {kind}"
    return found[0]


# --- syntax ---------------------------------------------------------------------------------


def test_rendered_text_is_well_formed_alloy_syntax() -> None:
    blocks = parse_alloy(render_alloy_config("registry-mirror", "dev"))
    assert blocks, TYPES_DOC


def test_reader_rejects_broken_text_so_the_syntax_check_can_fail() -> None:
    text = render_alloy_config("registry-mirror", "dev")
    for broken in (
        text.replace('"\\"http.request.method\\""', '""http.request.method""'),  # unescaped quotes
        text.rstrip().rstrip("}"),  # unbalanced brace
        text.replace('status     = "",', 'status     = ""'),  # comma
        text.replace('"/(.*)"', '"/(\\.*)"'),  # unknown escape \.
    ):
        with pytest.raises(AlloySyntaxError):
            parse_alloy(broken)


# --- components and their documented names --------------------------------------------------


def test_pipeline_is_the_documented_docker_logs_pipeline(components: dict[str, Block]) -> None:
    # MONITOR_DOCKER_DOC: discovery.docker, discovery.relabel, loki.source.docker, loki.write;
    # plus loki.process (PROCESS_DOC) for the registry's JSON.
    assert sorted(b.name for b in components.values()) == [
        "discovery.docker",
        "discovery.relabel",
        "loki.process",
        "loki.source.docker",
        "loki.write",
    ]
    for block in components.values():
        assert block.label, f"{block.name} needs a label"


@pytest.mark.parametrize("kind", sorted(DOCUMENTED))
def test_component_uses_only_documented_arguments_and_blocks(components: dict[str, Block], kind: str) -> None:
    block = _one(components, kind)
    assert set(block.attrs()) <= DOCUMENTED[kind]["a"]
    assert {b.name for b in block.blocks()} <= DOCUMENTED[kind]["b"]


def test_references_point_at_documented_exports_of_defined_components(components: dict[str, Block]) -> None:
    defined = {f"{b.name}.{b.label}": b.name for b in components.values()}
    refs: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, Ref):
            refs.append(value.path)
        elif isinstance(value, list):
            for item in value:
                collect(item)
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)

    for block in _walk(list(components.values())):
        for value in block.attrs().values():
            collect(value)
    assert refs, "the pipeline must be wired by references"
    for ref in refs:
        component, _, export = ref.rpartition(".")
        assert component in defined, f"{ref} refers to an undefined component"
        assert export in EXPORTS[defined[component]], f"{ref}: {export} is not an export of {defined[component]}"


def test_discovery_docker_selects_this_stack_by_project_and_stack_labels(components: dict[str, Block]) -> None:
    docker = _one(components, "discovery.docker")
    assert docker.attrs() == {"host": "unix:///var/run/docker.sock"}, DISCOVERY_DOCKER_DOC
    filters = docker.blocks("filter")
    assert len(filters) == 1
    assert set(filters[0].attrs()) == FILTER_ARGS
    assert filters[0].attrs()["name"] == "label"
    # One `label` filter with two values: Docker keeps containers matching ALL of them
    # (MOBY_FILTERS, MatchKVList).
    assert sorted(filters[0].attrs()["values"]) == [
        "registry-mirror.project=registry-mirror",
        "registry-mirror.stack=dev",
    ]


def test_relabel_rules_set_container_service_and_stack(components: dict[str, Block]) -> None:
    relabel = _one(components, "discovery.relabel")
    assert relabel.attrs() == {"targets": []}, MONITOR_DOCKER_DOC  # used only for its rules export
    rules = [rule.attrs() for rule in relabel.blocks("rule")]
    for rule in rules:
        assert set(rule) <= RULE_ARGS
        assert rule.get("action", "replace") == "replace"  # RULE_BLOCK_DOC default action
    by_target = {rule["target_label"]: rule for rule in rules}
    assert set(by_target) == {"container", "service", "stack"}
    # MONITOR_DOCKER_DOC: the container name keeps the part after the leading slash.
    assert by_target["container"]["source_labels"] == ["__meta_docker_container_name"]
    assert by_target["container"]["regex"] == "/(.*)"
    # DOCKER_SD: Docker labels become __meta_docker_container_label_<sanitized name>.
    assert by_target["service"]["source_labels"] == ["__meta_docker_container_label_registry_mirror_service"]
    assert by_target["stack"]["source_labels"] == ["__meta_docker_container_label_registry_mirror_stack"]
    for target in ("service", "stack"):
        assert "regex" not in by_target[target]  # default (.*) and replacement $1: whole value


def test_container_regex_extracts_the_name_docker_reports() -> None:
    # Docker's container list names start with '/' (DOCKER_SD reads c.Names[0]).
    match = re.fullmatch("/(.*)", "/registry-mirror-dev-registry")
    assert match is not None and match.group(1) == "registry-mirror-dev-registry"


def test_loki_source_docker_reads_docker_api_with_relabel_rules(components: dict[str, Block]) -> None:
    source = _one(components, "loki.source.docker")
    attrs = source.attrs()
    assert attrs["host"] == "unix:///var/run/docker.sock", SOURCE_DOCKER_DOC
    assert attrs["targets"] == Ref("discovery.docker.stack.targets")
    assert attrs["relabel_rules"] == Ref("discovery.relabel.stack_logs.rules")
    assert attrs["forward_to"] == [Ref("loki.process.registry_json.receiver")]


def test_stage_docker_is_never_used_with_loki_source_docker(components: dict[str, Block]) -> None:
    # loki.source.docker reads through the Docker API; stage.docker parses Docker's json-file
    # lines ({"log":..., "stream":..., "time":...}, PROCESS_DOC), which never reach this pipeline.
    assert all(block.name != "stage.docker" for block in _walk(list(components.values())))


def _match(components: dict[str, Block], selector: str) -> Block:
    (match,) = [m for m in _one(components, "loki.process").blocks("stage.match") if m.attrs()["selector"] == selector]
    return match


def test_registry_json_is_parsed_only_on_the_registry_stream(components: dict[str, Block]) -> None:
    process = _one(components, "loki.process")
    assert process.attrs() == {"forward_to": [Ref("loki.write.loki.receiver")]}
    assert [m.attrs()["selector"] for m in process.blocks("stage.match")] == [
        '{service="registry"}', '{service=~"registry-front.*"}']
    match = _match(components, '{service="registry"}')
    assert set(match.attrs()) <= MATCH_ARGS
    assert [b.name for b in match.blocks()] == ["stage.json", "stage.labels", "stage.structured_metadata"]
    assert {b.name for b in match.blocks()} <= MATCH_STAGES


def _stage(components: dict[str, Block], name: str, selector: str = '{service="registry"}') -> dict[str, Any]:
    (stage,) = _match(components, selector).blocks(name)
    return stage.attrs()


# A line of the front's access log (configs/front.py log_format) recording a refused redirect,
# as Debian's nginx wrote it in tests/rehearsal/test_front_redirects.py (which also matches the
# regex against every line of real logs).
FRONT_REFUSED_LINE = (
    '{"time":"2026-12-08T01:25:02+00:00","method":"HEAD","uri":"/v2/library/hostile-ip-literal/blobs/'
    'sha256:8e157b487c76de3a0aa1f8be5c83dadd49879864e443435ac3b439dea941a8cb","status":502,"bytes_sent":150,'
    '"cache":"","upstream_status":"307","upstream_bytes":"298","upstream_addr":"127.0.0.1:45839",'
    '"request_time":0.003,"redirect":"127.0.0.1:33175","redirect_refused":"ip-literal"}'
)
FRONT = '{service=~"registry-front.*"}'


def test_a_fronts_refused_redirect_is_counted_with_its_reason_as_a_label(components: dict[str, Block]) -> None:
    match = _match(components, FRONT)
    assert set(match.attrs()) <= MATCH_ARGS
    assert [b.name for b in match.blocks()] == ["stage.regex", "stage.labels", "stage.metrics"]
    regex = _stage(components, "stage.regex", FRONT)
    assert set(regex) <= REGEX_ARGS, PROCESS_DOC
    # RE2 and Python agree on this expression: named groups (?P<name>), a class, a literal
    found = re.search(regex["expression"], FRONT_REFUSED_LINE)
    assert found is not None and found.groupdict() == {"redirect_refused": "ip-literal"}
    assert re.search(regex["expression"], FRONT_REFUSED_LINE.replace('"ip-literal"', '""')) is None
    assert _stage(components, "stage.labels", FRONT) == {"values": {"redirect_refused": ""}}
    (metrics,) = match.blocks("stage.metrics")
    assert {b.name for b in metrics.blocks()} <= METRICS_BLOCKS and not metrics.attrs(), PROCESS_DOC
    (counter,) = metrics.blocks("metric.counter")
    assert set(counter.attrs()) <= COUNTER_ARGS, PROCESS_DOC
    # PROCESS_DOC: without `value` or `match_all`, a line counts only when `source` was extracted,
    # which the regex does only for a non-empty reason
    assert {k: counter.attrs()[k] for k in ("name", "prefix", "source", "action")} == {
        "name": "front_redirects_refused_total", "prefix": "registry_mirror_", "source": "redirect_refused",
        "action": "inc"}
    assert "value" not in counter.attrs() and "match_all" not in counter.attrs()


@pytest.mark.parametrize(("service", "matched"), [("registry-front", True), ("registry-front-ghcr", True),
                                                  ("registry", False), ("registry-ghcr", False)])
def test_the_front_selector_matches_every_front_and_no_registry(service: str, matched: bool) -> None:
    value = re.fullmatch(r'\{service=~"(.*)"\}', FRONT)
    assert value is not None
    # LogQL's =~ is anchored at both ends, as fullmatch is
    assert bool(re.fullmatch(value.group(1), service)) is matched


def test_json_expressions_select_the_registry_fields(components: dict[str, Block]) -> None:
    stage = _stage(components, "stage.json")
    assert set(stage) <= JSON_ARGS
    expressions = stage["expressions"]
    line = json.loads(REGISTRY_LINE)
    extracted = {name: jmespath_search(expr, line) for name, expr in expressions.items()}
    assert extracted == {
        "level": "info",
        "method": "GET",
        "request_id": "3f6c1b9a-0d4e-4c4f-9a55-2b8e7f0e1c11",
        "status": 200,
    }, REGISTRY_LOG_FIELDS


def test_dotted_registry_keys_are_quoted_jmespath_identifiers(components: dict[str, Block]) -> None:
    expressions = _stage(components, "stage.json")["expressions"]
    line = json.loads(REGISTRY_LINE)
    for field in ("http.request.method", "http.request.id", "http.response.status"):
        # JMESPATH_SPEC: an unquoted a.b.c is a sub-expression over nested objects, so it
        # finds nothing in the registry's flat keys ...
        assert jmespath_search(field, line) is None
        # ... and the quoted identifier (a JSON string) is what the config must contain.
        assert json.dumps(field) in expressions.values()


def test_level_is_the_only_label_and_request_id_is_structured_metadata(components: dict[str, Block]) -> None:
    labels = _stage(components, "stage.labels")
    metadata = _stage(components, "stage.structured_metadata")
    assert set(labels) == {"values"} and set(metadata) == {"values"}, PROCESS_DOC
    assert labels["values"] == {"level": ""}  # "" = same name as the extracted value
    assert metadata["values"] == {"method": "", "request_id": "", "status": ""}
    extracted = set(_stage(components, "stage.json")["expressions"])
    assert set(labels["values"]) | set(metadata["values"]) <= extracted


def test_loki_write_pushes_to_loki_push_api(components: dict[str, Block]) -> None:
    write = _one(components, "loki.write")
    (endpoint,) = write.blocks("endpoint")
    assert set(endpoint.attrs()) <= ENDPOINT_ARGS
    assert endpoint.attrs() == {"url": "http://loki:3100/loki/api/v1/push"}, WRITE_DOC


# --- parameters, escaping, determinism --------------------------------------------------------


def test_parameters_reach_filter_and_push_url() -> None:
    blocks = {f"{b.name}.{b.label}": b for b in parse_alloy(render_alloy_config("proj", "prod", "https://logs:3100/x"))}
    (flt,) = _one(blocks, "discovery.docker").blocks("filter")
    assert sorted(flt.attrs()["values"]) == ["registry-mirror.project=proj", "registry-mirror.stack=prod"]
    (endpoint,) = _one(blocks, "loki.write").blocks("endpoint")
    assert endpoint.attrs()["url"] == "https://logs:3100/x"


def test_quotes_and_backslashes_in_values_are_escaped_exactly() -> None:
    stack = 'we"ird\\name\tx'
    blocks = parse_alloy(render_alloy_config("p", stack))
    docker = next(b for b in blocks if b.name == "discovery.docker")
    (flt,) = docker.blocks("filter")
    assert f"registry-mirror.stack={stack}" in flt.attrs()["values"]


@pytest.mark.parametrize(
    ("project", "stack", "url"), [("", "dev", "http://l"), ("p", "", "http://l"), ("p", "s", "loki")]
)
def test_missing_or_bad_values_are_refused(project: str, stack: str, url: str) -> None:
    with pytest.raises(ValueError):
        render_alloy_config(project, stack, url)


def test_rendering_is_deterministic() -> None:
    assert render_alloy_config("p", "dev") == render_alloy_config("p", "dev")
    assert render_alloy_config("p", "dev") != render_alloy_config("p", "prod")


# --- command and healthcheck ----------------------------------------------------------------


def test_alloy_command_runs_the_config_listening_on_all_interfaces() -> None:
    # RUN_DOC: `alloy run [<FLAG> ...] <PATH_NAME>`; the image's ENTRYPOINT is /bin/alloy and its
    # data directory /var/lib/alloy/data (ALLOY_DOCKERFILE).
    assert alloy_command("/etc/alloy/config.alloy") == [
        "run",
        "--server.http.listen-addr=0.0.0.0:12345",
        "--storage.path=/var/lib/alloy/data",
        "/etc/alloy/config.alloy",
    ]
    assert alloy_command("/x.alloy")[-1] == "/x.alloy"




def test_healthcheck_passes_on_ready_200_and_fails_otherwise(status_server: tuple[int, type[StatusHandler]]) -> None:
    bash = require_tool("bash")
    port, handler = status_server
    test = alloy_healthcheck(port)
    assert test[:3] == ["CMD", "bash", "-c"], ALLOY_DOCKERFILE  # Ubuntu image: bash, no curl/wget
    command = [bash, *test[2:]]
    assert subprocess.run(command, timeout=10, check=False).returncode == 0
    assert handler.paths == ["/-/ready"], HEALTH_DOC
    handler.status = 503  # HEALTH_DOC: /-/ready answers 503 until the config is loaded
    assert subprocess.run(command, timeout=10, check=False).returncode != 0


def test_healthcheck_fails_when_nothing_listens() -> None:
    bash = require_tool("bash")
    with http.server.HTTPServer(("127.0.0.1", 0), StatusHandler) as probe:
        free_port = probe.server_address[1]  # bound, then closed on exit: nothing listens after
    result = subprocess.run([bash, *alloy_healthcheck(free_port)[2:]], timeout=10, check=False, capture_output=True)
    assert result.returncode != 0
