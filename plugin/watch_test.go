package plugin

import "testing"

func TestConcernsConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"/etc/eg/config.toml", true},
		{"/etc/eg/..data", true},
		{"/etc/eg/..2026_11_28_16_00_00.123", true},
		{"/etc/eg/plugin.log", false},
		{"/etc/eg/.config.toml.swp", false},
	} {
		if got := concernsConfig(tc.name, "/etc/eg/config.toml"); got != tc.want {
			t.Errorf("concernsConfig(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}
