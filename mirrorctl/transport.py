"""HTTP clients that trust only the stack's root CA, and one-line descriptions of failures."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx

from mirrorctl.errors import MirrorctlError


def tls_context(ca_pem: str) -> ssl.SSLContext:
    """Verify servers against `ca_pem` only: no system trust store, hostname checked, TLS 1.2+."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cadata=ca_pem)
    except ssl.SSLError as error:
        raise MirrorctlError(
            f"the CA certificate cannot be loaded: {error.reason or error}"
        ) from error
    return context


def make_client(ca_pem: str | None, timeout: float) -> httpx.Client:
    """A client for the stack's URLs.

    `trust_env=False`: no HTTP(S)_PROXY and no SSL_CERT_FILE from the environment, so a
    local URL is never sent through a proxy and TLS trusts nothing but the stack CA.
    """
    verify: ssl.SSLContext | bool = tls_context(ca_pem) if ca_pem is not None else True
    return httpx.Client(
        verify=verify,
        timeout=httpx.Timeout(timeout),
        trust_env=False,
        follow_redirects=False,
        headers={"User-Agent": "mirrorctl"},
    )


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def verification_failure(error: BaseException) -> ssl.SSLCertVerificationError | None:
    for cause in _causes(error):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
    return None


def describe(error: httpx.HTTPError, url: str, ca_source: str | None = None) -> str:
    """One line for a failed request to `url`."""
    failure = verification_failure(error)
    if failure is not None:
        reason = failure.verify_message or failure.reason or str(failure)
        trusted = f" (trusting only {ca_source})" if ca_source else ""
        return f"TLS verification of {url} failed{trusted}: {reason}"
    for cause in _causes(error):
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake with {url} failed: {cause.reason or cause}"
    if isinstance(error, httpx.TimeoutException):
        return f"{url} did not answer in time ({type(error).__name__})"
    if isinstance(error, httpx.ConnectError):
        return f"cannot connect to {url}: {_short(error)}"
    return f"request to {url} failed: {_short(error)}"


def _short(error: BaseException) -> str:
    for cause in _causes(error):
        if isinstance(cause, OSError) and cause.strerror:
            return str(cause.strerror)
    text = str(error).strip()
    return text.splitlines()[-1] if text else type(error).__name__


def get(
    client: httpx.Client,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    ca_source: str | None = None,
) -> httpx.Response:
    """GET, with transport failures turned into a MirrorctlError line."""
    try:
        return client.get(url, headers=headers, params=params)
    except httpx.HTTPError as error:
        raise MirrorctlError(describe(error, url, ca_source)) from error
