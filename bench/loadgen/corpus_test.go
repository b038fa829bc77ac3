package main

import (
	"encoding/json"
	"testing"
)

func TestCorpusSizesAndIDs(t *testing.T) {
	for _, size := range []int{300, 500, 1000, 4000} {
		c, err := buildCorpus(512, size, 1, spread{})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for i, tpl := range c {
			if n := len(tpl.body); n < size*95/100 || n > size*105/100 {
				t.Errorf("size %d: event %d is %d bytes", size, i, n)
			}
			b := tpl.appendTo(nil, "0a1b2c3d", i, uint64(i)*7919)
			if len(b) != len(tpl.body) {
				t.Fatalf("stamping changed the size")
			}
			var ev map[string]any
			if err := json.Unmarshal(b, &ev); err != nil {
				t.Fatalf("event %d: %v: %s", i, err, b)
			}
			id := ev["id"].(string)
			if seen[id] {
				t.Fatalf("duplicate id %s", id)
			}
			seen[id] = true
			for _, k := range []string{"time", "actor", "action", "resource", "outcome", "details"} {
				if _, ok := ev[k]; !ok {
					t.Fatalf("event %d lacks %s", i, k)
				}
			}
		}
	}
}

func TestCorpusDeterministic(t *testing.T) {
	a, _ := buildCorpus(64, 500, 7, spread{})
	b, _ := buildCorpus(64, 500, 7, spread{})
	for i := range a {
		if string(a[i].body) != string(b[i].body) {
			t.Fatalf("event %d differs between two builds with the same seed", i)
		}
	}
}

func TestCorpusSpread(t *testing.T) {
	c, err := buildCorpus(256, 500, 1, spread{actors: 10000, actions: 50, resources: 1000})
	if err != nil {
		t.Fatal(err)
	}
	actors := map[string]bool{}
	for s := range uint64(20000) {
		i := int(s % uint64(len(c)))
		b := c[i].appendTo(nil, "0a1b2c3d", i, s)
		if len(b) != len(c[i].body) {
			t.Fatalf("stamping changed the size")
		}
		var ev struct {
			Actor            struct{ Name string }
			Action, Resource string
		}
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatalf("event %d: %v: %s", i, err, b)
		}
		if len(ev.Actor.Name) != len("user-0000") || ev.Actor.Name[:5] != "user-" {
			t.Fatalf("actor %q", ev.Actor.Name)
		}
		actors[ev.Actor.Name] = true
	}
	// 20,000 draws over 10,000 actors: about 8,650 distinct.
	if n := len(actors); n < 8000 || n > 9200 {
		t.Errorf("%d distinct actors in 20,000 sends", n)
	}
	if a := actorName(42, 10000); a != "user-0042" {
		t.Errorf("actorName = %q", a)
	}
}
