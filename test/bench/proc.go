package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat; it is
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// ProcSample is one look at a process.
type ProcSample struct {
	RSS, HWM int64         // bytes: VmRSS, and VmHWM (peak since start)
	CPU      time.Duration // utime + stime since start
}

// ReadProc reads /proc/<pid>/status and /proc/<pid>/stat.
func ReadProc(pid int) (ProcSample, error) {
	var s ProcSample
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			s.RSS = parseKB(v)
		} else if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			s.HWM = parseKB(v)
		}
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name (field 2) may hold spaces; fields after its ')' are fixed.
	rest := string(b)[strings.LastIndexByte(string(b), ')')+2:]
	f := strings.Fields(rest)
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	s.CPU = time.Duration(utime+stime) * time.Second / clockTicks
	return s, nil
}

func parseKB(v string) int64 {
	kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
	return kb << 10
}

// Usage is what a measurement window saw of one process.
type Usage struct {
	SteadyRSS   int64         // median VmRSS over the window
	PeakRSS     int64         // VmHWM at the end of the run
	CPUPerRound time.Duration // CPU time over the window / rounds in it
	Rounds      int
}

// MeasureIdle samples pid every second for rounds × resolution, with no queries
// running, and returns the median RSS and the CPU time per round.
func MeasureIdle(pid int, rounds int, resolution time.Duration) (Usage, error) {
	first, err := ReadProc(pid)
	if err != nil {
		return Usage{}, err
	}
	var rss []float64
	end := time.Now().Add(time.Duration(rounds) * resolution)
	for time.Now().Before(end) {
		time.Sleep(time.Second)
		s, err := ReadProc(pid)
		if err != nil {
			return Usage{}, err
		}
		rss = append(rss, float64(s.RSS))
	}
	last, err := ReadProc(pid)
	if err != nil {
		return Usage{}, err
	}
	return Usage{
		SteadyRSS:   int64(Percentile(rss, 50)),
		PeakRSS:     last.HWM,
		CPUPerRound: (last.CPU - first.CPU) / time.Duration(rounds),
		Rounds:      rounds,
	}, nil
}
