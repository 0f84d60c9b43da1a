//go:build !linux

package server

import "errors"

func releaseBinaryPages() (before, after int64, err error) {
	return 0, 0, errors.New("only on Linux")
}
