package log

import "sync"

// epochs counts requests in flight by the epoch they began in, so that the
// watermark can wait for all requests older than a moment to finish without
// stopping new ones.
type epochs struct {
	advanceMu sync.Mutex // serializes advance

	mu     sync.Mutex // guards cur, active
	cond   *sync.Cond
	cur    uint64
	active map[uint64]int
}

func (e *epochs) init() {
	e.cond = sync.NewCond(&e.mu)
	e.active = map[uint64]int{}
}

func (e *epochs) begin() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.active[e.cur]++
	return e.cur
}

func (e *epochs) end(epoch uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.active[epoch]--
	if e.active[epoch] == 0 {
		delete(e.active, epoch)
		e.cond.Broadcast()
	}
}

// advance starts a new epoch and waits until no request of an older one is
// in flight.
func (e *epochs) advance() {
	e.advanceMu.Lock()
	defer e.advanceMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.cur
	e.cur++
	for {
		busy := false
		for ep := range e.active {
			if ep <= old {
				busy = true
				break
			}
		}
		if !busy {
			return
		}
		e.cond.Wait()
	}
}
