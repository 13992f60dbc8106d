// Package shuttle is Tangled spindle's guest-agent wire protocol ("shuttle"), the interface
// spindle's microvm engine speaks to the agent in its VMs, so that the c2vm guest init can be
// that agent and any OCI image can be a spindle CI image (see guestinit's shuttle mode and
// docs/vmms.md).
//
// The protocol, as spindle's host side uses it: both directions carry frames of a 4-byte
// big-endian length and one protobuf message spindle.agent.v1.Message, at most MaxFrame bytes.
// A Message has a non-empty id and exactly one payload (a validation rule, not a protobuf
// oneof). The guest dials the host (vsock CID 2, the port from VsockPortArg on the kernel
// command line), sends Hello first, takes Init, then serves ExecStart requests for the VM's life
// (streaming ExecStdout/ExecStderr and one ExecExit with the request's id), CacheDrain and
// Poweroff.
//
// Messages are encoded by hand with protowire: the schema is small and fixed, the encoding must
// match Go's protobuf encoder byte for byte (fields in ascending order, a set empty message as its
// tag and a zero length), and hand encoding keeps generated code and spindle's .proto (which is
// not on the module proxy) out of the tree. Unknown fields are skipped, as protobuf does; the
// payloads the guest does not serve (activate_config, open_debug_shell, pty_*) are kept as raw
// bytes so that validation and warnings still see them.
package shuttle
