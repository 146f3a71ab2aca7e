"""How long registry 3.1.1 takes to refuse a wrong password, by whether the user exists.

    .venv/bin/python -m bench.auth_timing            # 41 requests per case, about 20 s
    .venv/bin/python -m bench.auth_timing --repeats 11

The mirror runs the program's own rendered files (config, htpasswd of bcrypt cost 10, TLS)
under registry 3.1.1 on 127.0.0.1 (rehearsal/registry_proc.py `RehearsalMirror`). Each case
sends `GET /v2/` with Basic credentials over one kept-alive TLS connection (no handshake in
the figure), the cases interleaved so that a slower moment of the machine hits all of them:

- `wrong password`: a configured user, a wrong password;
- `unknown user`: a user the htpasswd file does not hold;
- `right password`: a configured user and its password.

distribution's htpasswd check compares an unknown user's password against a fixed dummy
hash of cost 5 (registry/auth/htpasswd/htpasswd.go) and a known user's against its cost-10
hash: the difference is what a client can see from outside (docs/security.md).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from rehearsal.fakes.program import evaluate
from rehearsal.registry_proc import RehearsalMirror

USER, PASSWORD = "alice", "correct-horse-battery"
CASES = {
    "wrong password": (USER, "not-alices-password"),
    "unknown user": ("mallory", "not-alices-password"),
    "right password": (USER, PASSWORD),
}
EXPECTED = {"wrong password": 401, "unknown user": 401, "right password": 200}


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def measure(repeats: int, work: Path) -> dict[str, dict[str, float]]:
    """Milliseconds per case: median, 10th and 90th percentile of `repeats` requests."""
    evaluation = evaluate({"hostname": "127.0.0.1", "registryBindAddress": "127.0.0.1", "monitoring": "false",
                           "installTrust": "false"}, secrets={"registryUsers": json.dumps({USER: PASSWORD})})
    samples: dict[str, list[float]] = {case: [] for case in CASES}
    with RehearsalMirror.start(evaluation, work) as mirror:
        connection = http.client.HTTPSConnection("127.0.0.1", mirror.port, context=mirror.ssl_context(), timeout=30)
        for index in range(repeats + 1):
            for case, (user, password) in CASES.items():
                started = time.perf_counter()
                connection.request("GET", "/v2/", headers={"Authorization": _basic(user, password)})
                response = connection.getresponse()
                response.read()
                elapsed = (time.perf_counter() - started) * 1000
                if response.status != EXPECTED[case]:
                    raise RuntimeError(f"{case}: HTTP {response.status}, expected {EXPECTED[case]}")
                if index:  # the first round warms the connection and the registry up
                    samples[case].append(elapsed)
        connection.close()
    result = {}
    for case, values in samples.items():
        deciles = statistics.quantiles(values, n=10)
        result[case] = {"median_ms": round(statistics.median(values), 1), "p10_ms": round(deciles[0], 1),
                        "p90_ms": round(deciles[-1], 1), "n": len(values)}
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.auth_timing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=41, help="requests per case (at least 3)")
    args = parser.parse_args(argv)
    if args.repeats < 3:
        parser.error("--repeats must be at least 3")
    with tempfile.TemporaryDirectory(prefix="registry-mirror-auth-timing-") as work:
        result = measure(args.repeats, Path(work))
    for case, figures in result.items():
        print(f"{case:15} median {figures['median_ms']:7.1f} ms  (p10 {figures['p10_ms']:.1f}, "
              f"p90 {figures['p90_ms']:.1f}, n={figures['n']})")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
