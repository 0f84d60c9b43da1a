package bench

import (
	"strings"
	"testing"
)

func TestResidentByMapping(t *testing.T) {
	smaps := `00400000-00500000 r-xp 00000000 fd:00 12 /bin/gw
Size:               1024 kB
Rss:                2048 kB
00600000-00700000 r--p 00100000 fd:00 12 /bin/gw
Rss:                1024 kB
00800000-00900000 rw-p 00000000 00:00 0 
Rss:                4096 kB
VmFlags: rd wr mr mw me ac
7f0000000000-7f0000100000 rw-p 00000000 00:00 0 
Rss:                 512 kB
`
	got := string(residentByMapping([]byte(smaps)))
	want := "    4608 [anon]\n    3072 /bin/gw\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if strings.Contains(got, "VmFlags") {
		t.Error("a field line was taken for a mapping")
	}
}
