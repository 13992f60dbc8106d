// Package spec builds the OCI runtime spec that runc runs inside the c2vm guest, from an image's
// config: containerd's default Linux spec for the platform (pkg/oci), then the image's
// Entrypoint/Cmd, Env, WorkingDir and User, with the user resolved from the image's own
// /etc/passwd and /etc/group content (never from host files). The VM is the isolation boundary, so
// the spec has no network namespace; capabilities, masked and read-only paths and containerd's
// default seccomp profile are kept. The output is deterministic: it does not depend on the host
// that converts the image (its CPU count, kernel version or architecture).
//
// It also extracts the image metadata later stages need (ports, volumes, labels, stop signal).
//
// See docs/guest-contract.md and docs/architecture.md.
package spec
