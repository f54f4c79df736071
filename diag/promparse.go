package diag

import (
	"errors"
	"io"
)

// MaxScrapeBytes bounds every metrics page this package reads. Real vLLM and DCGM
// pages are tens of KiB, a node_exporter page on a big host a few hundred; a page
// beyond this is a misconfigured or hostile endpoint, and the gateway must not
// buffer it.
const MaxScrapeBytes = 4 << 20

// ErrTooLarge is returned when a metrics page is longer than MaxScrapeBytes.
var ErrTooLarge = errors.New("diag: metrics page larger than 4 MiB")

// boundedReader passes through MaxScrapeBytes bytes and then fails with ErrTooLarge
// as soon as one more byte turns up, so an endless body costs at most
// MaxScrapeBytes+1 bytes of reading rather than being silently truncated into a page that looks valid.
type boundedReader struct {
	r    io.Reader
	left int64
}

func newBoundedReader(r io.Reader) *boundedReader {
	return &boundedReader{r: r, left: MaxScrapeBytes}
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.left <= 0 {
		var probe [1]byte
		n, err := b.r.Read(probe[:])
		if n > 0 {
			return 0, ErrTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// readAllBounded reads r into buf (reusing its capacity), failing with ErrTooLarge
// instead of growing past MaxScrapeBytes.
func readAllBounded(r io.Reader, buf []byte) ([]byte, error) {
	br := newBoundedReader(r)
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			// Grow by doubling, but never beyond the bound plus the probe byte.
			n := 2*cap(buf) + 512
			if n > MaxScrapeBytes+1 {
				n = MaxScrapeBytes + 1
			}
			nb := make([]byte, len(buf), n)
			copy(nb, buf)
			buf = nb
		}
		n, err := br.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
