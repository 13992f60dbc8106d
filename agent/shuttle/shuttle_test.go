package shuttle

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"io"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// vectors are ../shared/SPINDLE.md's test vectors: frames as Go's protobuf encoder writes
// spindle.agent.v1.Message, length prefix included.
var vectors = []struct {
	name string
	msg  *Message
	hex  string
}{
	{"hello", &Message{ID: "hello", Hello: &Hello{ProtocolVersion: 1, AgentVersion: "c2vm", BootID: "b"}},
		"000000140a0568656c6c6f120b080112046332766d1a0162"},
	{"init", &Message{ID: "init", Init: &Init{JobID: "job-1", DNSProxyPort: 1053}},
		"000000120a04696e69741a0a0a056a6f622d31289d08"},
	{"exec_start", &Message{ID: "wf-0", ExecStart: &ExecStart{Argv: []string{"/bin/sh", "-lc", "echo hi"}, Env: []string{"HOME=/workspace"},
		Cwd: "/workspace/repo", User: "spindle-workflow", TimeoutSeconds: 295}},
		"000000560a0477662d30224e0a072f62696e2f73680a032d6c630a076563686f206869120f484f4d453d2f776f726b73706163651a0f2f776f726b73706163652f7265706f22107370696e646c652d776f726b666c6f7728a702"},
	{"exec_stdout", &Message{ID: "wf-0", ExecStdout: &ExecOutput{Data: "hi\n"}}, "0000000d0a0477662d302a050a0368690a"},
	{"exec_stderr", &Message{ID: "wf-0", ExecStderr: &ExecOutput{Data: "oops\n"}}, "0000000f0a0477662d3032070a056f6f70730a"},
	{"exec_exit 0", &Message{ID: "wf-0", ExecExit: &ExecExit{}}, "000000080a0477662d303a00"},
	{"exec_exit 3", &Message{ID: "wf-0", ExecExit: &ExecExit{ExitCode: 3}}, "0000000a0a0477662d303a020803"},
	{"exec_exit 127", &Message{ID: "wf-1", ExecExit: &ExecExit{ExitCode: 127, Error: "exec: nope: not found"}},
		"000000210a0477662d313a19087f1215657865633a206e6f70653a206e6f7420666f756e64"},
	{"exec_exit timed out", &Message{ID: "wf-2", ExecExit: &ExecExit{ExitCode: 137, TimedOut: true}}, "0000000d0a0477662d323a050889011801"},
	{"cache_drain", &Message{ID: "drain", CacheDrain: &CacheDrain{TimeoutSeconds: 300}}, "0000000c0a05647261696e5a0308ac02"},
	{"cache_drain_result", &Message{ID: "drain", CacheDrainResult: &CacheDrainResult{}}, "000000090a05647261696e6200"},
	{"poweroff", &Message{ID: "poweroff", Poweroff: &Poweroff{}}, "0000000c0a08706f7765726f66666a00"},
	{"poweroff_result", &Message{ID: "poweroff", PoweroffResult: &PoweroffResult{}}, "0000000c0a08706f7765726f66667200"},
}

func TestVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			frame, err := AppendFrame(nil, v.msg)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(frame); got != v.hex {
				t.Errorf("frame\n got %s\nwant %s", got, v.hex)
			}
			want, _ := hex.DecodeString(v.hex)
			m, err := ReadMessage(bytes.NewReader(want))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(m, v.msg) {
				t.Errorf("decoded %+v, want %+v", m, v.msg)
			}
		})
	}
}

// TestWriterStream: frames written by a Writer read back in order, then io.EOF.
func TestWriterStream(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, v := range vectors {
		if err := w.Write(v.msg); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range vectors {
		m, err := ReadMessage(&buf)
		if err != nil || !reflect.DeepEqual(m, v.msg) {
			t.Fatalf("read %+v, %v; want %+v", m, err, v.msg)
		}
	}
	if _, err := ReadMessage(&buf); err != io.EOF {
		t.Errorf("at the end: %v, want io.EOF", err)
	}
}

func frameOf(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func TestReadMessageRefuses(t *testing.T) {
	id := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "x")
	empty := func(b []byte, num protowire.Number) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), nil)
	}
	for _, tt := range []struct {
		name  string
		frame []byte
		want  string
	}{
		{"over 1 MiB", binary.BigEndian.AppendUint32(nil, MaxFrame+1), "more than the limit"},
		{"no id", frameOf(empty(nil, fieldPoweroff)), "without an id"},
		{"no payload", frameOf(id), "without a payload"},
		{"two payloads", frameOf(empty(empty(id, fieldPoweroff), fieldCacheDrainResult)), "2 payloads"},
		{"a raw payload and another", frameOf(empty(empty(id, fieldPtyData), fieldPoweroff)), "2 payloads"},
		{"truncated frame", append(binary.BigEndian.AppendUint32(nil, 10), 1, 2), "unexpected EOF"},
		{"truncated header", []byte{0, 0}, "unexpected EOF"},
		{"wrong wire type", frameOf(protowire.AppendVarint(protowire.AppendTag(id, fieldHello, protowire.VarintType), 1)), "wrong wire type"},
		{"bad varint", frameOf(append(id, 0x08, 0xff)), "unexpected EOF"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ReadMessage(bytes.NewReader(tt.frame))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ReadMessage = %+v, %v; want an error with %q", m, err, tt.want)
			}
		})
	}
	// A frame of exactly MaxFrame is read (a step's big output chunk).
	m := &Message{ID: "x", ExecStdout: &ExecOutput{Data: strings.Repeat("a", MaxFrame)}}
	for n := len(Marshal(m)); n > MaxFrame; n = len(Marshal(m)) {
		m.ExecStdout.Data = m.ExecStdout.Data[:len(m.ExecStdout.Data)-(n-MaxFrame)]
	}
	if n := len(Marshal(m)); n != MaxFrame {
		t.Fatalf("test frame is %d bytes, want %d", n, MaxFrame)
	}
	frame, err := AppendFrame(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadMessage(bytes.NewReader(frame)); err != nil {
		t.Errorf("a frame of MaxFrame bytes: %v", err)
	}
	m.ExecStdout.Data += "a"
	if _, err := AppendFrame(nil, m); err == nil {
		t.Error("AppendFrame wrote a frame over MaxFrame")
	}
}

// TestUnknownAndOther: unknown fields are skipped; the payloads this package does not decode
// survive a round trip as raw bytes.
func TestUnknownAndOther(t *testing.T) {
	b := Marshal(&Message{ID: "d", Other: map[protowire.Number][]byte{fieldOpenDebugShell: {0x08, 0x01}}})
	b = protowire.AppendVarint(protowire.AppendTag(b, 99, protowire.VarintType), 5)
	b = protowire.AppendFixed32(protowire.AppendTag(b, 98, protowire.Fixed32Type), 5)
	m, err := ReadMessage(bytes.NewReader(frameOf(b)))
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind() != "open_debug_shell" || !bytes.Equal(m.Other[fieldOpenDebugShell], []byte{0x08, 0x01}) {
		t.Errorf("got %+v (kind %q)", m, m.Kind())
	}
}

func FuzzReadMessage(f *testing.F) {
	for _, v := range vectors {
		b, _ := hex.DecodeString(v.hex)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := ReadMessage(bytes.NewReader(frame))
		if err != nil {
			return
		}
		again, err := AppendFrame(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := ReadMessage(bytes.NewReader(again))
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip: %+v, %v; want %+v", m2, err, m)
		}
	})
}
