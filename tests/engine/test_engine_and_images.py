"""The engine itself (rehearsal/engine.py) and the stand-in images (rehearsal/images.py)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from rehearsal import images
from rehearsal.engine import ADDRESS, Engine, running_engine
from rehearsal.provider import go_duration_ns, upload_archive
from tests.engine.conftest import HOSTNAME, engine_or_skip

# What a private engine could write on the host if the namespaces leaked.
HOST_PATHS = ("/etc/docker", "/etc/containerd", "/run/netns", "/run/docker", "/run/containerd",
              "/opt/containerd", "/var/lib/docker", "/var/lib/containerd")


def _tree(path: str) -> list[str]:
    found = []
    for root, dirs, files in os.walk(path):
        found += [os.path.join(root, name) for name in dirs + files]
    return sorted(found) if os.path.exists(path) else ["<absent>"]


def test_engine_leaves_nothing_on_the_host(tmp_path: Path) -> None:
    """An engine that writes a certs.d entry, runs a container, publishes a port and then
    stops leaves the host's Docker and containerd paths as they were, and no process."""
    engine_or_skip()
    before = {path: _tree(path) for path in HOST_PATHS}
    with running_engine(tmp_path / "engine", hosts={HOSTNAME: ADDRESS}) as engine:
        engine.run(["mkdir", "-p", f"/etc/docker/certs.d/{HOSTNAME}:6000"])
        engine.run(["sh", "-c", f"echo x > '/etc/docker/certs.d/{HOSTNAME}:6000/ca.crt'"])
        assert (engine.certs_d / f"{HOSTNAME}:6000" / "ca.crt").read_text() == "x\n"
        stand_in = images.StandIn("rehearsal/leak:1", tuple(images._base()), entrypoint=("/bin/sh",))
        images.build(engine, stand_in, tmp_path / "img")
        engine.api("POST", "/networks/create", {"Name": "leak-net", "Driver": "bridge"})
        engine.docker("run", "-d", "--name", "leak-test", "--network", "leak-net", "-p", "127.0.0.1:7000:7000",
                      "rehearsal/leak:1", "-c", "sleep 600")
        holder = engine.holder.pid
        pids_in_namespace = _pids_in_net_namespace(holder)
        assert len(pids_in_namespace) > 3  # dockerd, containerd, shim, sleep, docker-proxy
        problems = engine.stop()
    assert problems == []
    assert {path: _tree(path) for path in HOST_PATHS} == before
    assert _pids_in_net_namespace(holder) == []


def _pids_in_net_namespace(holder: int) -> list[int]:
    try:
        ours = os.readlink(f"/proc/{holder}/ns/net")
    except OSError:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "net") == ours:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_upload_archive_is_one_root_owned_header_with_the_given_mode() -> None:
    archive = upload_archive({"file": "/etc/x/key.pem", "content": "secret", "permissions": "0600"}, now=1000)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = tar.getmembers()
    assert [(m.name, m.mode, m.size, m.mtime, m.uid, m.gid, m.uname, m.gname, m.isfile()) for m in members] == [
        ("/etc/x/key.pem", 0o600, 6, 1000, 0, 0, "", "", True)
    ]


@pytest.mark.parametrize(("text", "ns"), [("15s", 15_000_000_000), ("1m30s", 90_000_000_000),
                                          ("500ms", 500_000_000), ("", 0)])
def test_go_durations(text: str, ns: int) -> None:
    assert go_duration_ns(text) == ns


def test_a_bad_duration_is_refused() -> None:
    with pytest.raises(ValueError):
        go_duration_ns("15 s")


# ------------------------------------------------------------------ stand-ins on the engine

OFFICIAL = {
    # reference: (Entrypoint, Cmd, User, WorkingDir, Volumes, ExposedPorts, Env subset)
    "registry": (["/entrypoint.sh"], ["/etc/distribution/config.yml"], "", "", ["/var/lib/registry"],
                 ["5000/tcp"], ["OTEL_TRACES_EXPORTER=none"]),
    "prometheus": (["/bin/prometheus"], ["--config.file=/etc/prometheus/prometheus.yml",
                                         "--storage.tsdb.path=/prometheus"],
                   "nobody", "/prometheus", ["/prometheus"], ["9090/tcp"], []),
    "blackbox": (["/bin/blackbox_exporter"], ["--config.file=/etc/blackbox_exporter/config.yml"], "", "",
                 [], ["9115/tcp"], []),
}


@pytest.mark.parametrize("service", sorted(OFFICIAL))
def test_stand_in_carries_the_official_image_config_under_the_programs_pin(
    engine: Engine, stand_ins: dict[str, str], service: str
) -> None:
    entrypoint, cmd, user, workdir, volumes, ports, env = OFFICIAL[service]
    config = engine.api("GET", f"/images/{stand_ins[service]}/json")["Config"]
    assert config["Entrypoint"] == entrypoint
    assert config["Cmd"] == cmd
    assert config["User"] == user
    assert config["WorkingDir"] == workdir
    assert sorted(config["Volumes"] or {}) == volumes
    assert sorted(config["ExposedPorts"] or {}) == ports
    assert set(env) <= set(config["Env"] or [])


def test_stand_ins_run_their_binaries_and_tools(engine: Engine, stand_ins: dict[str, str]) -> None:
    """The image's own entrypoint path works (registry through the library entrypoint
    script, the others directly, with only the libraries ldd named) and busybox wget is on
    PATH for the health checks."""
    def run(reference: str, *args: str, entrypoint: str | None = None) -> str:
        extra = ["--entrypoint", entrypoint] if entrypoint else []
        result = engine.docker("run", "--rm", "--network", "none", *extra, reference, *args, timeout=60)
        return result.stdout + result.stderr

    # each image runs the binary of its own tag's version (the toolchain's builds)
    assert "v3.1.1" in run(stand_ins["registry"], "--version")
    assert "prometheus, version 3.7.3 " in run(stand_ins["prometheus"], "--version")
    assert "promtool, version 3.7.3 " in run(stand_ins["prometheus"], "--version", entrypoint="/bin/promtool")
    assert "blackbox_exporter, version 0.27.0 " in run(stand_ins["blackbox"], "--version")
    for reference in stand_ins.values():
        assert "Usage: wget" in run(reference, "-c", "wget --help 2>&1; true", entrypoint="/bin/sh")
    assert run(stand_ins["prometheus"], "-c", "id -u", entrypoint="/bin/sh").strip() == "65534"
    owners = run(stand_ins["prometheus"], "-c", "stat -c '%u %a' /prometheus /etc/prometheus", entrypoint="/bin/sh")
    assert owners.split() == ["65534", "775", "65534", "755"]
