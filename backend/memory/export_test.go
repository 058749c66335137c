package memory

// AddClamped exports addClamped to the external tests.
var AddClamped = addClamped

// MaxProbe returns the longest distance, over every shard, from a key's
// home cell to the cell that holds it: a lookup of that key visits as many
// cells more than one of a key at home.
func MaxProbe(s *Store) int {
	longest := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		mask := len(sh.cells) - 1
		for j := range sh.cells {
			if h := sh.cells[j].hash; h != 0 {
				longest = max(longest, (j-int(h))&mask)
			}
		}
		sh.mu.Unlock()
	}
	return longest
}
