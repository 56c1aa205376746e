package spool

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

// IDLen is the length of a queue ID.
const IDLen = idTimeLen + idRandLen

const (
	idTimeLen = 11 // 55 bits of microseconds since 1970: until the year 3111
	idRandLen = 8  // 40 random bits
	// base32 "extended hex" alphabet (RFC 4648 §7), lower case: its ASCII
	// order is its numeric order, so IDs sort by arrival time.
	idAlphabet = "0123456789abcdefghijklmnopqrstuv"
)

// ValidID reports whether id has the form of a queue ID. Only such IDs are
// used to build file names, so no ID can reach outside the spool.
func ValidID(id string) bool {
	if len(id) != IDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'v') {
			return false
		}
	}
	return true
}

// idGen makes queue IDs that increase strictly within one process, even
// when the clock stands still or steps back.
type idGen struct {
	mu   sync.Mutex
	last int64 // microseconds used by the previous ID
}

func (g *idGen) next(now time.Time) string {
	us := max(now.UnixMicro(), 0)
	g.mu.Lock()
	if us <= g.last {
		us = g.last + 1
	}
	g.last = us
	g.mu.Unlock()

	var b [IDLen]byte
	for i := idTimeLen - 1; i >= 0; i-- {
		b[i] = idAlphabet[us&31]
		us >>= 5
	}
	var r [8]byte
	rand.Read(r[:5]) // never fails (crypto/rand since Go 1.24)
	x := binary.LittleEndian.Uint64(r[:])
	for i := IDLen - 1; i >= idTimeLen; i-- {
		b[i] = idAlphabet[x&31]
		x >>= 5
	}
	return string(b[:])
}
