package server

import "testing"

func TestReleaseBinaryPages(t *testing.T) {
	before, after, err := releaseBinaryPages()
	if err != nil {
		t.Fatal(err)
	}
	if before <= 0 || after >= before {
		t.Fatalf("resident pages of the test binary: %d bytes before, %d after; want fewer after", before, after)
	}
	t.Logf("test binary resident: %d MiB before, %d MiB after", before>>20, after>>20)
	// The code the test runs is read back as it runs.
	if _, again, err := releaseBinaryPages(); err != nil || again > before {
		t.Fatalf("second release: %d bytes resident, %v", again, err)
	}
}
