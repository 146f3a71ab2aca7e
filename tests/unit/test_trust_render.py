"""Unit tests of the host trust renderer (trust/render.py): no binaries run here.

What runs, and how, is proven in tests/rehearsal/test_trust_scripts.py with /bin/sh.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from settings import KEYS
from trust import daemon_json
from trust import render as trust_render
from trust.render import (
    TemplateError,
    TrustParams,
    package_text,
    render_install_script,
    render_remove_script,
    sh_quote,
)

PEM = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBfTCCASOgAwIBAgIUQk1vY2tDZXJ0aWZpY2F0ZUZvclRlc3RzMAoGCCqGSM49\n"
    "-----END CERTIFICATE-----\n"
)

Render = Callable[[TrustParams], str]
RENDERERS: tuple[Render, ...] = (render_install_script, render_remove_script)


def make(**overrides: object) -> TrustParams:
    values: dict[str, object] = {
        "registry_host": "mirror.test:6000",
        "mirror_url": "https://mirror.test:6000",
        "docker_certs_dir": "/etc/docker/certs.d",
        "install_system_trust": True,
        "configure_docker_mirror": True,
        "docker_daemon_json_path": "/etc/docker/daemon.json",
        "use_sudo": True,
        "instance": "registry-mirror-dev",
    }
    values.update(overrides)
    return TrustParams(**values)  # type: ignore[arg-type]


def assignments(script: str) -> dict[str, str]:
    """The T_*='...' lines, parsed the way sh parses them."""
    out = {}
    for line in script.splitlines():
        if re.match(r"^T_[A-Z_]+='", line):
            (word,) = shlex.split(line)
            name, _, value = word.partition("=")
            out[name] = value
    return out


@pytest.mark.parametrize("render", RENDERERS)
def test_rendering_is_deterministic_and_keyed_by_every_parameter(render: Render) -> None:
    p = make()
    assert render(p) == render(make())
    for field, other in [
        ("registry_host", "mirror.test:7000"),
        ("docker_certs_dir", "/root/.docker/certs.d"),
        ("docker_daemon_json_path", "/srv/daemon.json"),
        ("instance", "registry-mirror-prod"),
        ("use_sudo", False),
        ("system_ca_dir", "/srv/ca"),
        ("client_cert", True),
        ("other_hosts", ("mirror.test:6001",)),
    ]:
        changed = dataclasses.replace(p, **{field: other})  # type: ignore[arg-type]
        assert render(changed) != render(p), field


def test_default_paths_follow_docker_and_debian_layouts() -> None:
    values = assignments(render_install_script(make()))
    assert values["T_CERTS_DIR"] == "/etc/docker/certs.d"
    assert values["T_HOSTS"] == "mirror.test:6000"
    assert values["T_CA_FILE"] == "/etc/docker/certs.d/mirror.test:6000/ca.crt"
    assert values["T_KEEP"] == ".registry-mirror-dev.bak"
    assert values["T_RECORD"] == ".registry-mirror-dev.installed"
    assert values["T_SYS_CA_FILE"] == "/usr/local/share/ca-certificates/registry-mirror-dev.crt"
    assert values["T_DAEMON_BAK"] == "/etc/docker/daemon.json.registry-mirror-dev.bak"
    assert values["T_KEYCHAIN"] == "/Library/Keychains/System.keychain"


def test_certificate_material_cannot_reach_the_script_text() -> None:
    # No parameter is meant for certificate material ...
    assert {f.name for f in dataclasses.fields(TrustParams)} == {
        "registry_host", "mirror_url", "docker_certs_dir", "install_system_trust",
        "configure_docker_mirror", "docker_daemon_json_path", "use_sudo", "instance",
        "system_ca_dir", "client_cert", "containerd_upstreams", "containerd_certs_dir", "other_hosts",
    }
    # ... every string one refuses a PEM (multi-line), so none can carry one into the text ...
    for field in ("registry_host", "mirror_url", "docker_certs_dir",
                  "docker_daemon_json_path", "instance", "system_ca_dir"):
        with pytest.raises(ValueError):
            render_install_script(make(**{field: "/x" + PEM}))
    for upstreams in ((("docker.io", "https://x" + PEM),), (("docker.io\n" + PEM, "https://ghcr.io"),),
                      (("ghcr.io", 'https://ghcr.io/"x'),), (("a b", "https://ghcr.io"),)):
        with pytest.raises(ValueError):
            render_install_script(make(containerd_upstreams=upstreams))
    with pytest.raises(ValueError):
        render_install_script(make(containerd_upstreams=(("ghcr.io", "https://ghcr.io"),),
                                   containerd_certs_dir="/x" + PEM))
    for render in RENDERERS:
        text = render(make())
        assert not re.search(r"^[A-Za-z0-9+/]{40,}={0,2}$", text, re.M)  # no base64 body line
    # ... and the install takes the CA (and the client key) from stdin, a bare `cat` into its
    # temp dir; the remove never reads stdin.
    stdin_cat = re.compile(r'^\s*cat\s*(>\s*"[^"]*")?\s*$', re.M)  # no operand, no heredoc
    for client in (False, True):
        assert re.search(r'^cat >"\$T_TMP/stdin"$', render_install_script(make(client_cert=client)), re.M)
        assert not stdin_cat.search(render_remove_script(make(client_cert=client)))


@pytest.mark.parametrize(
    "path",
    ["/Users/ann/Library/Group Containers/certs.d", "/Users/o'brien/.docker/certs.d",
     "/tmp/$HOME/`id`/certs.d"],
)
def test_paths_with_spaces_quotes_and_dollars_reach_sh_verbatim(path: str) -> None:
    values = assignments(render_install_script(make(docker_certs_dir=path)))
    assert values["T_CERTS_DIR"] == path
    assert values["T_CA_FILE"] == f"{path}/mirror.test:6000/ca.crt"


@pytest.mark.parametrize(
    "override",
    [
        {"docker_certs_dir": "relative/certs.d"},
        {"docker_daemon_json_path": "~/daemon.json"},
        {"system_ca_dir": "/usr/local/share/ca\ncertificates"},
        {"registry_host": "mirror.test"},
        {"registry_host": "mirror.test:6000/x"},
        {"mirror_url": "ftp://mirror.test:6000"},
        {"mirror_url": "https://mirror.test:6000/v2/"},
        {"instance": "../escape"},
        {"instance": "has space"},
        {"other_hosts": ("mirror.test:6001 other.test:6002",)},
        {"other_hosts": ("mirror.test",)},
    ],
)
def test_invalid_parameters_are_rejected(override: dict[str, object]) -> None:
    for render in RENDERERS:
        with pytest.raises(ValueError):
            render(make(**override))


@pytest.mark.parametrize("system,mirror", list(itertools.product([False, True], repeat=2)))
def test_disabled_features_are_absent_from_both_scripts(system: bool, mirror: bool) -> None:
    p = make(install_system_trust=system, configure_docker_mirror=mirror)
    for render in RENDERERS:
        text = render(p)
        assert ("update-ca-certificates" in text) is system
        assert ("security " in text) is system
        assert ("daemon.json" in text) is mirror
        assert ("python3" in text) is mirror


def test_client_switch_adds_docker_client_files_with_a_0600_key_to_both_scripts() -> None:
    on, off = make(client_cert=True), make(client_cert=False)
    for render in RENDERERS:
        assert "T_FILES='ca.crt client.cert client.key'" in render(on)
        assert "T_FILES=ca.crt\n" in render(off)
        assert not re.search(r"^ *client\.key\)$", render(off), re.M)  # no client key is written
    install = render_install_script(on)
    assert 'install -m 0600 "$T_TMP/client.key" "$T_F"' in install
    assert 'install -m 0644 "$T_TMP/client.cert" "$T_F"' in install


def test_every_published_host_is_listed_once_for_both_scripts() -> None:
    p = make(other_hosts=("mirror.test:6001", "mirror.test:6000", "mirror.test:6100"))
    for render in RENDERERS:
        assert assignments(render(p))["T_HOSTS"] == "mirror.test:6000 mirror.test:6001 mirror.test:6100"


def test_the_header_names_the_package_the_scripts_are_rendered_from() -> None:
    for render in RENDERERS:
        first = render(make()).splitlines()[0]
        assert first.endswith("for mirror.test:6000 (rendered from trust/ by trust/render.py).")
        assert "configs/trust.py" not in render(make())


def test_without_use_sudo_no_command_runs_through_sudo() -> None:
    for render in RENDERERS:
        with_sudo, without = render(make(use_sudo=True)), render(make(use_sudo=False))
        assert re.search(r'^\s*sudo -n "\$@"', with_sudo, re.M)
        assert re.search(r"^\s*sudo -n true", with_sudo, re.M)
        commands = [ln for ln in without.splitlines() if not ln.lstrip().startswith("#")]
        assert not [ln for ln in commands if re.match(r"^\s*sudo\b", ln)]
        assert "registry-mirror:trustUseSudo true" in without



# --------------------------------------------------------------------------- the templates


def every_variant() -> list[tuple[str, str]]:
    out = []
    for system, mirror, sudo, client in itertools.product([False, True], repeat=4):
        p = make(install_system_trust=system, configure_docker_mirror=mirror, use_sudo=sudo, client_cert=client)
        name = f"system={system} mirror={mirror} sudo={sudo} client={client}"
        out += [(f"{r.__name__} {name}", r(p)) for r in RENDERERS]
    return out


def test_rendered_scripts_keep_no_directive_placeholder_or_shellcheck_comment() -> None:
    variants = every_variant()
    assert len(variants) == 32
    for name, text in variants:
        assert "#@" not in text, name
        assert not re.search(r"@T_[A-Z_]+@", text), name
        assert not re.search(r"^\s*# shellcheck ", text, re.M), name
        assert text.startswith("# registry-mirror: ") and text.endswith("\n") and not text.endswith("\n\n"), name


def test_the_heredoc_holds_exactly_the_merger_module_that_is_tested_directly() -> None:
    module = Path(daemon_json.__file__).read_text(encoding="utf-8")
    for render in RENDERERS:
        text = render(make(configure_docker_mirror=True))
        body = text.split("<<'TRUST_PY'\n", 1)[1].split("\nTRUST_PY\n", 1)[0] + "\n"
        assert body == module


def test_every_config_key_a_script_names_is_a_setting() -> None:
    text = "".join(package_text(name) for name in ("common.sh", "install.sh", "remove.sh"))
    named = set(re.findall(r"registry-mirror:([A-Za-z]+)", text))
    assert named == {"trustUseSudo", "installSystemTrust", "configureDockerMirror", "installContainerdConfig"}
    assert named <= set(KEYS)


@pytest.mark.parametrize(
    "value", ["", "plain", "/etc/docker/certs.d/h:1", "it's", "a b", "$HOME", "`id`", "b\u00e4r", "'", "\\", '"']
)
def test_values_are_shlex_quoted_and_always_inside_single_quotes(value: str) -> None:
    quoted = sh_quote(value)
    assert quoted.startswith("'") and quoted.endswith("'")
    assert shlex.split(f"T_X={quoted}") == [f"T_X={value}"]
    if shlex.quote(value).startswith("'"):
        assert quoted == shlex.quote(value)


def render_fake(monkeypatch: pytest.MonkeyPatch, template: str, program: str = "x = 1\n", **overrides: object) -> str:
    files = {"t.sh": template, "daemon_json.py": program}
    monkeypatch.setattr(trust_render, "package_text", files.__getitem__)
    return trust_render.render("t.sh", make(**overrides))


def test_switch_blocks_keep_one_branch_and_values_blocks_fill_only_their_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    template = (
        "# for @T_HOST@\n#@ values\nT_HOST=\n#@ if mirror\nT_DAEMON_JSON=\n#@ end\n#@ end\n"
        "#@ if sudo\nA\n#@ else\nB\n#@ end\n#@ file-only\nC\n#@ end\n"
    )
    assert render_fake(monkeypatch, template, configure_docker_mirror=True, use_sudo=True) == (
        "# for mirror.test:6000\nT_HOST='mirror.test:6000'\nT_DAEMON_JSON='/etc/docker/daemon.json'\nA\n"
    )
    assert render_fake(monkeypatch, template, configure_docker_mirror=False, use_sudo=False) == (
        "# for mirror.test:6000\nT_HOST='mirror.test:6000'\nB\n"
    )
    assert render_fake(monkeypatch, "cat <<'END'\n#@ program\nEND\n") == "cat <<'END'\nx = 1\nEND\n"


@pytest.mark.parametrize(
    "template,problem",
    [
        ("#@ if nosuch\n#@ end\n", "unknown switch"),
        ("#@ if sudo\nx\n", "never ended"),
        ("#@ end\n", "without a block"),
        ("#@ else\n", "without its #@ if"),
        ("#@ values\necho hi\n#@ end\n", "only NAME= lines"),
        ("#@ values\nT_NOPE=\n#@ end\n", "no value is rendered for T_NOPE"),
        ("echo @T_HOST@\n", "only in comments"),
        ("# @T_NOPE@\n", "no value is rendered for @T_NOPE@"),
        ("#@ program\n", "must follow"),
        ("#@ frobnicate\n", "unknown directive"),
        ("#@if sudo\n", "not a directive"),
    ],
)
def test_a_malformed_template_is_refused_naming_its_line(
    monkeypatch: pytest.MonkeyPatch, template: str, problem: str
) -> None:
    with pytest.raises(TemplateError, match=re.escape(problem)):
        render_fake(monkeypatch, template)


def test_a_merger_line_equal_to_the_heredoc_word_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # sh would end the heredoc there and run the rest of the program as shell commands
    with pytest.raises(TemplateError, match="cannot be the body"):
        render_fake(monkeypatch, "cat <<'END'\n#@ program\nEND\n", program="x = 1\nEND\n")
