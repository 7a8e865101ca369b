// Package version says which build of ramp is running. Release builds (make image, make
// build) stamp Version and Commit with -ldflags -X; a plain `go build` or `go run` falls back
// to what the Go toolchain recorded (the VCS revision, "devel" for the version).
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Stamped by the linker: -X github.com/ramp-dev/ramp/internal/version.Version=0.1.0 (and Commit).
var (
	Version = ""
	Commit  = ""
)

// Info is a build's identity.
type Info struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
	// Modified: the build's tree had uncommitted changes (as Go recorded it; unknown when stamped).
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"goVersion"`
}

// Get returns this binary's identity.
func Get() Info {
	info := Info{Version: Version, Commit: Commit, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok && info.Commit == "" {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}

// String is the one line `manager --version` and `kubectl ramp version` print.
func (i Info) String() string {
	commit := i.Commit
	if i.Modified {
		commit += " (modified)"
	}
	return fmt.Sprintf("ramp %s, commit %s, %s", i.Version, commit, i.GoVersion)
}
