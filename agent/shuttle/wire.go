package shuttle

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// Marshal encodes m as Go's protobuf encoder does: fields in ascending order, proto3 zero values
// left out, a set payload always written (an empty one as its tag and a zero length).
func Marshal(m *Message) []byte {
	var b []byte
	b = appendString(b, fieldID, m.ID)
	msg := func(num protowire.Number, set bool, body []byte) {
		if set {
			b = protowire.AppendTag(b, num, protowire.BytesType)
			b = protowire.AppendBytes(b, body)
		}
	}
	other := func(num protowire.Number) {
		if raw, ok := m.Other[num]; ok {
			msg(num, true, raw)
		}
	}
	if h := m.Hello; h != nil {
		var p []byte
		p = appendUint(p, 1, uint64(h.ProtocolVersion))
		p = appendString(p, 2, h.AgentVersion)
		p = appendString(p, 3, h.BootID)
		p = appendString(p, 4, h.NixVersion)
		msg(fieldHello, true, p)
	}
	if i := m.Init; i != nil {
		var p []byte
		p = appendString(p, 1, i.JobID)
		p = appendStrings(p, 2, i.CacheTrustedPublicKeys)
		p = appendUint(p, 3, uint64(i.CacheReadProxyPort))
		p = appendUint(p, 4, uint64(i.CacheUploadProxyPort))
		p = appendUint(p, 5, uint64(i.DNSProxyPort))
		msg(fieldInit, true, p)
	}
	if e := m.ExecStart; e != nil {
		var p []byte
		p = appendStrings(p, 1, e.Argv)
		p = appendStrings(p, 2, e.Env)
		p = appendString(p, 3, e.Cwd)
		p = appendString(p, 4, e.User)
		p = appendUint(p, 5, uint64(e.TimeoutSeconds))
		msg(fieldExecStart, true, p)
	}
	if o := m.ExecStdout; o != nil {
		msg(fieldExecStdout, true, appendString(nil, 1, o.Data))
	}
	if o := m.ExecStderr; o != nil {
		msg(fieldExecStderr, true, appendString(nil, 1, o.Data))
	}
	if e := m.ExecExit; e != nil {
		var p []byte
		p = appendUint(p, 1, uint64(int64(e.ExitCode))) // int32: sign-extended, as protobuf does
		p = appendString(p, 2, e.Error)
		if e.TimedOut {
			p = appendUint(p, 3, 1)
		}
		msg(fieldExecExit, true, p)
	}
	other(fieldActivateConfig)
	other(fieldActivateConfigResult)
	if bp := m.BuiltPaths; bp != nil {
		msg(fieldBuiltPaths, true, appendString(appendStrings(nil, 1, bp.Paths), 2, bp.Reason))
	}
	if c := m.CacheDrain; c != nil {
		msg(fieldCacheDrain, true, appendUint(nil, 1, uint64(c.TimeoutSeconds)))
	}
	if r := m.CacheDrainResult; r != nil {
		var p []byte
		p = appendString(p, 1, r.Error)
		p = appendUint(p, 2, uint64(r.CacheQueued))
		p = appendUint(p, 3, uint64(r.CacheActive))
		p = appendUint(p, 4, uint64(r.CacheUploaded))
		p = appendUint(p, 5, uint64(r.CacheFailed))
		msg(fieldCacheDrainResult, true, p)
	}
	msg(fieldPoweroff, m.Poweroff != nil, nil)
	if r := m.PoweroffResult; r != nil {
		msg(fieldPoweroffResult, true, appendString(nil, 1, r.Error))
	}
	for _, num := range slices.Sorted(maps.Keys(m.Other)) {
		if num > fieldPoweroffResult {
			other(num)
		}
	}
	return b
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), s)
}

func appendStrings(b []byte, num protowire.Number, ss []string) []byte {
	for _, s := range ss {
		b = protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), s)
	}
	return b
}

func appendUint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
}

// Unmarshal decodes a Message. Unknown fields are skipped; a field of the wrong wire type or a
// truncated one is an error. It does not Validate.
func Unmarshal(b []byte) (*Message, error) {
	m := &Message{}
	err := fields(b, func(num protowire.Number, f field) error {
		var err error
		switch num {
		case fieldID:
			m.ID, err = f.str()
		case fieldHello:
			m.Hello = &Hello{}
			err = f.msg(func(n protowire.Number, g field) (err error) {
				switch n {
				case 1:
					m.Hello.ProtocolVersion, err = g.u32()
				case 2:
					m.Hello.AgentVersion, err = g.str()
				case 3:
					m.Hello.BootID, err = g.str()
				case 4:
					m.Hello.NixVersion, err = g.str()
				}
				return err
			})
		case fieldInit:
			m.Init = &Init{}
			err = f.msg(func(n protowire.Number, g field) (err error) {
				i := m.Init
				switch n {
				case 1:
					i.JobID, err = g.str()
				case 2:
					err = g.appendStr(&i.CacheTrustedPublicKeys)
				case 3:
					i.CacheReadProxyPort, err = g.u32()
				case 4:
					i.CacheUploadProxyPort, err = g.u32()
				case 5:
					i.DNSProxyPort, err = g.u32()
				}
				return err
			})
		case fieldExecStart:
			m.ExecStart = &ExecStart{}
			err = f.msg(func(n protowire.Number, g field) (err error) {
				e := m.ExecStart
				switch n {
				case 1:
					err = g.appendStr(&e.Argv)
				case 2:
					err = g.appendStr(&e.Env)
				case 3:
					e.Cwd, err = g.str()
				case 4:
					e.User, err = g.str()
				case 5:
					e.TimeoutSeconds, err = g.u32()
				}
				return err
			})
		case fieldExecStdout, fieldExecStderr:
			o := &ExecOutput{}
			if num == fieldExecStdout {
				m.ExecStdout = o
			} else {
				m.ExecStderr = o
			}
			err = f.msg(func(n protowire.Number, g field) (err error) {
				if n == 1 {
					o.Data, err = g.str()
				}
				return err
			})
		case fieldExecExit:
			m.ExecExit = &ExecExit{}
			err = f.msg(func(n protowire.Number, g field) (err error) {
				e := m.ExecExit
				switch n {
				case 1:
					var v uint64
					v, err = g.varint()
					e.ExitCode = int32(v)
				case 2:
					e.Error, err = g.str()
				case 3:
					var v uint64
					v, err = g.varint()
					e.TimedOut = v != 0
				}
				return err
			})
		case fieldBuiltPaths:
			m.BuiltPaths = &BuiltPaths{}
			err = f.msg(func(n protowire.Number, g field) (err error) {
				switch n {
				case 1:
					err = g.appendStr(&m.BuiltPaths.Paths)
				case 2:
					m.BuiltPaths.Reason, err = g.str()
				}
				return err
			})
		case fieldCacheDrain:
			m.CacheDrain = &CacheDrain{}
			err = f.msg(func(n protowire.Number, g field) (err error) {
				if n == 1 {
					m.CacheDrain.TimeoutSeconds, err = g.u32()
				}
				return err
			})
		case fieldCacheDrainResult:
			r := &CacheDrainResult{}
			m.CacheDrainResult = r
			err = f.msg(func(n protowire.Number, g field) (err error) {
				switch n {
				case 1:
					r.Error, err = g.str()
				case 2:
					r.CacheQueued, err = g.u32()
				case 3:
					r.CacheActive, err = g.u32()
				case 4:
					r.CacheUploaded, err = g.u32()
				case 5:
					r.CacheFailed, err = g.u32()
				}
				return err
			})
		case fieldPoweroff:
			m.Poweroff = &Poweroff{}
			err = f.msg(func(protowire.Number, field) error { return nil })
		case fieldPoweroffResult:
			m.PoweroffResult = &PoweroffResult{}
			err = f.msg(func(n protowire.Number, g field) (err error) {
				if n == 1 {
					m.PoweroffResult.Error, err = g.str()
				}
				return err
			})
		default:
			if _, ok := otherPayloads[num]; ok {
				var raw []byte
				if raw, err = f.bytes(); err == nil {
					if m.Other == nil {
						m.Other = map[protowire.Number][]byte{}
					}
					m.Other[num] = raw
				}
			}
		}
		if err != nil {
			return fmt.Errorf("field %d: %w", num, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("shuttle message: %w", err)
	}
	return m, nil
}

// field is one decoded field: its wire type and value (a varint, or the bytes of a
// length-delimited field).
type field struct {
	typ protowire.Type
	v   uint64
	b   []byte
}

var errWireType = errors.New("wrong wire type")

func (f field) varint() (uint64, error) {
	if f.typ != protowire.VarintType {
		return 0, errWireType
	}
	return f.v, nil
}

func (f field) u32() (uint32, error) {
	v, err := f.varint()
	return uint32(v), err
}

func (f field) bytes() ([]byte, error) {
	if f.typ != protowire.BytesType {
		return nil, errWireType
	}
	return f.b, nil
}

func (f field) str() (string, error) {
	b, err := f.bytes()
	return string(b), err
}

func (f field) appendStr(to *[]string) error {
	s, err := f.str()
	if err == nil {
		*to = append(*to, s)
	}
	return err
}

func (f field) msg(each func(protowire.Number, field) error) error {
	b, err := f.bytes()
	if err != nil {
		return err
	}
	return fields(b, each)
}

// fields calls each for every field of an encoded message; fields of other wire types (fixed32,
// fixed64, groups) are skipped after checking that they are well formed.
func fields(b []byte, each func(protowire.Number, field) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var f field
		f.typ = typ
		switch typ {
		case protowire.VarintType:
			f.v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.VarintType && typ != protowire.BytesType {
			continue
		}
		if err := each(num, f); err != nil {
			return err
		}
	}
	return nil
}
