"""Real-binary helpers shared by the tests and the benchmark: the Go-built tools
(`toolchain`, registry 3.1.1 in `registry3`), registry processes and skopeo
(`registry_proc`, `mirror`), the OCI image maker (`oci`), loopback stand-ins (`http_stub`,
`throttle`, the Docker Hub stand-in `hub`, the DNS and outage tools `netsim`) with a
throwaway CA for their TLS (`tls_ca`), the upstream front under Debian's nginx
(`upstream_front`), the mocks harness with its real-key TLS fake (`fakes`), and the
skip-locally/fail-in-CI policy for missing binaries (`tools`). Nothing here imports `tests`."""
