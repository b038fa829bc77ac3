package witness

import "testing"

// The exported defaults are what a zero Config gets: the command's flags
// show them.
func TestConfigDefaults(t *testing.T) {
	var c Config
	c.setDefaults()
	if c.GlobalQPS != DefaultGlobalQPS || c.PollInterval != DefaultPollInterval || c.MaxEvidence != DefaultMaxEvidence {
		t.Errorf("GlobalQPS %v, PollInterval %v, MaxEvidence %v; want %v, %v, %v", c.GlobalQPS, c.PollInterval, c.MaxEvidence, DefaultGlobalQPS, DefaultPollInterval, DefaultMaxEvidence)
	}
}
