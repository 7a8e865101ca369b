package analysis

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"sync"
)

// clientCache keeps one Client (and its connection pool) per Prometheus address and
// credentials. Entries are keyed by a hash of the address and the Secret's contents, so a
// rotated Secret gets a fresh client and no secret value is kept as a map key.
type clientCache struct {
	mu      sync.Mutex
	max     int
	entries map[string]*Client
	order   []string // oldest first
}

func newClientCache(max int) *clientCache {
	if max < 1 {
		max = 1
	}
	return &clientCache{max: max, entries: map[string]*Client{}}
}

func (c *clientCache) get(address string, secret map[string][]byte) (*Client, error) {
	key := cacheKey(address, secret)
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.entries[key]; ok {
		return cl, nil
	}
	cl, err := newClientFor(address, secret)
	if err != nil {
		return nil, err
	}
	for len(c.order) >= c.max {
		old := c.order[0]
		c.order = c.order[1:]
		c.entries[old].CloseIdleConnections()
		delete(c.entries, old)
	}
	c.entries[key] = cl
	c.order = append(c.order, key)
	return cl, nil
}

func (c *clientCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func cacheKey(address string, secret map[string][]byte) string {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte(address))
	keys := make([]string, 0, len(secret))
	for k := range secret {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		field([]byte(k))
		field(secret[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}
