package testpeer

import (
	"html"
	"io"
	"net/http"
	"strings"
)

func readBody(resp *http.Response) (string, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b), err
}

// formField returns the attribute value that follows prefix in page,
// unescaped.
func formField(page, prefix string) string {
	i := strings.Index(page, prefix)
	if i < 0 {
		return ""
	}
	rest := page[i+len(prefix):]
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return html.UnescapeString(rest[:j])
}

func stringsReader(s string) io.Reader { return strings.NewReader(s) }
