"""What pulumi-docker does on the Docker Engine API with a recorded resource's inputs.

pulumi-docker bridges kreuzwerker/terraform-provider-docker; this follows its create path
(`internal/provider/resource_docker_container_funcs.go` `resourceDockerContainerCreate`,
`resource_docker_container_structures.go` `portSetToDockerPorts`/`volumeSetToDockerVolumes`,
`resource_docker_network_funcs.go`, at tag v3.6.2) for the inputs this program uses:

1. `ContainerCreate` with Config (image, hostname, env, cmd, entrypoint, user, exposed ports,
   volumes, labels, healthcheck with Go durations) and HostConfig (restart policy, log
   driver and options, port bindings `{HostIp, HostPort}`, binds `<volume>:<path>:rw|ro`,
   memory in MiB * 1024 * 1024, `Init: false`, CapAdd/CapDrop from the `capabilities` block,
   SecurityOpt from `security_opts`), no NetworkMode;
2. with `networks_advanced`: disconnect the default `bridge` network (a "not connected"
   answer ignored), then `NetworkConnect` each network with its aliases;
3. each upload as its own tar, put at `/`, with one header carrying only name, mode (the
   `permissions` octal, else 0744 when executable, else 0644), size and time: the file is
   owned by root, missing parents are created by Docker as root 0755 — BEFORE the start;
4. `ContainerStart`; with `wait`, poll until `State.Health.Status == healthy`.

The input keys are the camelCase ones the Pulumi SDK sends (rehearsal.fakes.program records
them). A key this module does not translate raises `Untranslated` rather than being dropped:
a rehearsal must not silently run something else than the program asked for.
"""

from __future__ import annotations

import io
import re
import tarfile
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rehearsal.engine import ApiError, Engine

# inputs that steer the provider itself (waiting, state), not the container
PROVIDER_ONLY = {"wait", "waitTimeout", "mustRun", "start", "destroyGraceSeconds", "attach",
                 "logs", "rm", "removeVolumes", "keepLocally"}
CONTAINER_KEYS = {"name", "image", "hostname", "domainname", "envs", "command", "entrypoints",
                  "user", "workingDir", "ports", "hosts", "volumes", "labels", "healthcheck",
                  "restart", "maxRetryCount", "logDriver", "logOpts", "memory", "memorySwap",
                  "networksAdvanced", "networkMode", "uploads", "init", "stopSignal", "stopTimeout",
                  "tty", "stdinOpen", "capabilities", "securityOpts"} | PROVIDER_ONLY
NETWORK_KEYS = {"name", "driver", "labels", "options", "internal", "attachable"}
VOLUME_KEYS = {"name", "driver", "driverOpts", "labels"}

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
            "m": 60_000_000_000, "h": 3_600_000_000_000}


class Untranslated(ValueError):
    """A recorded input this rehearsal does not know how to give Docker."""


def _check_keys(kind: str, inputs: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(inputs) - known)
    if unknown:
        raise Untranslated(f"{kind} inputs not translated: {unknown}")


def go_duration_ns(text: str) -> int:
    """Go's time.ParseDuration for the forms used here ("15s", "1m30s", "500ms")."""
    if not text:
        return 0
    position, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_NS[match.group(2)]
        position = match.end()
    if position != len(text):
        raise ValueError(f"not a Go duration: {text!r}")
    return int(total)


def _labels(items: Any) -> dict[str, str]:
    return {item["label"]: item["value"] for item in items or []}


def network_body(inputs: Mapping[str, Any]) -> dict[str, Any]:
    _check_keys("network", inputs, NETWORK_KEYS)
    body: dict[str, Any] = {"Name": inputs["name"], "CheckDuplicate": True,
                            "Labels": _labels(inputs.get("labels"))}
    if inputs.get("driver"):
        body["Driver"] = inputs["driver"]
    if inputs.get("options"):
        body["Options"] = dict(inputs["options"])
    body["Internal"] = bool(inputs.get("internal", False))
    body["Attachable"] = bool(inputs.get("attachable", False))
    return body


def volume_body(inputs: Mapping[str, Any]) -> dict[str, Any]:
    _check_keys("volume", inputs, VOLUME_KEYS)
    body: dict[str, Any] = {"Name": inputs["name"], "Labels": _labels(inputs.get("labels"))}
    if inputs.get("driver"):
        body["Driver"] = inputs["driver"]
    if inputs.get("driverOpts"):
        body["DriverOpts"] = dict(inputs["driverOpts"])
    return body


def container_body(inputs: Mapping[str, Any], image: str) -> dict[str, Any]:
    """The ContainerCreate body; `image` replaces the recorded image id (the mocks' id is
    not a real one: pass the reference the program's RemoteImage of that id names)."""
    _check_keys("container", inputs, CONTAINER_KEYS)
    config: dict[str, Any] = {"Image": image, "Hostname": inputs.get("hostname", ""),
                              "Domainname": inputs.get("domainname", ""),
                              "Tty": bool(inputs.get("tty", False)),
                              "OpenStdin": bool(inputs.get("stdinOpen", False))}
    if inputs.get("stopSignal"):
        config["StopSignal"] = inputs["stopSignal"]
    if inputs.get("stopTimeout") is not None:
        config["StopTimeout"] = int(inputs["stopTimeout"])
    if inputs.get("envs"):
        config["Env"] = list(inputs["envs"])
    if inputs.get("command"):
        config["Cmd"] = list(inputs["command"])
    if inputs.get("entrypoints"):
        config["Entrypoint"] = list(inputs["entrypoints"])
    if inputs.get("user"):
        config["User"] = inputs["user"]
    if inputs.get("workingDir"):
        config["WorkingDir"] = inputs["workingDir"]

    host: dict[str, Any] = {
        "RestartPolicy": {"Name": inputs.get("restart", "no"),
                          "MaximumRetryCount": int(inputs.get("maxRetryCount", 0))},
        "LogConfig": {"Type": inputs.get("logDriver", "json-file"),
                      "Config": dict(inputs.get("logOpts") or {})},
        "Init": bool(inputs.get("init", False)),
    }
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for port in inputs.get("ports") or []:
        key = f"{int(port['internal'])}/{port.get('protocol', 'tcp')}"
        exposed[key] = {}
        binding: dict[str, str] = {}
        if port.get("external") is not None:
            binding["HostPort"] = str(int(port["external"]))
        if port.get("ip") is not None:
            binding["HostIp"] = port["ip"]
        if binding:
            bindings.setdefault(key, []).append(binding)
    if exposed:
        config["ExposedPorts"] = exposed
    if bindings:
        host["PortBindings"] = bindings
    if inputs.get("hosts"):
        host["ExtraHosts"] = [f"{h['host']}:{h['ip']}" for h in inputs["hosts"]]

    volumes: dict[str, dict[str, Any]] = {}
    binds: list[str] = []
    for volume in inputs.get("volumes") or []:
        if volume.get("fromContainer"):
            raise Untranslated("volumes.fromContainer")
        path = volume["containerPath"]
        source = volume.get("volumeName") or volume.get("hostPath")
        volumes[path] = {}
        if source:
            binds.append(f"{source}:{path}:{'ro' if volume.get('readOnly') else 'rw'}")
    if volumes:
        config["Volumes"] = volumes
    if binds:
        host["Binds"] = binds

    if inputs.get("labels"):
        config["Labels"] = _labels(inputs["labels"])
    check = inputs.get("healthcheck")
    if check:
        config["Healthcheck"] = {
            "Test": list(check["tests"]),
            "Interval": go_duration_ns(check.get("interval", "")),
            "Timeout": go_duration_ns(check.get("timeout", "")),
            "StartPeriod": go_duration_ns(check.get("startPeriod", "")),
            "Retries": int(check.get("retries", 0)),
        }
    if inputs.get("memory"):
        host["Memory"] = int(inputs["memory"]) * 1024 * 1024
    if inputs.get("memorySwap"):
        swap = int(inputs["memorySwap"])
        host["MemorySwap"] = swap * 1024 * 1024 if swap > 0 else swap
    if inputs.get("networkMode"):
        host["NetworkMode"] = inputs["networkMode"]
    # the `capabilities` block and `security_opts` set, as the provider copies them
    capabilities = inputs.get("capabilities") or {}
    if set(capabilities) - {"adds", "drops"}:
        raise Untranslated(f"capabilities.{sorted(set(capabilities) - {'adds', 'drops'})}")
    if capabilities.get("adds"):
        host["CapAdd"] = list(capabilities["adds"])
    if capabilities.get("drops"):
        host["CapDrop"] = list(capabilities["drops"])
    if inputs.get("securityOpts"):
        host["SecurityOpt"] = list(inputs["securityOpts"])
    return config | {"HostConfig": host, "NetworkingConfig": {"EndpointsConfig": {}}}


def upload_archive(upload: Mapping[str, Any], now: float | None = None) -> bytes:
    """One upload as the provider sends it: a tar with a single header (name, mode, size,
    time), nothing about owners."""
    if upload.get("owner") or upload.get("group"):
        raise Untranslated("uploads.owner/group")
    if upload.get("source") or upload.get("contentBase64"):
        raise Untranslated("uploads.source/contentBase64")
    content = str(upload.get("content", "")).encode()
    if upload.get("permissions"):
        mode = int(upload["permissions"], 8)
    elif upload.get("executable"):
        mode = 0o744
    else:
        mode = 0o644
    info = tarfile.TarInfo(upload["file"])
    info.mode, info.size, info.mtime = mode, len(content), int(now if now is not None else time.time())
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@dataclass(frozen=True)
class Created:
    id: str
    name: str
    started_at: float  # time.monotonic() of the start call


def create_network(engine: Engine, inputs: Mapping[str, Any]) -> str:
    result = engine.api("POST", "/networks/create", network_body(inputs))
    return str(result["Id"])


def create_volume(engine: Engine, inputs: Mapping[str, Any]) -> str:
    result = engine.api("POST", "/volumes/create", volume_body(inputs))
    return str(result["Name"])


def create_container(engine: Engine, inputs: Mapping[str, Any], image: str, *, start: bool = True) -> Created:
    """ContainerCreate, networks, uploads, start: the provider's order."""
    name = inputs["name"]
    created = engine.api("POST", f"/containers/create?name={urllib.parse.quote(name)}",
                         container_body(inputs, image))
    cid = str(created["Id"])
    networks = inputs.get("networksAdvanced") or []
    if networks:
        try:
            engine.api("POST", "/networks/bridge/disconnect", {"Container": cid, "Force": False})
        except ApiError as error:
            if "is not connected to the network bridge" not in str(error):
                raise
        for network in networks:
            endpoint: dict[str, Any] = {"Aliases": list(network.get("aliases") or []), "IPAMConfig": {}}
            if network.get("ipv4Address"):
                endpoint["IPAMConfig"]["IPv4Address"] = network["ipv4Address"]
            engine.api("POST", f"/networks/{urllib.parse.quote(network['name'])}/connect",
                       {"Container": cid, "EndpointConfig": endpoint})
    for upload in inputs.get("uploads") or []:
        engine.api("PUT", f"/containers/{cid}/archive?path=/", raw=upload_archive(upload),
                   content_type="application/x-tar")
    started = time.monotonic()
    if start and inputs.get("start", True):
        engine.api("POST", f"/containers/{cid}/start")
    return Created(cid, name, started)


def health(engine: Engine, container: str) -> str:
    state = engine.api("GET", f"/containers/{container}/json")["State"]
    return str((state.get("Health") or {}).get("Status", "none"))


def wait_healthy(engine: Engine, container: str, timeout: float = 120.0) -> float:
    """Seconds until Docker reports the container healthy (its own health check); raises
    with the container's state and last health-check output otherwise (the provider's
    `wait`/`wait_timeout`)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        state = engine.api("GET", f"/containers/{container}/json")["State"]
        status = (state.get("Health") or {}).get("Status")
        if status == "healthy":
            return time.monotonic() - began
        if not state.get("Running") and state.get("Status") in ("exited", "dead"):
            break
        time.sleep(0.5)
    raise TimeoutError(f"{container} not healthy after {time.monotonic() - began:.0f}s: {state}")


def stop_container(engine: Engine, container: str, inputs: Mapping[str, Any]) -> float:
    """The first half of the provider's delete: with destroy_grace_seconds, ContainerStop
    with that timeout (Docker sends the stop signal, then SIGKILL when the grace runs out).
    Returns the seconds the stop took (0 without a grace: the removal then kills)."""
    began = time.monotonic()
    grace = int(inputs.get("destroyGraceSeconds") or 0)
    if grace > 0:
        engine.api("POST", f"/containers/{container}/stop?t={grace}", timeout=grace + 30)
    return time.monotonic() - began


def delete_container(engine: Engine, container: str, inputs: Mapping[str, Any]) -> None:
    """The second half: a forced ContainerRemove (volumes kept unless remove_volumes)."""
    remove_volumes = 1 if inputs.get("removeVolumes") else 0
    engine.api("DELETE", f"/containers/{container}?force=1&v={remove_volumes}")


def remove_container(engine: Engine, container: str, inputs: Mapping[str, Any]) -> float:
    """The provider's delete (`resourceDockerContainerDelete`): `stop_container`, then
    `delete_container`. Returns the seconds the stop took."""
    stopped = stop_container(engine, container, inputs)
    delete_container(engine, container, inputs)
    return stopped
