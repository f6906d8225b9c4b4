package ipc

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
)

// MaxNameLen is the longest attribute name accepted by Encode and Decode.
// The wire format would allow 65535 bytes; no attribute name in Postern
// comes near 64, so anything longer is treated as a malformed frame.
const MaxNameLen = 64

type attr struct {
	name, value string
}

// Msg is one request or reply: an ordered list of named attributes. Names
// may repeat (one "rcpt" per recipient) and their order is kept on the
// wire. Values are arbitrary bytes. The zero value is an empty message.
type Msg struct {
	attrs []attr
}

// NewMsg returns a message made of name/value pairs. A trailing name
// without a value gets the empty value.
func NewMsg(kv ...string) *Msg {
	m := &Msg{attrs: make([]attr, 0, (len(kv)+1)/2)}
	for i := 0; i < len(kv); i += 2 {
		v := ""
		if i+1 < len(kv) {
			v = kv[i+1]
		}
		m.attrs = append(m.attrs, attr{kv[i], v})
	}
	return m
}

// Add appends an attribute and returns m for chaining. Names are checked
// by Encode, not here, so that building a message never fails half way.
// On a nil *Msg it returns a new message holding the one attribute.
func (m *Msg) Add(name, value string) *Msg {
	if m == nil {
		m = &Msg{}
	}
	m.attrs = append(m.attrs, attr{name, value})
	return m
}

// AddInt appends an attribute holding v in decimal.
func (m *Msg) AddInt(name string, v int64) *Msg {
	return m.Add(name, strconv.FormatInt(v, 10))
}

// Get returns the first value of name, or "" if there is none.
func (m *Msg) Get(name string) string {
	if m == nil {
		return ""
	}
	for _, a := range m.attrs {
		if a.name == name {
			return a.value
		}
	}
	return ""
}

// Int returns the first value of name parsed as a decimal int64. The error
// names the attribute, so that a daemon can log it as it stands.
func (m *Msg) Int(name string) (int64, error) {
	if !m.Has(name) {
		return 0, fmt.Errorf("ipc: attribute %q missing", name)
	}
	v := m.Get(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("ipc: attribute %q: bad integer %.40q", name, v)
	}
	return n, nil
}

// All returns every value of name in order, or nil.
func (m *Msg) All(name string) []string {
	if m == nil {
		return nil
	}
	var vs []string
	for _, a := range m.attrs {
		if a.name == name {
			vs = append(vs, a.value)
		}
	}
	return vs
}

// Has reports whether name occurs at least once.
func (m *Msg) Has(name string) bool {
	if m == nil {
		return false
	}
	for _, a := range m.attrs {
		if a.name == name {
			return true
		}
	}
	return false
}

// Len returns the number of attributes.
func (m *Msg) Len() int {
	if m == nil {
		return 0
	}
	return len(m.attrs)
}

// Names returns the attribute names in order, repeats included; for
// logging a message without its values, which may hold secrets.
func (m *Msg) Names() []string {
	if m == nil {
		return nil
	}
	ns := make([]string, len(m.attrs))
	for i, a := range m.attrs {
		ns[i] = a.name
	}
	return ns
}

// ValidName reports whether s may be used as an attribute name: 1 to
// MaxNameLen bytes of [a-z0-9_].
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Encode returns the payload of m (without the 4-byte frame length). It
// fails on an invalid name or a value longer than the 32-bit length field.
func Encode(m *Msg) ([]byte, error) {
	n, err := payloadLen(m)
	if err != nil {
		return nil, err
	}
	return appendPayload(make([]byte, 0, n), m), nil
}

// appendPayload appends the encoding of m, whose names have been checked.
func appendPayload(b []byte, m *Msg) []byte {
	if m == nil {
		return b
	}
	for _, a := range m.attrs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.name)))
		b = append(b, a.name...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(a.value)))
		b = append(b, a.value...)
	}
	return b
}

// payloadLen returns the encoded size of m, or an error as Encode would.
func payloadLen(m *Msg) (int, error) {
	n := 0
	if m == nil {
		return 0, nil
	}
	for i, a := range m.attrs {
		if !ValidName(a.name) {
			return 0, fmt.Errorf("ipc: attribute %d: invalid name %.70q", i, a.name)
		}
		if uint64(len(a.value)) > math.MaxUint32 {
			return 0, fmt.Errorf("ipc: attribute %q: value of %d bytes too long", a.name, len(a.value))
		}
		n += 2 + len(a.name) + 4 + len(a.value)
	}
	return n, nil
}

// Decode parses a frame payload. Its size is bounded by the caller (the
// frame limit), and the memory it uses is the payload once plus one small
// header per attribute. Errors give the byte offset of the problem.
func Decode(payload []byte) (*Msg, error) {
	// One string for the whole payload: every name and value is a
	// substring of it, so decoding costs one copy however many
	// attributes there are.
	s := string(payload)
	m := &Msg{}
	for i := 0; i < len(s); {
		start := i
		if len(s)-i < 2 {
			return nil, fmt.Errorf("ipc: attribute %d at offset %d: truncated name length", len(m.attrs), start)
		}
		nl := int(s[i])<<8 | int(s[i+1])
		i += 2
		if nl == 0 || nl > MaxNameLen {
			return nil, fmt.Errorf("ipc: attribute %d at offset %d: bad name length %d", len(m.attrs), start, nl)
		}
		if len(s)-i < nl {
			return nil, fmt.Errorf("ipc: attribute %d at offset %d: truncated name", len(m.attrs), start)
		}
		name := s[i : i+nl]
		i += nl
		if !ValidName(name) {
			return nil, fmt.Errorf("ipc: attribute %d at offset %d: invalid name %q", len(m.attrs), start, name)
		}
		if len(s)-i < 4 {
			return nil, fmt.Errorf("ipc: attribute %q at offset %d: truncated value length", name, start)
		}
		vl := uint64(s[i])<<24 | uint64(s[i+1])<<16 | uint64(s[i+2])<<8 | uint64(s[i+3])
		i += 4
		if vl > uint64(len(s)-i) {
			return nil, fmt.Errorf("ipc: attribute %q at offset %d: value length %d exceeds frame", name, start, vl)
		}
		m.attrs = append(m.attrs, attr{name, s[i : i+int(vl)]})
		i += int(vl)
	}
	return m, nil
}
