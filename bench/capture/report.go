package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// bench is one run: the binary under test, its own database and topic prefix, and the results.
type bench struct {
	bin, adminURL, dsn, dbName, brokers, prefix string
	baseBin                                     string // drained in every round too, when set
	runID                                       string // in the backlog runs' slot names
	recvAll                                     bool   // pg_recvlogical drains the capture-only backlogs too
	useBase                                     bool   // drainWithCapture runs baseBin
	maxItems, itemBytes, rounds                 int
	log                                         io.Writer
	results                                     [][2]string
}

func (b *bench) result(key string, v float64, format string) {
	b.results = append(b.results, [2]string{key, fmt.Sprintf(format, v)})
}

func (b *bench) say(format string, args ...any) { fmt.Fprintf(b.log, format+"\n", args...) }

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown cpu"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			return strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
		}
	}
	return "unknown cpu"
}

func numCPU() int {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

// sizeKey names a backlog size in result keys: 100000 -> 100k, 2000000 -> 2m.
func sizeKey(n int) string {
	if n >= 1_000_000 && n%1_000_000 == 0 {
		return fmt.Sprintf("%dm", n/1_000_000)
	}
	return fmt.Sprintf("%dk", n/1000)
}
