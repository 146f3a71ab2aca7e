"""Issue 13 under mocks and as parsed files: the `mirrors` list, the router, the private
registry and the client configs (each parsed back by its own format's parser)."""

from __future__ import annotations

import json
import tomllib

import pytest
import yaml

import settings
from configs import clients, nginxconf, router
from rehearsal.fakes.program import evaluate

BASE = {"installTrust": "false", "hostname": "mirror.lan"}
THREE = json.dumps([{"upstream": "docker.io"}, {"upstream": "ghcr.io", "port": 6001},
                    {"upstream": "quay.io", "port": 6002}])


def problems(config: dict[str, str], **kwargs: object) -> list[str]:
    with pytest.raises(settings.SettingsError) as err:
        settings.parse(BASE | config, stack="dev", **kwargs)  # type: ignore[arg-type]
    return [line.strip() for line in str(err.value).splitlines()[1:]]


def test_without_mirrors_docker_hub_is_the_only_mirror_and_there_is_no_router():
    s = settings.parse(BASE, stack="dev")
    assert [m.upstream for m in s.mirrors] == ["docker.io"]
    assert s.mirrors[0].remote_url == "https://registry-1.docker.io"
    assert not s.routed and s.private_registry is None


def test_presets_default_their_remote_url_and_any_other_host_is_https_to_itself():
    entries = [{"upstream": u, "port": 6001 + i} for i, u in
               enumerate(["ghcr.io", "quay.io", "registry.k8s.io", "gcr.io", "registry.example.com:5000"])]
    s = settings.parse(BASE | {"mirrors": json.dumps(entries), "upstreamFront": "false"}, stack="dev")
    assert {m.upstream: (m.remote_url, m.instance) for m in s.mirrors[1:]} == {
        "ghcr.io": ("https://ghcr.io", "ghcr"), "quay.io": ("https://quay.io", "quay"),
        "registry.k8s.io": ("https://registry.k8s.io", "k8s"), "gcr.io": ("https://gcr.io", "gcr"),
        "registry.example.com:5000": ("https://registry.example.com:5000", "registry-example-com-5000"),
    }
    assert s.mirrors[0].upstream == "docker.io"  # always first, even when not listed


def test_two_entries_on_one_upstream_or_one_port_are_refused_one_line_each():
    lines = problems({"mirrors": json.dumps([{"upstream": "ghcr.io", "port": 6001},
                                             {"upstream": "GHCR.io", "port": 6002},
                                             {"upstream": "quay.io", "port": 6001}])})
    assert lines == [
        "registry-mirror:mirrors[1].upstream = 'ghcr.io' is invalid: mirrors[0] already mirrors it "
        "(one entry per upstream)",
        "registry-mirror:mirrors[2].port = 6001 is invalid: publishes host port 6001, which mirrors[1].port "
        "already uses",
    ]


@pytest.mark.parametrize(("first", "second", "whose"), [
    ("ghcr.io", "ghcr", "mirrors[0] ('ghcr.io')"),
    ("ghcr", "ghcr.io", "mirrors[0] ('ghcr')"),
    ("registry.k8s.io", "k8s", "mirrors[0] ('registry.k8s.io')"),
    ("a.b", "a-b", "mirrors[0] ('a.b')"),
    ("ghcr.io", "front-ghcr", "mirrors[0] ('ghcr.io')"),
    (None, "private", "the private registry"),
    (None, "router", "the router"),
    (None, "front", "Docker Hub's front"),
])
def test_entries_whose_names_collide_are_refused_in_one_line(first: str | None, second: str, whose: str):
    """Two resources with one URN stop the engine's run (mocks accept them) and two containers
    with one Docker name fail their create: such entries never reach the engine."""
    entries = ([{"upstream": first, "port": 6001}] if first else []) + [{"upstream": second, "port": 6002}]
    index = len(entries) - 1
    (line,) = problems({"mirrors": json.dumps(entries), "upstreamFront": "false"})
    assert line.startswith(f"registry-mirror:mirrors[{index}].upstream = {second!r} is invalid: its containers")
    assert line.endswith(f"would take the names of {whose}; mirror one of the two, or the other's host")


def test_every_accepted_stack_has_distinct_resource_and_docker_names():
    presets = ["ghcr.io", "quay.io", "gcr.io"]
    custom = ["registry.k8s.io", "a.b", "front-x", "routers"]  # no known token realm: "" (none)
    entries = [{"upstream": u, "port": 6001 + i} for i, u in enumerate(presets)] + [
        {"upstream": u, "port": 6010 + i, "tokenRealm": ""} for i, u in enumerate(custom)]
    program = evaluate(BASE | {"mirrors": json.dumps(entries), "privateRegistry": "true",
                               "registryBindAddress": "127.0.0.1"})
    urns = [r.urn for r in program.resources]
    assert len(urns) == len(set(urns))
    names = [r.inputs["name"] for r in program.of_type("docker:index/container:Container")]
    # a registry and a front per mirror, the private registry, the router, monitoring
    assert len(names) == len(set(names)) and len(names) > 2 * (len(entries) + 1)


def test_an_entry_on_the_registry_port_is_refused():
    assert problems({"mirrors": json.dumps([{"upstream": "ghcr.io", "port": 6000}])}) == [
        "registry-mirror:mirrors[1].port = 6000 is invalid: publishes host port 6000, which registryPort already uses"]


def test_docker_hub_credentials_in_both_the_entry_and_the_legacy_keys_say_which_to_keep():
    lines = problems({"registryBindAddress": "127.0.0.1", "dockerHubUsername": "me", "dockerHubPassword": "pw",
                      "mirrors": json.dumps([{"upstream": "docker.io", "username": "you", "password": "x"}])},
                     secret_keys=["dockerHubPassword", "mirrors"])
    assert lines == [
        "registry-mirror:mirrors[0].username and registry-mirror:dockerHubUsername both describe Docker Hub's "
        "mirror: keep one (remove mirrors[0].username or dockerHubUsername)",
        "registry-mirror:mirrors[0].password and registry-mirror:dockerHubPassword both describe Docker Hub's "
        "mirror: keep one (remove mirrors[0].password or dockerHubPassword)",
    ]


def test_a_docker_io_entry_alone_describes_the_docker_hub_mirror():
    s = settings.parse(BASE | {"mirrors": json.dumps([{"upstream": "docker.io", "port": 7000, "ttl": "24h"}])},
                       stack="dev")
    assert (s.registry.port, s.registry.proxy_ttl) == (7000, "24h")
    assert not s.routed


def test_entry_problems_are_one_line_each_and_passwords_are_never_shown():
    lines = problems({"mirrors": json.dumps([
        {"upstream": "ghcr.io", "bogus": 1, "port": 70000},
        {"upstream": "quay.io", "port": 6002, "username": "bot", "password": "hunter2-secret"},
        {"upstream": "a b"},
        {"upstream": "gcr.io"},
    ])})
    assert lines == [
        "registry-mirror:mirrors[0].bogus is not a known field: use upstream, remoteUrl, port, username, password, "
        "ttl, tokenRealm, tokenService, redirectHosts, cacheMaxSize, cacheHighWatermark, cacheLowWatermark, "
        "cacheMinAge, cachePin",
        "registry-mirror:mirrors[0].port = 70000 is invalid: must be a whole number from 1 to 65535",
        "registry-mirror:mirrors[1].password must be set as a secret: pulumi config set --path --secret "
        "'mirrors[1].password' <value>",
        "registry-mirror:mirrors[2].upstream = 'a b' is invalid: must be a registry host as image names write it: "
        "docker.io, ghcr.io, quay.io, registry.k8s.io, gcr.io or another host[:port]",
        "registry-mirror:mirrors[3].port = unset is invalid: every upstream but docker.io needs its own host port",
    ]
    assert not any("hunter2" in line for line in lines)


def test_with_the_upstream_front_an_upstream_of_unknown_token_realm_is_refused_in_one_line():
    entries = json.dumps([{"upstream": "registry.k8s.io", "port": 6001},
                          {"upstream": "registry.example.com", "port": 6002, "tokenRealm": ""},
                          {"upstream": "ghcr.io", "port": 6003}])
    assert problems({"mirrors": entries}) == [
        "registry-mirror:mirrors: the upstream front of registry.k8s.io needs its token realm: set tokenRealm and "
        "tokenService of its entry (from its /v2/ challenge), tokenRealm '' for an upstream without token auth, "
        "or upstreamFront false"]
    ok = settings.parse(BASE | {"mirrors": entries, "upstreamFront": "false"}, stack="dev")
    assert [m.token_realm for m in ok.mirrors] == [
        "https://auth.docker.io/token", None, "", "https://ghcr.io/token"]


def test_a_docker_io_entry_with_another_remote_url_does_not_inherit_docker_hubs_realm():
    entries = json.dumps([{"upstream": "docker.io", "remoteUrl": "https://mirror.gcr.io"}])
    assert problems({"mirrors": entries})[0].startswith(
        "registry-mirror:mirrors: the upstream front of docker.io needs its token realm")


def test_a_private_registry_open_to_the_network_needs_client_authentication():
    assert problems({"privateRegistry": "true"}) == [
        "registry-mirror:privateRegistry = 'true' is invalid: needs registryUsers or requireClientCert while "
        "registryBindAddress is 0.0.0.0 (anyone reaching the port could push and delete), or registryBindAddress "
        "127.0.0.1"]
    assert settings.parse(BASE | {"privateRegistry": "true", "requireClientCert": "true"},
                          stack="dev").private_registry is not None


# --- the router's nginx.conf -----------------------------------------------------------------

ROUTES = [router.Route("docker.io", "registry:5000"), router.Route("ghcr.io", "registry-ghcr:5000"),
          router.Route("reg.example:5000", "registry-reg:5000")]


def _picks(nodes: list[nginxconf.Node]) -> dict[str, str]:
    http = nginxconf.find(nodes, "http")[0]
    server = nginxconf.find(http.children, "server")[0]  # type: ignore[union-attr]
    picks = {}
    for node in nginxconf.find(server.children, "if"):  # type: ignore[union-attr]
        assert isinstance(node, nginxconf.Block) and node.args[:2] == ("($arg_ns", "=")
        ns = " ".join(node.args[2:]).removesuffix(")").strip()
        picks[ns] = node.children[0].args[1]  # type: ignore[union-attr]
    return picks


def test_the_router_picks_each_mirror_by_the_exact_ns_and_docker_hub_without_one():
    assert _picks(router.router_nodes(ROUTES)) == {
        "": "registry:5000", "docker.io": "registry:5000", "ghcr.io": "registry-ghcr:5000",
        "reg.example:5000": "registry-reg:5000", "reg.example%3A5000": "registry-reg:5000",
    }


def test_the_router_resolves_each_mirror_per_request_through_dockers_dns():
    text = router.render_router_config(ROUTES)
    assert "resolver 127.0.0.11 valid=10s ipv6=off;" in text
    assert "proxy_pass https://$mirror;" in text and "upstream " not in text


def test_the_router_enforces_client_certificates_only_when_asked():
    text = router.render_router_config(ROUTES)
    assert "ssl_verify_client" not in text and "proxy_ssl_certificate " not in text
    text = router.render_router_config(ROUTES, require_client_cert=True, backend_client_cert=True)
    assert "ssl_verify_client on;" in text and "proxy_ssl_certificate /etc/nginx/certs/client.crt;" in text


def test_the_router_refuses_a_route_list_that_does_not_start_with_docker_hub():
    with pytest.raises(ValueError):
        router.router_nodes(ROUTES[1:])


# --- the program -------------------------------------------------------------------------------


def test_a_stack_with_three_upstreams_and_a_private_registry_has_a_mirror_each_and_one_router():
    ev = evaluate(BASE | {"mirrors": THREE, "privateRegistry": "true", "requireClientCert": "true"})
    containers = {c.name: c.inputs for c in ev.of_type("docker:index/container:Container")}
    ports = {name: [p["external"] for p in inputs.get("ports", [])] for name, inputs in containers.items()}
    assert ports["registry"] == [] and ports["registry-router"] == [6000]
    assert ports["registry-ghcr"] == [6001] and ports["registry-quay"] == [6002]
    assert ports["registry-private"] == [6100]
    volumes = {v.get("volumeName") for c in containers.values() for v in c.get("volumes", [])}
    assert {"registry-mirror-dev-registry-data", "registry-mirror-dev-registry-ghcr-data",
            "registry-mirror-dev-registry-quay-data", "registry-mirror-dev-registry-private-data"} <= volumes
    configs = {name: yaml.safe_load(ev.uploads(name)["/etc/distribution/config.yml"])
               for name in ("registry", "registry-ghcr", "registry-quay", "registry-private")}
    # each mirror's upstream is its front, which forwards to that upstream; the private
    # registry has neither proxy nor front
    assert {n: c.get("proxy", {}).get("remoteurl") for n, c in configs.items()} == {
        "registry": "http://registry-front:8080", "registry-ghcr": "http://registry-front-ghcr:8080",
        "registry-quay": "http://registry-front-quay:8080", "registry-private": None}
    for front, upstream, realm in (("registry-front-ghcr", "https://ghcr.io", "https://ghcr.io/token"),
                                   ("registry-front-quay", "https://quay.io", "https://quay.io/v2/auth")):
        conf = ev.uploads(front)["/etc/nginx/nginx.conf"]
        assert upstream in conf and realm in conf, front
    assert "registry-front-private" not in containers
    conf = ev.uploads("registry-router")["/etc/nginx/nginx.conf"]
    for backend in ("registry:5000", "registry-ghcr:5000", "registry-quay:5000"):
        assert f"set $mirror {backend};" in conf
    assert "registry-private" not in conf
    assert ev.outputs["mirrorUrls"] == {"docker.io": "https://mirror.lan:6000", "ghcr.io": "https://mirror.lan:6001",
                                        "quay.io": "https://mirror.lan:6002"}
    assert ev.outputs["privateRegistryUrl"] == "https://mirror.lan:6100"
    docker = ev.outputs["clientConfigs"]["docker"]
    assert {p.split("/")[4] for p in docker if p.startswith("/etc/docker/certs.d/")} == {
        "mirror.lan:6000", "mirror.lan:6001", "mirror.lan:6002", "mirror.lan:6100"}


# --- client configs, parsed back -----------------------------------------------------------


def _configs(**kwargs: object) -> dict[str, dict[str, str]]:
    options = {"mirror_host": "mirror.lan:6000", "upstreams": [("docker.io", "https://registry-1.docker.io"),
                                                                ("ghcr.io", "https://ghcr.io")],
               "ca_pem": "CA PEM", "hostname": "mirror.lan"} | kwargs
    return clients.client_configs(**options)  # type: ignore[arg-type]


def test_containerd_gets_one_hosts_toml_per_upstream_with_its_ca_beside_it():
    files = _configs()["containerd"]
    for upstream, server in (("docker.io", "https://registry-1.docker.io"), ("ghcr.io", "https://ghcr.io")):
        directory = f"/etc/containerd/certs.d/{upstream}"
        hosts = tomllib.loads(files[f"{directory}/hosts.toml"])
        assert hosts == {"server": server, "host": {"https://mirror.lan:6000": {
            "capabilities": ["pull", "resolve"], "ca": f"{directory}/ca.crt"}}}
        assert files[f"{directory}/ca.crt"] == "CA PEM"
    registry = {"registry": {"config_path": "/etc/containerd/certs.d"}}
    assert tomllib.loads(files[clients.CONTAINERD_1_CONFIG]) == {
        "version": 2, "plugins": {"io.containerd.grpc.v1.cri": registry}}
    assert tomllib.loads(files[clients.CONTAINERD_2_CONFIG]) == {
        "version": 3, "plugins": {"io.containerd.cri.v1.images": registry}}


def test_with_client_certificates_each_client_kind_carries_the_pair():
    configs = _configs(client_cert_pem="CLIENT CHAIN", registry_users=True)
    hosts = tomllib.loads(configs["containerd"]["/etc/containerd/certs.d/ghcr.io/hosts.toml"])
    assert hosts["host"]["https://mirror.lan:6000"]["client"] == [
        ["/etc/containerd/certs.d/ghcr.io/client.crt", "/etc/containerd/certs.d/ghcr.io/client.key"]]
    k3s = yaml.safe_load(configs["k3s"][clients.K3S_REGISTRIES])
    assert k3s == {
        "mirrors": {"docker.io": {"endpoint": ["https://mirror.lan:6000"]},
                    "ghcr.io": {"endpoint": ["https://mirror.lan:6000"]}},
        "configs": {"mirror.lan:6000": {
            "tls": {"ca_file": clients.K3S_CA, "cert_file": clients.K3S_CLIENT_CERT,
                    "key_file": clients.K3S_CLIENT_KEY},
            "auth": {"username": "<user>", "password": "<password>"}}},
    }
    kind = yaml.safe_load(configs["kind"][clients.KIND_CONFIG])
    assert kind["nodes"][0]["extraMounts"] == [
        {"hostPath": clients.KIND_CERTS_DIR, "containerPath": "/etc/containerd/certs.d", "readOnly": True}]
    assert configs["kind"][f"{clients.KIND_CERTS_DIR}/ghcr.io/client.crt"] == "CLIENT CHAIN"
    assert configs["docker"]["/etc/docker/certs.d/mirror.lan:6000/client.cert"] == "CLIENT CHAIN"


def test_kinds_hosts_toml_name_the_paths_inside_the_node():
    configs = _configs()
    hosts = tomllib.loads(configs["kind"][f"{clients.KIND_CERTS_DIR}/docker.io/hosts.toml"])
    assert hosts["host"]["https://mirror.lan:6000"]["ca"] == "/etc/containerd/certs.d/docker.io/ca.crt"
    kind = yaml.safe_load(configs["kind"][clients.KIND_CONFIG])
    patch = tomllib.loads(kind["containerdConfigPatches"][0])
    assert patch == {"plugins": {"io.containerd.grpc.v1.cri": {"registry": {"config_path": "/etc/containerd/certs.d"}}}}


def test_kind_gets_no_files_for_a_localhost_mirror():
    assert _configs(hostname="localhost", mirror_host="localhost:6000")["kind"] == {}


def test_docker_gets_the_daemon_json_for_docker_hub_and_the_ca_in_certs_d():
    docker = _configs()["docker"]
    assert json.loads(docker["/etc/docker/daemon.json"]) == {"registry-mirrors": ["https://mirror.lan:6000"]}
    assert docker["/etc/docker/certs.d/mirror.lan:6000/ca.crt"] == "CA PEM"


def test_a_mirror_password_set_with_path_secret_reaches_its_container_only_as_a_secret():
    mirrors = json.dumps([{"upstream": "quay.io", "port": 6002, "username": "bot", "password": "quay-token-1"}])
    ev = evaluate(BASE | {"registryBindAddress": "127.0.0.1"}, secrets={"mirrors": mirrors})
    quay = ev.container("registry-quay")
    envs = quay.inputs["envs"]
    assert "REGISTRY_PROXY_PASSWORD=quay-token-1" in envs and "REGISTRY_PROXY_USERNAME=bot" in envs
    assert any(path.startswith("envs") for path in quay.secret_paths())
    assert "envs" in quay.options.get("additionalSecretOutputs", [])
    # Docker Hub's mirror got none of it
    assert not any("PROXY" in e for e in ev.container("registry").inputs["envs"])


def test_the_certificate_names_every_alias_the_blackbox_exporter_probes():
    ev = evaluate(BASE | {"mirrors": THREE, "privateRegistry": "true", "requireClientCert": "true"})
    cert = next(r for r in ev.of_type("tls:index/locallySignedCert:LocallySignedCert") if "server" in r.name)
    request = next(r for r in ev.of_type("tls:index/certRequest:CertRequest") if "server" in r.name)
    names = request.inputs["dnsNames"]
    prom = yaml.safe_load(ev.uploads("prometheus")["/etc/prometheus/prometheus.yml"])
    probes = [t for c in next(j for j in prom["scrape_configs"] if j["job_name"] == "blackbox")["static_configs"]
              for t in c["targets"]]
    assert probes and all(url.split("/")[2].split(":")[0] in names for url in probes), (probes, names)
    assert router.ALIAS in names and cert is not None


def test_the_default_stack_certificate_keeps_its_names():
    ev = evaluate(BASE)
    request = next(r for r in ev.of_type("tls:index/certRequest:CertRequest") if "server" in r.name)
    assert request.inputs["dnsNames"] == ["mirror.lan", "localhost", "registry"]


def test_with_every_upstream_and_the_private_registry_only_tls_apis_and_uis_are_published():
    ev = evaluate(BASE | {"mirrors": THREE, "privateRegistry": "true", "requireClientCert": "true"},
                  secrets={"registryUsers": json.dumps({"alice": "a-long-password-1"})})
    never = {5001, 8888, 13133, 4317, 4318, 9115}
    published = {c.name: {p["internal"] for p in c.inputs.get("ports", [])}
                 for c in ev.of_type("docker:index/container:Container")}
    assert all(not ports & never for ports in published.values()), published
    assert {n: p for n, p in published.items() if n.startswith("registry")} == {
        "registry": set(), "registry-router": {5000}, "registry-ghcr": {5000}, "registry-quay": {5000},
        "registry-private": {5000}, "registry-front": set(), "registry-front-ghcr": set(),
        "registry-front-quay": set()}
    # every registry, the private one included, asks for a user and a client certificate
    for name in ("registry", "registry-ghcr", "registry-quay", "registry-private"):
        config = yaml.safe_load(ev.uploads(name)["/etc/distribution/config.yml"])
        assert "htpasswd" in config["auth"] and config["http"]["tls"]["clientcas"], name


def test_the_router_is_probed_like_a_mirror_and_labelled_router():
    ev = evaluate(BASE | {"mirrors": THREE})
    prom = yaml.safe_load(ev.uploads("prometheus")["/etc/prometheus/prometheus.yml"])
    blackbox = next(j for j in prom["scrape_configs"] if j["job_name"] == "blackbox")
    labels = {c["targets"][0]: c["labels"]["upstream"] for c in blackbox["static_configs"]}
    assert labels == {"https://registry:5000/v2/": "docker.io", "https://registry-ghcr:5000/v2/": "ghcr.io",
                      "https://registry-quay:5000/v2/": "quay.io", "https://registry-router:5000/v2/": "router"}


def test_install_containerd_config_needs_the_trust_step():
    assert problems({"installContainerdConfig": "true"}) == [
        "registry-mirror:installContainerdConfig = 'true' is invalid: needs installTrust: true (the trust step is off)"]


def test_the_trust_command_installs_containerd_files_only_when_asked():
    on = evaluate({"hostname": "mirror.lan", "installContainerdConfig": "true", "mirrors": THREE})
    off = evaluate({"hostname": "mirror.lan", "mirrors": THREE})
    create_on = on.of_type("command:local:Command")[0].inputs["create"]
    create_off = off.of_type("command:local:Command")[0].inputs["create"]
    assert "T_CTRD_HOSTS='docker.io ghcr.io quay.io'" in create_on
    assert "T_CTRD" not in create_off


def test_the_trust_command_and_its_manual_steps_trust_every_tls_port_the_stack_publishes():
    """Issue 20 finding 4: the one URL, each further mirror's own port and the private
    registry's, in both scripts and in `trustSteps`."""
    ev = evaluate({"hostname": "mirror.lan", "mirrors": THREE, "privateRegistry": "true", "requireClientCert": "true"})
    command = ev.of_type("command:local:Command")[0].inputs
    hosts = "T_HOSTS='mirror.lan:6000 mirror.lan:6001 mirror.lan:6002 mirror.lan:6100'"
    assert hosts in command["create"] and hosts in command["delete"]
    for port in (6000, 6001, 6002, 6100):
        assert f"cp ca.crt /etc/docker/certs.d/mirror.lan:{port}/ca.crt" in ev.outputs["trustSteps"]
        assert f"/etc/docker/certs.d/mirror.lan:{port}/client.key" in ev.outputs["trustSteps"]
    plain = evaluate({"hostname": "mirror.lan"}).of_type("command:local:Command")[0].inputs
    assert "T_HOSTS='mirror.lan:6000'" in plain["create"]
