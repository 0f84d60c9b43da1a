package app

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// runCase is one command line for Run: the error it must return (a
// substring; "" for none) and what stdout must contain.
type runCase struct {
	name       string
	args       []string
	wantErr    string
	wantStdout string
}

func checkRunCases(t *testing.T, cases []runCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := Run(context.Background(), tc.args, &out, &errOut)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("error %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if !strings.Contains(out.String(), tc.wantStdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.wantStdout, out.String())
			}
		})
	}
}
