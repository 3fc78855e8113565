package charts

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the generated values table of ladder/README.md")

const (
	readmeFile       = "ladder/README.md"
	valuesFile       = "ladder/values.yaml"
	valuesTableStart = "<!-- values table: generated from values.yaml by `make docs`; a test in charts/ fails when it is stale -->\n"
	valuesTableEnd   = "<!-- end of values table -->"
)

// TestValuesTable: the values table of the chart's README is the one
// generated from values.yaml, helm-docs style: a key documented with a
// "# --" comment is one row (its whole subtree as the default); an
// undocumented mapping is walked into; an undocumented leaf is a row without
// a description. `make docs` (go test -run TestValuesTable -update)
// rewrites it.
func TestValuesTable(t *testing.T) {
	src, err := os.ReadFile(valuesFile)
	if err != nil {
		t.Fatal(err)
	}
	table, err := valuesTable(src)
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(readmeFile)
	if err != nil {
		t.Fatal(err)
	}
	got, err := replaceBetween(string(readme), valuesTableStart, valuesTableEnd, table)
	if err != nil {
		t.Fatalf("%s: %v", readmeFile, err)
	}
	if got == string(readme) {
		return
	}
	if *update {
		if err := os.WriteFile(readmeFile, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the values table of %s", readmeFile)
		return
	}
	t.Errorf("the values table of %s is not the one generated from %s: run `make docs`. Generated:\n%s", readmeFile, valuesFile, table)
}

// TestValuesTableRows: a documented key is one row with its comment, an
// undocumented leaf a row of its own, so a renamed or new value changes the table.
func TestValuesTableRows(t *testing.T) {
	table, err := valuesTable([]byte(`# header

# -- Pods.
replicaCount: 2
image:
  # -- Where from.
  # Second line.
  repository: ladder
  pullPolicy: IfNotPresent
# -- Security.
securityContext:
  runAsUser: 65532
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{
		"| `replicaCount` | `2` | Pods. |",
		"| `image.repository` | `\"ladder\"` | Where from. Second line. |",
		"| `image.pullPolicy` | `\"IfNotPresent\"` |  |",
		"| `securityContext` | `{\"runAsUser\":65532}` | Security. |",
	} {
		if !strings.Contains(table, row+"\n") {
			t.Errorf("the table lacks %s:\n%s", row, table)
		}
	}
}

// valuesTable renders values.yaml as a Markdown table: key, default, description.
func valuesTable(src []byte) (string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return "", fmt.Errorf("%s: %w", valuesFile, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return "", fmt.Errorf("%s: not a mapping", valuesFile)
	}
	var b strings.Builder
	b.WriteString("| key | default | description |\n| --- | --- | --- |\n")
	// The comment before the first key may be held by the document.
	if err := valueRows(&b, "", doc.Content[0], doc.HeadComment); err != nil {
		return "", err
	}
	return b.String(), nil
}

func valueRows(b *strings.Builder, prefix string, m *yaml.Node, firstComment string) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		path := prefix + k.Value
		comment := k.HeadComment
		if i == 0 && comment == "" {
			comment = firstComment
		}
		desc, documented := helmDocsComment(comment)
		if !documented && v.Kind == yaml.MappingNode && len(v.Content) > 0 {
			if err := valueRows(b, path+".", v, ""); err != nil {
				return err
			}
			continue
		}
		var value any
		if err := v.Decode(&value); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		def, err := json.Marshal(value)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		def = bytes.ReplaceAll(def, []byte("|"), []byte(`\|`))
		fmt.Fprintf(b, "| `%s` | `%s` | %s |\n", path, def, cellEscaper.Replace(desc))
	}
	return nil
}

// cellEscaper keeps a description inside its table cell: a | would end the
// cell, and <prefix> would be taken for an HTML tag and dropped.
var cellEscaper = strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;")

// helmDocsComment returns the description of a "# -- text" comment (helm-docs'
// convention) and the comment lines after it, joined; ok is false without one.
func helmDocsComment(comment string) (desc string, ok bool) {
	var words []string
	for _, line := range strings.Split(comment, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#"))
		if rest, found := strings.CutPrefix(line, "-- "); found {
			ok, words = true, nil // the description starts here
			line = rest
		}
		if ok && line != "" {
			words = append(words, line)
		}
	}
	return strings.Join(words, " "), ok
}

// replaceBetween replaces what lies between the start and end markers of doc.
func replaceBetween(doc, start, end, with string) (string, error) {
	i := strings.Index(doc, start)
	if i < 0 {
		return "", fmt.Errorf("no line %q", strings.TrimSpace(start))
	}
	j := strings.Index(doc[i+len(start):], end)
	if j < 0 {
		return "", fmt.Errorf("no %q after %q", end, strings.TrimSpace(start))
	}
	return doc[:i+len(start)] + with + doc[i+len(start)+j:], nil
}
