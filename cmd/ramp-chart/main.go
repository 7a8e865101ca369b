// Command ramp-chart packages ramp's Helm chart with Helm's own library (make chart), so a
// release needs no helm binary. It is apart from ramp-release so that Helm is built only for
// the chart.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/ramp-dev/ramp/charts"
)

func main() {
	dir := flag.String("chart", "charts/ramp", "the chart's directory")
	version := flag.String("version", "", "the chart's version and appVersion (the VERSION file's); the image tag defaults to v<version>")
	out := flag.String("out", "bin", "directory to write <name>-<version>.tgz into")
	flag.Parse()
	if *version == "" {
		fmt.Fprintln(os.Stderr, "ramp-chart: --version is required")
		os.Exit(2)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "ramp-chart:", err)
		os.Exit(1)
	}
	path, err := charts.Package(*dir, *version, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ramp-chart:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}
