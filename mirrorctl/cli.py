"""The `mirrorctl` commands (typer), with rich output and one-line errors."""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import httpx
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from contract import PROJECT, SERVICES
from mirrorctl import certs, docker, health, metrics, registry, safe
from mirrorctl.errors import MirrorctlError
from mirrorctl.stack import StackContext, parse_endpoints
from mirrorctl.transport import make_client

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="mirrorctl",
    help=(
        "Operator commands of the registry-mirror stack. Values come from "
        "`pulumi stack output --json`, or from the flags below when there is no Pulumi CLI."
    ),
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


@dataclass
class Session:
    stack: StackContext
    out: Console
    err: Console

    def client(self, ca_pem: str | None) -> httpx.Client:
        return make_client(ca_pem, self.stack.timeout)

    def emit_json(self, document: Any) -> None:
        sys.stdout.write(safe.json_text(document, sort_keys=True) + "\n")
        sys.stdout.flush()

    def say(self, text: object, *, err: bool = False) -> None:
        """One line of plain text (never rich markup), escaped and redacted."""
        (self.err if err else self.out).print(safe.clean(text), markup=False)


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # Not a terminal and no COLUMNS: wide enough that URLs and digests are not wrapped.
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 200
    # No emoji codes either: a repository named ":fire:" is printed as named.
    return Console(stderr=stderr, highlight=False, emoji=False, width=width)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `mirrorctl: <message>` as one line on stderr; the Exit to raise."""
    # Line breaks and tabs become spaces before escaping: a multi-line error (Pulumi's,
    # Docker's) still reads as one line. Only those: str.split() would also swallow
    # controls such as U+001C or NEL, which must stay visible as escapes.
    line = safe.clean(re.sub(r"[ \t\r\n]+", " ", message).strip())
    sys.stderr.write(f"mirrorctl: {line}\n")
    sys.stderr.flush()
    return typer.Exit(code)


def handled(func: Callable[P, R]) -> Callable[P, R]:
    """Every failure becomes one line and a non-zero exit, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except MirrorctlError as error:
            raise fail(error.message, error.exit_code) from None
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except Exception as error:  # a safety net: the operator gets one line
            if os.environ.get("MIRRORCTL_DEBUG"):
                raise
            raise fail(f"unexpected error: {type(error).__name__}: {error}") from None

    return wrapper


def cell(value: object, style: str = "") -> Text:
    """A table cell as plain text (a URL like http://[::1]:3000 is not rich markup), cleaned."""
    return Text(safe.clean(value), style)


def cells(*values: object) -> list[Text]:
    return [cell(value) for value in values]


def session(ctx: typer.Context) -> Session:
    value = ctx.obj
    if not isinstance(value, Session):  # pragma: no cover (the callback always sets it)
        raise MirrorctlError("internal: no session")
    return value


@app.callback()
def main_options(
    ctx: typer.Context,
    stack: Annotated[
        str | None,
        typer.Option(
            "--stack",
            envvar="STACK",
            metavar="NAME",
            help="Pulumi stack (default: the selected one). Env: STACK.",
        ),
    ] = None,
    project: Annotated[
        str,
        typer.Option(
            "--project",
            metavar="NAME",
            help="Project name in container names <project>-<stack>-<service>.",
        ),
    ] = PROJECT,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            metavar="URL",
            help="Registry URL, e.g. https://localhost:6000 (default: output registryUrl).",
        ),
    ] = None,
    ca: Annotated[
        Path | None,
        typer.Option(
            "--ca", metavar="FILE", help="Root CA PEM file to trust (default: output caCertPem)."
        ),
    ] = None,
    prometheus: Annotated[
        str | None,
        typer.Option(
            "--prometheus", metavar="URL", help="Prometheus URL (default: output urls.prometheus)."
        ),
    ] = None,
    endpoint: Annotated[
        list[str] | None,
        typer.Option(
            "--endpoint",
            metavar="NAME=URL",
            help="NAME=URL of a service for `status` (repeatable).",
        ),
    ] = None,
    outputs: Annotated[
        Path | None,
        typer.Option(
            "--outputs",
            metavar="FILE",
            help="A saved `pulumi stack output --json` instead of the Pulumi CLI.",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, metavar="SECONDS", help="Seconds per request.")
    ] = 10.0,
) -> None:
    try:
        endpoints = parse_endpoints(endpoint or [])
    except MirrorctlError as error:
        raise fail(error.message, 2) from None
    ctx.obj = Session(
        stack=StackContext(
            stack=stack or None,
            project=project,
            url=url,
            ca_file=ca,
            prometheus=prometheus,
            endpoints=endpoints,
            outputs_file=outputs,
            timeout=timeout,
        ),
        out=_console(stderr=False),
        err=_console(stderr=True),
    )


# ------------------------------------------------------------------------------- status


@app.command()
@handled
def status(
    ctx: typer.Context,
    targets: Annotated[
        bool,
        typer.Option(
            "--targets/--no-targets",
            help="Also show Prometheus's targets (and fail on a down one).",
        ),
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Every service URL and its health; Prometheus's view of its scrape targets."""
    s = session(ctx)
    urls = s.stack.service_urls()
    needs_ca = any(u.startswith("https://") for u in urls.values())
    ca_source = s.stack.ca_source() if needs_ca else None
    with s.client(s.stack.ca_pem() if needs_ca else None) as client:
        checks = health.check_all(client, urls, ca_source)
        found: list[health.Target] | None = None
        targets_error: str | None = None
        if targets and "prometheus" in urls:
            try:
                found = health.prometheus_targets(client, urls["prometheus"])
            except MirrorctlError as error:
                targets_error = error.message
    unhealthy = [c.service for c in checks if not c.healthy]
    down = [f"{t.job} ({t.instance})" for t in found or [] if t.health == "down"]

    if as_json:
        s.emit_json(
            {
                "services": [c.as_dict() for c in checks],
                "targets": None if found is None else [t.as_dict() for t in found],
                "targets_error": targets_error,
                "healthy": not unhealthy and not down,
            }
        )
    else:
        table = Table(title="Services", title_justify="left")
        for column in ("service", "url", "health", "status", "detail", "ms"):
            table.add_column(column, overflow="fold")
        for c in checks:
            mark = Text("healthy", "green") if c.healthy else Text("UNHEALTHY", "red")
            table.add_row(*cells(c.service, c.url), mark, *cells(c.status, c.detail, c.elapsed_ms))
        s.out.print(table)
        if found is not None:
            t_table = Table(title="Prometheus targets", title_justify="left")
            for column in ("job", "instance", "health", "last error"):
                t_table.add_column(column, overflow="fold")
            for t in found:
                colour = {"up": "green", "down": "red"}.get(t.health, "yellow")
                t_table.add_row(
                    *cells(t.job, t.instance), cell(t.health, colour), cell(t.last_error)
                )
            s.out.print(t_table)
        elif targets_error:
            s.say(f"Prometheus targets: unavailable ({targets_error})")
    problems = []
    if unhealthy:
        problems.append(f"unhealthy: {', '.join(unhealthy)}")
    if down:
        problems.append(f"targets down: {', '.join(down)}")
    if problems:
        raise fail("; ".join(problems))


# --------------------------------------------------------------------- registry API v2


def _registry(s: Session) -> tuple[str, str, str]:
    return s.stack.registry_url(), s.stack.ca_pem(), s.stack.ca_source()


@app.command()
@handled
def catalog(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Repositories the mirror has cached (GET /v2/_catalog, every page)."""
    s = session(ctx)
    url, ca_pem, ca_source = _registry(s)
    with s.client(ca_pem) as client:
        repositories = registry.RegistryClient(url, client, ca_source).catalog()
    if as_json:
        s.emit_json({"registry": url, "repositories": repositories})
        return
    for name in repositories:
        s.say(name)
    s.say(f"{len(repositories)} repositories in {url}", err=True)


@app.command()
@handled
def tags(
    ctx: typer.Context,
    repository: Annotated[
        str, typer.Argument(help="e.g. library/alpine (alpine = library/alpine)")
    ],
    as_json: JsonOption = False,
) -> None:
    """Tags of a repository (GET /v2/<repo>/tags/list; a mirror asks upstream)."""
    s = session(ctx)
    url, ca_pem, ca_source = _registry(s)
    name = registry.normalize_repository(repository)
    with s.client(ca_pem) as client:
        found = registry.RegistryClient(url, client, ca_source).tags(name)
    if as_json:
        s.emit_json({"repository": name, "tags": found})
        return
    for tag in found:
        s.say(tag)
    s.say(f"{len(found)} tags of {name}", err=True)


@app.command()
@handled
def manifest(
    ctx: typer.Context,
    repository: Annotated[str, typer.Argument(help="e.g. library/alpine")],
    reference: Annotated[str, typer.Argument(help="A tag or a digest (sha256:...)")] = "latest",
    raw: Annotated[
        bool, typer.Option("--raw", help="Print the manifest bytes exactly as served.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """A manifest, asking for OCI indexes, Docker manifest lists and image manifests."""
    s = session(ctx)
    url, ca_pem, ca_source = _registry(s)
    with s.client(ca_pem) as client:
        found = registry.RegistryClient(url, client, ca_source).manifest(repository, reference)
    if raw:
        if sys.stdout.isatty():
            # The exact bytes are for a pipe (| sha256sum); on a terminal they would be
            # the registry's bytes driving it, so there they are shown escaped.
            sys.stdout.write(safe.clean(found.body.decode(errors="replace"), keep_newlines=True))
        else:
            sys.stdout.buffer.write(found.body)
        sys.stdout.flush()
        return
    document = found.document()
    if as_json:
        s.emit_json(
            {
                "repository": found.repository,
                "reference": found.reference,
                "media_type": found.media_type,
                "digest": found.digest,
                "size": found.size,
                "manifest": document,
            }
        )
        return
    s.say(f"{found.repository}:{found.reference}", err=True)
    s.say(f"  media type  {found.media_type or '(none)'}", err=True)
    s.say(f"  digest      {found.digest}", err=True)
    s.say(f"  size        {found.size} bytes", err=True)
    sys.stdout.write(safe.json_text(document) + "\n")


# ------------------------------------------------------------------------------- metrics


def human_bytes(value: float | None) -> str:
    if value is None:
        return "no data"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"  # pragma: no cover


def percent(value: float | None, *, empty: str = "n/a (no requests)") -> str:
    return empty if value is None else f"{value * 100:.1f}%"


def count(value: float | None) -> str:
    return "no data" if value is None else f"{value:.0f}"


@app.command(name="metrics")
@handled
def metrics_command(
    ctx: typer.Context,
    job: Annotated[str, typer.Option("--job", help="Prometheus job of the registry.")] = "registry",
    window: Annotated[
        str | None,
        typer.Option(
            "--window", help="Only this last period, e.g. 24h (increase()); default: since start."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Hit ratio and bytes pulled upstream vs served, from Prometheus (2.8 and 3.x names)."""
    s = session(ctx)
    prometheus_url = s.stack.prometheus_url()
    with s.client(None) as client:
        found = metrics.read_registry_metrics(client, prometheus_url, job=job, window=window)
    if as_json:
        s.emit_json({"prometheus": prometheus_url, **found.as_dict()})
        return
    period = f"last {window}" if window else "since the registry started"
    s.say(f"Registry metrics from {prometheus_url} (job {job!r}, {period})")
    proxy_table = Table(
        title="Pull-through cache (registry_proxy_*, registry 3.x)", title_justify="left"
    )
    for column in ("type", "requests", "hits", "misses", "hit ratio", "pulled upstream", "served"):
        proxy_table.add_column(column, justify="left" if column == "type" else "right")
    if found.proxy is None:
        s.say(
            "Pull-through cache: no data (no registry_proxy_* series: registry 2.8 does not "
            "export them, or Prometheus has not scraped a 3.x registry yet)"
        )
    else:
        for kind, values in found.proxy.items():
            proxy_table.add_row(
                *cells(
                    kind,
                    count(values.get("requests")),
                    count(values.get("hits")),
                    count(values.get("misses")),
                    percent(found.proxy_ratio(kind)),
                    human_bytes(values.get("pulled_bytes")),
                    human_bytes(values.get("pushed_bytes")),
                )
            )
        s.out.print(proxy_table)
    if found.cache is None:
        s.say("Blob descriptor cache: no data")
    else:
        cache_table = Table(
            title=f"Blob descriptor cache ({found.cache.series})", title_justify="left"
        )
        for column in ("requests", "hits", "hit ratio"):
            cache_table.add_column(column, justify="right")
        cache_table.add_row(
            count(found.cache.requests), count(found.cache.hits), percent(found.cache.hit_ratio)
        )
        s.out.print(cache_table)


# -------------------------------------------------------------------------- verify-certs


@app.command(name="verify-certs")
@handled
def verify_certs(
    ctx: typer.Context,
    min_days: Annotated[
        int,
        typer.Option(
            "--min-days", min=0, help="Fail when a certificate of the chain has fewer days left."
        ),
    ] = 14,
    as_json: JsonOption = False,
) -> None:
    """TLS to the registry, verified against the stack CA: chain, SANs, days to expiry."""
    s = session(ctx)
    url, ca_pem, ca_source = _registry(s)
    report = certs.inspect_chain(url, ca_pem, timeout=s.stack.timeout, ca_source=ca_source)
    if as_json:
        s.emit_json({"url": url, "ca": ca_source, "min_days": min_days, **report.as_dict()})
    else:
        s.say(
            f"{report.host}:{report.port}: verified against {ca_source} "
            f"({report.tls_version}, {report.cipher})"
        )
        table = Table(title="Chain (leaf first)", title_justify="left")
        for column in ("#", "subject", "issuer", "not after", "days left", "sent"):
            table.add_column(column, overflow="fold")
        for index, cert in enumerate(report.chain):
            days = Text(str(cert.days_left), "red" if cert.days_left < min_days else "")
            table.add_row(
                *cells(
                    index, cert.subject, cert.issuer, cert.not_after.strftime("%Y-%m-%d %H:%M UTC")
                ),
                days,
                Text("yes" if cert.sent_by_server else "no (trusted root)"),
            )
        s.out.print(table)
        s.say(
            f"SANs: DNS {', '.join(report.leaf.dns_names) or '-'}; "
            f"IP {', '.join(report.leaf.ip_addresses) or '-'}"
        )
    earliest = report.earliest
    if earliest.days_left < min_days:
        raise fail(
            f"{earliest.subject} expires in {earliest.days_left} days (< {min_days}): "
            "run `make up` to renew it"
        )


# ------------------------------------------------------------------------------- docker


@app.command()
@handled
def gc(
    ctx: typer.Context,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply", help="Delete (stops the registry while collecting). Default: a dry run."
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show every marked blob.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """The registry's garbage collector, in a container of the registry's own image."""
    s = session(ctx)
    container = s.stack.container("registry")

    def progress(message: str) -> None:
        if not as_json:
            s.say(f"gc: {message}", err=True)

    result = docker.garbage_collect(container, apply=apply, progress=progress)
    if as_json:
        s.emit_json(result.as_dict())
        return
    if verbose:
        sys.stdout.write(safe.clean(result.output, keep_newlines=True))
    else:
        for digest in result.eligible:
            s.say(f"eligible for deletion: {digest}")
    verb = "would delete" if result.dry_run else "deleted"
    s.say(
        f"{result.marked} blobs in use; {verb} {result.eligible_blobs} blobs and "
        f"{result.eligible_manifests} manifests"
    )
    if result.dry_run and (result.eligible_blobs or result.eligible_manifests):
        s.say("run `mirrorctl gc --apply` (make gc APPLY=1) to delete them")


@app.command()
@handled
def logs(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}")],
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
    tail: Annotated[str | None, typer.Option("--tail", help="Lines from the end (or all).")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="e.g. 10m or 2024-01-01T00:00:00")
    ] = None,
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t")] = False,
) -> None:
    """`docker logs` of <project>-<stack>-<service>."""
    if service not in SERVICES:
        raise MirrorctlError(f"unknown service {service!r}: one of {', '.join(SERVICES)}")
    s = session(ctx)
    code = docker.show_logs(
        s.stack.container(service), follow=follow, tail=tail, since=since, timestamps=timestamps
    )
    if code != 0:
        raise typer.Exit(code)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m mirrorctl`."""
    try:
        app(args=argv, prog_name="mirrorctl")
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
