package connscope

import (
	"crypto/rand"
	"encoding/hex"
)

// ID identifies one connection for its whole life, reuse from a pool
// included. It is a random (version 4) UUID.
type ID [16]byte

// NewID returns a fresh random ID.
func NewID() ID {
	var id ID
	rand.Read(id[:]) // never fails (crypto/rand panics rather than return an error since Go 1.24)
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return id
}

// IsZero reports whether id is the zero ID (no connection).
func (id ID) IsZero() bool { return id == ID{} }

// String returns the canonical 8-4-4-4-12 form.
func (id ID) String() string { return string(id.AppendText(nil)) }

// AppendText appends the canonical form to b without allocating when b has room.
func (id ID) AppendText(b []byte) []byte {
	var s [36]byte
	hex.Encode(s[0:8], id[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], id[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], id[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], id[8:10])
	s[23] = '-'
	hex.Encode(s[24:], id[10:])
	return append(b, s[:]...)
}

// MarshalText implements encoding.TextMarshaler.
func (id ID) MarshalText() ([]byte, error) { return id.AppendText(nil), nil }
