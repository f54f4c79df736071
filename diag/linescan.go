package diag

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"
)

// maxLineBytes bounds one line of a streamed page. Real DCGM and node_exporter
// lines are a few hundred bytes; a longer one is a broken or hostile endpoint.
const maxLineBytes = 64 << 10

var errLineTooLong = errors.New("line longer than 64 KiB")

// lineReaders recycles the one buffer a streamed parse holds.
var lineReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, maxLineBytes) }}

// scanLines hands fn each line of a page (without its newline and leading
// blanks; blank lines skipped), reading through the MaxScrapeBytes bound. It is
// for host-level pages, whose parsers keep a bounded result whatever the page
// lists: streaming holds one line at a time instead of a page or a parsed copy
// of every series on it, so a 4 MiB page of 75,000 GPUs costs a 64 KiB buffer.
// A line longer than the buffer is skipped unless it is a sample of a family
// reads accepts: that one fails the page, since it cannot be read whole.
func scanLines(r io.Reader, reads func(name []byte) bool, fn func(line []byte) error) error {
	br := lineReaders.Get().(*bufio.Reader)
	br.Reset(newBoundedReader(r))
	defer func() {
		br.Reset(nil) // do not keep the caller's body reachable from the pool
		lineReaders.Put(br)
	}()
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			line = line[skipBlanks(line, 0):]
			if name, _ := metricName(line); name != nil && reads(name) {
				return &lineError{line: n, err: errLineTooLong}
			}
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			line = nil
		}
		if len(line) > 0 && line[len(line)-1] == '\n' {
			line = line[:len(line)-1]
		}
		if line = line[skipBlanks(line, 0):]; len(line) > 0 {
			if ferr := fn(line); ferr != nil {
				return &lineError{line: n, err: ferr}
			}
		}
		switch {
		case err == nil:
		case err == io.EOF:
			return nil
		case errors.Is(err, ErrTooLarge):
			return ErrTooLarge
		default:
			return fmt.Errorf("diag: reading metrics: %w", err)
		}
	}
}
