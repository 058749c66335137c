package memcache

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"

	gm "github.com/bradfitz/gomemcache/memcache"
)

// RendezvousSelector is a gomemcache.ServerSelector that picks a key's
// server by rendezvous (highest random weight) hashing: every server scores
// the key, and the highest score wins. When a server is added, only the
// keys it now wins move to it (about 1/n of them with n servers); when one
// is removed, only its own keys move. gomemcache's default ServerList
// (crc32 of the key modulo the number of servers) moves most keys instead,
// which for lockout means resetting most counters and lifting most locks.
//
// A key holding a hash tag is placed by the tag alone, as in Redis Cluster:
// the bytes between its first '{' and the next '}', when not empty. lockout
// wraps the subject part of its keys in a tag, so a rule key's counter, lock
// marker and lockout history live on one server: read in one request, and
// lost or kept together.
//
// Scores depend only on the key (or its tag) and the server's name as given
// to SetServers, not on the order of the list nor on name resolution, so
// application instances agree when they list the same names. A server
// listed k times gets k times the share of keys.
//
// The zero value has no servers. RendezvousSelector is safe for concurrent
// use; SetServers may be called at any time.
type RendezvousSelector struct {
	nodes atomic.Pointer[[]rendezvousNode]
}

var _ gm.ServerSelector = (*RendezvousSelector)(nil)

type rendezvousNode struct {
	addr net.Addr
	seed uint64 // hash of the server's name (and occurrence)
	dup  bool   // an earlier node has the same name
}

// SetServers replaces the servers: "host:port" for TCP, or a path (a name
// containing '/') for a Unix socket. Names are resolved now; on error
// nothing changes.
func (s *RendezvousSelector) SetServers(servers ...string) error {
	nodes := make([]rendezvousNode, len(servers))
	seen := make(map[string]int, len(servers))
	for i, name := range servers {
		var addr net.Addr
		var err error
		if strings.Contains(name, "/") {
			addr, err = net.ResolveUnixAddr("unix", name)
		} else {
			addr, err = net.ResolveTCPAddr("tcp", name)
		}
		if err != nil {
			return fmt.Errorf("memcache: server %q: %w", name, err)
		}
		id := name
		if k := seen[name]; k > 0 {
			id = name + "\x00" + strconv.Itoa(k)
		}
		seen[name]++
		nodes[i] = rendezvousNode{
			addr: staticAddr{network: addr.Network(), str: addr.String()},
			seed: mix64(fnv1a(id)),
			dup:  seen[name] > 1,
		}
	}
	s.nodes.Store(&nodes)
	return nil
}

// PickServer returns the server whose score for key is highest.
func (s *RendezvousSelector) PickServer(key string) (net.Addr, error) {
	p := s.nodes.Load()
	if p == nil || len(*p) == 0 {
		return nil, gm.ErrNoServers
	}
	return (*p)[pick(*p, key)].addr, nil
}

// pick returns the index of the node whose score for key is highest.
func pick(nodes []rendezvousNode, key string) int {
	if len(nodes) == 1 {
		return 0
	}
	h := fnv1a(hashTag(key))
	best, bestScore := 0, uint64(0)
	for i, n := range nodes {
		if sc := mix64(h ^ n.seed); sc > bestScore || i == 0 {
			best, bestScore = i, sc
		}
	}
	return best
}

// Each calls f on each server once, stopping at the first error.
func (s *RendezvousSelector) Each(f func(net.Addr) error) error {
	p := s.nodes.Load()
	if p == nil {
		return nil
	}
	for _, n := range *p {
		if n.dup {
			continue
		}
		if err := f(n.addr); err != nil {
			return err
		}
	}
	return nil
}

// hashTag returns the part of key that places it: as in Redis Cluster, the
// bytes between the first '{' and the first '}' after it, when there are
// any; else the whole key.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// staticAddr is a resolved address, cheap to pass around (gomemcache keys
// its connection pool by String()).
type staticAddr struct{ network, str string }

func (a staticAddr) Network() string { return a.network }
func (a staticAddr) String() string  { return a.str }

// fnv1a is the 64-bit FNV-1a hash of s.
func fnv1a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// mix64 is the splitmix64 finaliser: a bijection on uint64 in which every
// input bit flips about half the output bits, so that the scores of one key
// on different servers behave as independent random numbers.
func mix64(z uint64) uint64 {
	z ^= z >> 30
	z *= 0xbf58476d1ce4e5b9
	z ^= z >> 27
	z *= 0x94d049bb133111eb
	z ^= z >> 31
	return z
}
