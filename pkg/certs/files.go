package certs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// writeFiles puts the serving pair into CertDir, each file replaced whole
// by a rename and only when its content changed.
//
// The apiserver's DynamicCertKeyPairContent watches both files with fsnotify
// and reloads on any event; it compares the bytes and ignores an unchanged
// pair, and it rejects a cert and key that do not match, keeping the old
// pair. So the key is renamed into place first and the certificate next:
// between the two renames the new key does not match the old certificate,
// the reload fails harmlessly, and the certificate's rename loads the pair.
// A reader never sees a half-written file.
func (m *Manager) writeFiles(mat material) error {
	if err := os.MkdirAll(m.o.CertDir, 0o700); err != nil {
		return fmt.Errorf("create cert directory: %w", err)
	}
	keyChanged, err := writeFileAtomic(m.KeyFile(), mat.keyPEM, 0o600)
	if err != nil {
		return err
	}
	certChanged, err := writeFileAtomic(m.CertFile(), mat.certPEM, 0o644)
	if err != nil {
		return err
	}
	if keyChanged || certChanged {
		m.o.Logger.Info("Wrote serving certificate", "file", m.CertFile(), "serial", mat.leaf.SerialNumber.Text(16), "notAfter", mat.leaf.NotAfter)
	}
	return nil
}

// writeFileAtomic replaces path with data through a temporary file in the
// same directory and a rename, unless path already holds data. It reports
// whether it wrote.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (changed bool, err error) {
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
		return false, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, os.Remove(f.Name()))
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := errors.Join(f.Chmod(perm), f.Sync(), f.Close()); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	return true, nil
}
