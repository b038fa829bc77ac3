package main

import (
	"encoding/json"
	"testing"
)

func TestCorpusSizesAndIDs(t *testing.T) {
	for _, size := range []int{300, 500, 1000, 4000} {
		c, err := buildCorpus(512, size, 1)
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
	a, _ := buildCorpus(64, 500, 7)
	b, _ := buildCorpus(64, 500, 7)
	for i := range a {
		if string(a[i].body) != string(b[i].body) {
			t.Fatalf("event %d differs between two builds with the same seed", i)
		}
	}
}
