package main

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// startupSecs is how long capture took from process start to streaming, from its metrics.
func startupSecs(addr string) float64 {
	start, _ := gauge(addr, "process_start_time_seconds")
	streaming, _ := gauge(addr, "orderflow_capture_streaming_since_seconds")
	if start == 0 || streaming == 0 {
		return 0
	}
	return streaming - start
}

func gauge(addr, name string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		if f := strings.Fields(s.Text()); len(f) == 2 && f[0] == name {
			return strconv.ParseFloat(f[1], 64)
		}
	}
	return 0, fmt.Errorf("no metric %s", name)
}

type bucket struct{ le, n float64 }

func histogram(addr, name string) ([]bucket, float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var bs []bucket
	var count float64
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		line := s.Text()
		switch {
		case strings.HasPrefix(line, name+"_bucket{le=\""):
			rest := strings.TrimPrefix(line, name+"_bucket{le=\"")
			i := strings.Index(rest, "\"")
			le, err := strconv.ParseFloat(rest[:i], 64)
			if err != nil {
				le = math.Inf(1)
			}
			f := strings.Fields(rest)
			n, _ := strconv.ParseFloat(f[len(f)-1], 64)
			bs = append(bs, bucket{le, n})
		case strings.HasPrefix(line, name+"_count "):
			count, _ = strconv.ParseFloat(strings.Fields(line)[1], 64)
		}
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if count == 0 {
		return nil, 0, errors.New("no latency observations")
	}
	return bs, count, nil
}

// quantile interpolates linearly inside the bucket, as Prometheus' histogram_quantile does.
func quantile(bs []bucket, count, q float64) float64 {
	rank := q * count
	prevLE, prevN := 0.0, 0.0
	for _, b := range bs {
		if b.n >= rank {
			if math.IsInf(b.le, 1) {
				return prevLE
			}
			return prevLE + (b.le-prevLE)*(rank-prevN)/(b.n-prevN)
		}
		prevLE, prevN = b.le, b.n
	}
	return prevLE
}
