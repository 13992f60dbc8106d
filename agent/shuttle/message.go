package shuttle

import (
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// Message is spindle.agent.v1.Message: an id and one payload.
type Message struct {
	ID string // 1

	Hello            *Hello            // 2
	Init             *Init             // 3
	ExecStart        *ExecStart        // 4
	ExecStdout       *ExecOutput       // 5
	ExecStderr       *ExecOutput       // 6
	ExecExit         *ExecExit         // 7
	BuiltPaths       *BuiltPaths       // 10
	CacheDrain       *CacheDrain       // 11
	CacheDrainResult *CacheDrainResult // 12
	Poweroff         *Poweroff         // 13
	PoweroffResult   *PoweroffResult   // 14
	// Other holds the payloads this package does not decode (activate_config 8,
	// activate_config_result 9, open_debug_shell 15, pty_data 16, pty_resize 17), by field number,
	// as their encoded bytes.
	Other map[protowire.Number][]byte
}

// Hello is the guest's first message.
type Hello struct {
	ProtocolVersion uint32 // 1
	AgentVersion    string // 2
	BootID          string // 3
	NixVersion      string // 4
}

// ProtocolVersion is Hello.ProtocolVersion.
const ProtocolVersion = 1

// Init is the host's answer to Hello: the job and the host vsock ports of spindle's proxies.
type Init struct {
	JobID                  string   // 1
	CacheTrustedPublicKeys []string // 2
	CacheReadProxyPort     uint32   // 3
	CacheUploadProxyPort   uint32   // 4
	DNSProxyPort           uint32   // 5
}

// ExecStart runs one workflow step.
type ExecStart struct {
	Argv           []string // 1
	Env            []string // 2, "K=V"
	Cwd            string   // 3
	User           string   // 4
	TimeoutSeconds uint32   // 5
}

// ExecOutput is ExecStdout and ExecStderr: a chunk of a step's output.
type ExecOutput struct {
	Data string // 1
}

// ExecExit ends a step.
type ExecExit struct {
	ExitCode int32  // 1
	Error    string // 2
	TimedOut bool   // 3
}

// BuiltPaths reports Nix store paths a step built.
type BuiltPaths struct {
	Paths  []string // 1
	Reason string   // 2
}

// CacheDrain asks the guest to finish its cache uploads.
type CacheDrain struct {
	TimeoutSeconds uint32 // 1
}

// CacheDrainResult answers CacheDrain.
type CacheDrainResult struct {
	Error                                                string // 1
	CacheQueued, CacheActive, CacheUploaded, CacheFailed uint32 // 2..5
}

// Poweroff asks the guest to power off.
type Poweroff struct{}

// PoweroffResult answers Poweroff, before the guest powers off.
type PoweroffResult struct {
	Error string // 1
}

// Field numbers of Message's payloads.
const (
	fieldID                   = 1
	fieldHello                = 2
	fieldInit                 = 3
	fieldExecStart            = 4
	fieldExecStdout           = 5
	fieldExecStderr           = 6
	fieldExecExit             = 7
	fieldActivateConfig       = 8
	fieldActivateConfigResult = 9
	fieldBuiltPaths           = 10
	fieldCacheDrain           = 11
	fieldCacheDrainResult     = 12
	fieldPoweroff             = 13
	fieldPoweroffResult       = 14
	fieldOpenDebugShell       = 15
	fieldPtyData              = 16
	fieldPtyResize            = 17
)

// otherPayloads are the payload fields kept raw in Message.Other.
var otherPayloads = map[protowire.Number]string{
	fieldActivateConfig: "activate_config", fieldActivateConfigResult: "activate_config_result",
	fieldOpenDebugShell: "open_debug_shell", fieldPtyData: "pty_data", fieldPtyResize: "pty_resize",
}

// Kind names the message's payloads (proto field names), for validation and logs; "" when none.
func (m *Message) Kind() string {
	k := m.kinds()
	if len(k) == 0 {
		return ""
	}
	return k[0]
}

func (m *Message) kinds() []string {
	var k []string
	for _, p := range []struct {
		name string
		set  bool
	}{
		{"hello", m.Hello != nil}, {"init", m.Init != nil}, {"exec_start", m.ExecStart != nil},
		{"exec_stdout", m.ExecStdout != nil}, {"exec_stderr", m.ExecStderr != nil}, {"exec_exit", m.ExecExit != nil},
		{"built_paths", m.BuiltPaths != nil}, {"cache_drain", m.CacheDrain != nil},
		{"cache_drain_result", m.CacheDrainResult != nil}, {"poweroff", m.Poweroff != nil},
		{"poweroff_result", m.PoweroffResult != nil},
	} {
		if p.set {
			k = append(k, p.name)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(m.Other)) {
		name, ok := otherPayloads[n]
		if !ok {
			name = fmt.Sprintf("field %d", n)
		}
		k = append(k, name)
	}
	return k
}

// Validate applies spindle's rule: a non-empty id and exactly one payload.
func (m *Message) Validate() error {
	if m.ID == "" {
		return fmt.Errorf("shuttle message without an id")
	}
	switch k := m.kinds(); len(k) {
	case 0:
		return fmt.Errorf("shuttle message %q without a payload", m.ID)
	case 1:
		return nil
	default:
		return fmt.Errorf("shuttle message %q with %d payloads (%v), want one", m.ID, len(k), k)
	}
}
