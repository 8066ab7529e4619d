package plugin

import "sync"

// inventory is what NRI told the plugin exists: pod sandboxes and
// containers, by id. It is authoritative only between a Synchronize and the
// loss of the connection; garbage collection must not trust it otherwise.
type inventory struct {
	mu     sync.Mutex
	pods   map[string]bool
	ctrs   map[string]string // container id -> pod sandbox id
	synced bool
}

func newInventory() *inventory {
	return &inventory{pods: map[string]bool{}, ctrs: map[string]string{}}
}

// reset replaces the whole inventory with what a Synchronize reported.
func (v *inventory) reset(pods map[string]bool, ctrs map[string]string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.pods, v.ctrs, v.synced = pods, ctrs, true
}

// disconnected marks the inventory stale until the next Synchronize.
func (v *inventory) disconnected() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.synced = false
}

func (v *inventory) addPod(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.pods[id] = true
}

func (v *inventory) addContainer(id, pod string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.ctrs[id] = pod
	v.pods[pod] = true
}

func (v *inventory) removeContainer(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.ctrs, id)
}

// removePod forgets a pod and returns the ids of the containers it had.
func (v *inventory) removePod(id string) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.pods, id)
	var ids []string
	for c, p := range v.ctrs {
		if p == id {
			ids = append(ids, c)
			delete(v.ctrs, c)
		}
	}
	return ids
}

// Known returns the ids of every pod sandbox and container NRI reported,
// and whether that set is authoritative (synchronized and connected).
func (v *inventory) Known() (map[string]bool, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	ids := make(map[string]bool, len(v.pods)+len(v.ctrs))
	for id := range v.pods {
		ids[id] = true
	}
	for id := range v.ctrs {
		ids[id] = true
	}
	return ids, v.synced
}
