package sim

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// ClientAuth is how the simulated kubelets authenticate scrapers: a bearer
// token (--token-file) or a client certificate signed by a CA
// (--client-ca-file).
type ClientAuth struct {
	Token, TokenFile, CAFile string
}

// WriteClientAuth makes a random token and writes it and clientCA (PEM)
// into dir, for simkubelet's --token-file and --client-ca-file.
func WriteClientAuth(dir string, clientCA []byte) (ClientAuth, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ClientAuth{}, err
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return ClientAuth{}, fmt.Errorf("sim token: %w", err)
	}
	a := ClientAuth{Token: hex.EncodeToString(tok), TokenFile: filepath.Join(dir, "token"), CAFile: filepath.Join(dir, "client-ca.crt")}
	if err := os.WriteFile(a.TokenFile, []byte(a.Token+"\n"), 0o600); err != nil {
		return ClientAuth{}, err
	}
	if err := os.WriteFile(a.CAFile, clientCA, 0o644); err != nil {
		return ClientAuth{}, err
	}
	return a, nil
}
