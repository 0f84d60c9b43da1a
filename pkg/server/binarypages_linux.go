package server

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// releaseBinaryPages advises the kernel that the gateway's own executable
// is read at random (no read-around when one of its pages is touched) and
// pages out what of it is resident, once the gateway has started. It
// returns the binary's resident bytes before and after.
//
// The binary is large (API machinery, Prometheus' scrape, TSDB and PromQL,
// metrics-server's and the custom-metrics server's libraries: ~100 MB of
// text, read-only data and the function table), and most of it runs at
// most once: package initialisation, flag parsing, the first lists, WAL
// replay. Each page touched reads 128 kB around it, so after startup about
// 70 MB of it is resident (docs/benchmarks.md). Clean file pages cost
// nothing to drop; the pages the steady state uses fault back one by one.
func releaseBinaryPages() (before, after int64, err error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, 0, err
	}
	regions, before, err := binaryMappings(exe)
	if err != nil {
		return 0, 0, err
	}
	if len(regions) == 0 {
		return 0, 0, fmt.Errorf("no read-only mapping of %s in /proc/self/smaps", exe)
	}
	for _, r := range regions {
		if err := madvise(r[0], r[1]-r[0], unix.MADV_RANDOM); err != nil {
			return before, before, fmt.Errorf("madvise(MADV_RANDOM): %w", err)
		}
		if err := madvise(r[0], r[1]-r[0], unix.MADV_PAGEOUT); err != nil {
			// Kernels before 5.4: deactivate the pages instead, so
			// reclaim takes them first.
			if err := madvise(r[0], r[1]-r[0], unix.MADV_COLD); err != nil {
				return before, before, fmt.Errorf("madvise(MADV_PAGEOUT): %w", err)
			}
		}
	}
	_, after, err = binaryMappings(exe)
	return before, after, err
}

func madvise(addr, length uintptr, advice int) error {
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, addr, length, uintptr(advice)); errno != 0 {
		return errno
	}
	return nil
}

// binaryMappings returns the read-only (not writable) mappings of exe in
// /proc/self/smaps and their resident bytes.
func binaryMappings(exe string) (regions [][2]uintptr, resident int64, err error) {
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return nil, 0, err
	}
	in := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			in = len(f) >= 6 && f[5] == exe && !strings.Contains(f[1], "w")
			if !in {
				continue
			}
			lo, hi, ok := strings.Cut(f[0], "-")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if !ok || err1 != nil || err2 != nil {
				return nil, 0, fmt.Errorf("/proc/self/smaps: bad range %q", f[0])
			}
			regions = append(regions, [2]uintptr{uintptr(start), uintptr(end)})
			continue
		}
		if in && len(f) >= 2 && f[0] == "Rss:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return nil, 0, fmt.Errorf("/proc/self/smaps: %q", sc.Text())
			}
			resident += kb << 10
		}
	}
	return regions, resident, sc.Err()
}
