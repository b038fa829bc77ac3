package log

import (
	"testing"
	"time"
)

// The exported defaults are what a zero Config gets: the command's flags
// show them, so --help and the server must not disagree.
func TestConfigDefaults(t *testing.T) {
	var c Config
	c.setDefaults()
	for _, d := range []struct {
		name      string
		got, want any
	}{
		{"MaxBody", c.MaxBody, int64(DefaultMaxBody)},
		{"MaxInFlight", c.MaxInFlight, DefaultMaxInFlight},
		{"MaxEventsPerRequest", c.MaxEventsPerRequest, DefaultMaxEventsPerRequest},
		{"MaxInFlightBytes", c.MaxInFlightBytes, int64(DefaultMaxInFlightBytes)},
		{"BatchSize", c.BatchSize, uint(DefaultBatchSize)},
		{"BatchAge", c.BatchAge, DefaultBatchAge},
		{"CheckpointInterval", c.CheckpointInterval, DefaultCheckpointInterval},
		{"RepublishInterval", c.RepublishInterval, DefaultRepublishInterval},
		{"WitnessTimeout", c.WitnessTimeout, DefaultWitnessTimeout},
		{"WitnessWaitTimeout", c.WitnessWaitTimeout, DefaultWitnessWaitTimeout},
		{"StrayTempAge", c.StrayTempAge, defaultStrayTempAge},
		{"Linger", c.Linger, time.Duration(0)},
	} {
		if d.got != d.want {
			t.Errorf("%s: %v (%T), want %v (%T)", d.name, d.got, d.got, d.want, d.want)
		}
	}
	// On MySQL (and S3), the checkpoint interval's default is the least
	// Tessera's MySQL driver takes.
	m := Config{MySQL: "user@tcp(db)/log"}
	m.setDefaults()
	if m.CheckpointInterval != DefaultMySQLCheckpointInterval {
		t.Errorf("CheckpointInterval on MySQL: %v, want %v", m.CheckpointInterval, DefaultMySQLCheckpointInterval)
	}
}
