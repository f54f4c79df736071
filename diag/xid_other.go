//go:build !unix

package diag

import (
	"errors"
	"os"
)

func openKmsg(path string) (kmsgSource, error) {
	return nil, &os.PathError{Op: "open", Path: path, Err: errors.ErrUnsupported}
}
