package diag

import (
	"errors"
	"strconv"
	"unicode/utf8"
)

// This file is a minimal tokenizer for the Prometheus text format (0.0.4), used
// on the hot path where expfmt is too slow: ParseBackendMetrics runs once per
// backend per scrape interval, and expfmt turns every line of a page into a
// protobuf message with its own label pairs (~24 allocations per line, ~0.9 ms
// for a real vLLM page). The tokenizer works on the page in place and leaves
// lines it is not asked about unread.
//
// Syntax accepted, as in expfmt: blanks (space, tab) between tokens, an optional
// label block with quoted label names or bare ones, a trailing comma in the block,
// the escapes \\ \" \n in quoted strings, values in Go float syntax without hex
// 'p' exponents or '_' separators (so "NaN", "+Inf", "1e3"), and an optional
// integer timestamp. Unlike expfmt, a trailing '\r' (CRLF pages) and trailing
// blanks are tolerated.

var (
	errLabelSyntax  = errors.New("malformed label set")
	errBadEscape    = errors.New("invalid escape sequence in quoted string")
	errUnterminated = errors.New("unterminated quoted string")
	errNoValue      = errors.New("sample has no value")
	errBadValue     = errors.New("sample value is not a number")
	errBadTimestamp = errors.New("timestamp is not an integer")
	errTrailing     = errors.New("unexpected text after timestamp")
	errBadUTF8      = errors.New("label value is not valid UTF-8")
)

// lineError places a syntax error on its line, for logs that point at the page.
type lineError struct {
	line int
	err  error
}

func (e *lineError) Error() string {
	return "diag: metrics line " + strconv.Itoa(e.line) + ": " + e.err.Error()
}
func (e *lineError) Unwrap() error { return e.err }

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// isTrailingSpace also admits '\r', so CRLF pages parse.
func isTrailingSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' }

func isLabelNameStart(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'
}

func isLabelNameCont(c byte) bool { return isLabelNameStart(c) || (c >= '0' && c <= '9') }

func isMetricNameStart(c byte) bool { return isLabelNameStart(c) || c == ':' }

func isMetricNameCont(c byte) bool { return isLabelNameCont(c) || c == ':' }

func skipBlanks(b []byte, i int) int {
	for i < len(b) && isBlank(b[i]) {
		i++
	}
	return i
}

// metricName returns the bare metric name at the start of line (blanks already
// trimmed) and the index after it; an empty name means the line does not start
// with one (for example the quoted-name form `{"name",...}`).
func metricName(line []byte) ([]byte, int) {
	if len(line) == 0 || !isMetricNameStart(line[0]) {
		return nil, 0
	}
	i := 1
	for i < len(line) && isMetricNameCont(line[i]) {
		i++
	}
	return line[:i], i
}

// scanQuoted expects b[i] == '"' and returns the index just past the closing
// quote and whether the string holds escapes.
func scanQuoted(b []byte, i int) (end int, escaped bool, err error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			if j+1 >= len(b) {
				return 0, false, errUnterminated
			}
			switch b[j+1] {
			case '\\', '"', 'n':
			default:
				return 0, false, errBadEscape
			}
			escaped = true
			j++
		case '"':
			return j + 1, escaped, nil
		}
	}
	return 0, false, errUnterminated
}

// unescape appends the unescaped form of a quoted string's contents to dst.
func unescape(dst, s []byte) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			i++
			if c = s[i]; c == 'n' {
				c = '\n'
			}
		}
		dst = append(dst, c)
	}
	return dst
}

// scanLabels checks the label block that starts just after the '{' at b[i-1] and
// returns the index just past its '}'.
func scanLabels(b []byte, i int) (int, error) {
	for {
		i = skipBlanks(b, i)
		if i >= len(b) {
			return 0, errLabelSyntax
		}
		if b[i] == '}' {
			return i + 1, nil
		}
		switch {
		case b[i] == '"':
			end, _, err := scanQuoted(b, i)
			if err != nil {
				return 0, err
			}
			i = end
		case isLabelNameStart(b[i]):
			i++
			for i < len(b) && isLabelNameCont(b[i]) {
				i++
			}
		default:
			return 0, errLabelSyntax
		}
		i = skipBlanks(b, i)
		if i >= len(b) || b[i] != '=' {
			return 0, errLabelSyntax
		}
		i = skipBlanks(b, i+1)
		if i >= len(b) || b[i] != '"' {
			return 0, errLabelSyntax
		}
		end, _, err := scanQuoted(b, i)
		if err != nil {
			return 0, err
		}
		i = skipBlanks(b, end)
		if i >= len(b) {
			return 0, errLabelSyntax
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			return i + 1, nil
		default:
			return 0, errLabelSyntax
		}
	}
}

// labelIter walks a label block that scanLabels accepted; b runs from just after
// '{' to just past '}'.
type labelIter struct {
	b []byte
	i int
}

// next returns the next label's name and value as they appear between quotes (or
// bare, for a name), with flags telling whether they need unescaping.
func (it *labelIter) next() (name, val []byte, nameEsc, valEsc, ok bool) {
	b := it.b
	i := skipBlanks(b, it.i)
	if i >= len(b) || b[i] == '}' {
		return nil, nil, false, false, false
	}
	if b[i] == '"' {
		end, esc, _ := scanQuoted(b, i)
		name, nameEsc = b[i+1:end-1], esc
		i = end
	} else {
		s := i
		for i < len(b) && isLabelNameCont(b[i]) {
			i++
		}
		name = b[s:i]
	}
	i = skipBlanks(b, i)
	i = skipBlanks(b, i+1) // '='
	end, esc, _ := scanQuoted(b, i)
	val, valEsc = b[i+1:end-1], esc
	i = skipBlanks(b, end)
	if i < len(b) && b[i] == ',' {
		i++
	}
	it.i = i
	return name, val, nameEsc, valEsc, true
}

// parsePromFloat parses a sample value the way expfmt does: Go float syntax
// without hex-float exponents or digit separators.
func parsePromFloat(b []byte) (float64, error) {
	for _, c := range b {
		if c == 'p' || c == 'P' || c == '_' {
			return 0, errBadValue
		}
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return 0, errBadValue
	}
	return v, nil
}

// sampleRest parses what follows the metric name on a sample line: an optional
// label block, the value and an optional timestamp. labels spans the block from
// just after '{' to just past '}' (nil when there is none).
func sampleRest(line []byte, i int) (labels []byte, v float64, err error) {
	i = skipBlanks(line, i)
	if i < len(line) && line[i] == '{' {
		end, err := scanLabels(line, i+1)
		if err != nil {
			return nil, 0, err
		}
		labels = line[i+1 : end]
		i = skipBlanks(line, end)
	}
	s := i
	for i < len(line) && !isTrailingSpace(line[i]) {
		i++
	}
	if s == i {
		return nil, 0, errNoValue
	}
	if v, err = parsePromFloat(line[s:i]); err != nil {
		return nil, 0, err
	}
	for i < len(line) && isTrailingSpace(line[i]) {
		i++
	}
	if i == len(line) {
		return labels, v, nil
	}
	s = i
	for i < len(line) && !isTrailingSpace(line[i]) {
		i++
	}
	if _, err := strconv.ParseInt(string(line[s:i]), 10, 64); err != nil {
		return nil, 0, errBadTimestamp
	}
	for i < len(line) && isTrailingSpace(line[i]) {
		i++
	}
	if i != len(line) {
		return nil, 0, errTrailing
	}
	return labels, v, nil
}

// commentFields splits "# KEYWORD name rest" (the '#' at line[0]). keyword is nil
// for a plain comment, and for a HELP or TYPE line whose name is not followed by
// a blank: expfmt ignores the first kind and rejects the second, and either way
// the line says nothing about a family.
func commentFields(line []byte) (keyword, name, rest []byte) {
	i := skipBlanks(line, 1)
	s := i
	for i < len(line) && !isBlank(line[i]) {
		i++
	}
	keyword = line[s:i]
	if string(keyword) != "HELP" && string(keyword) != "TYPE" {
		return nil, nil, nil
	}
	i = skipBlanks(line, i)
	name, n := metricName(line[i:])
	i += n
	if name == nil || i >= len(line) || !isBlank(line[i]) {
		return nil, nil, nil
	}
	return keyword, name, line[skipBlanks(line, i):]
}

// validUTF8 guards the strings this package keeps (model names): expfmt rejects
// pages with invalid UTF-8 label values, and a name that later becomes a JSON
// string or a Prometheus label must be valid.
func validUTF8(b []byte) error {
	if !utf8.Valid(b) {
		return errBadUTF8
	}
	return nil
}
