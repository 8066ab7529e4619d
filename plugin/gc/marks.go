package gc

import "time"

// Marks is execguard's one garbage-collection rule, for every kind of file
// in the state dir: a pass that finds an object collectable marks it with
// the time; a later pass removes it once it stayed collectable for the
// kind's grace period. Two passes at least, so that an object that became
// collectable a moment ago (a wrapper whose snapshot was just replaced, a
// record the shim has just closed) is never removed by the pass that first
// sees it. Marks live in memory: a restart only delays a removal.
type Marks[K comparable] map[K]time.Time

// Due marks k as collectable at now, if it was not, and reports whether it
// has been so for at least grace, since an earlier pass.
func (m Marks[K]) Due(k K, now time.Time, grace time.Duration) bool {
	since, ok := m[k]
	if !ok {
		m[k] = now
		return false
	}
	return now.Sub(since) >= grace
}

// Since is when k was marked (zero if it is not).
func (m Marks[K]) Since(k K) time.Time { return m[k] }

// Unmark forgets k: it is needed again, or gone.
func (m Marks[K]) Unmark(k K) { delete(m, k) }
