//go:build !unix

package storage

import "errors"

// freeBytes cannot ask this platform; the reserve is not enforced.
func freeBytes(string) (uint64, error) { return 0, errors.New("free space unknown on this platform") }
