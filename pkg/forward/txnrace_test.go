package forward_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestTxnRaceTestsRunWithoutRace: every test that skips under -race for
// sarama's transaction-manager race (skipSaramaTxnRace) is named in the
// Makefile's run without -race, so none is skipped everywhere.
func TestTxnRaceTestsRunWithoutRace(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^SARAMA_RACE_TESTS := \^\(([A-Za-z|]+)\)\$\$/\^exactly-once\$\$$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("the Makefile has no run of the transaction-race tests without -race")
	}
	listed := map[string]bool{}
	for _, n := range strings.Split(string(m[1]), "|") {
		listed[n] = true
	}
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	found := 0
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || !strings.HasPrefix(fn.Name.Name, "Test") || fn.Body == nil {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				if c, ok := n.(*ast.CallExpr); ok {
					if id, ok := c.Fun.(*ast.Ident); ok && id.Name == "skipSaramaTxnRace" {
						found++
						if !listed[fn.Name.Name] {
							t.Errorf("%s skips under -race but is not in the Makefile's run without -race", fn.Name.Name)
						}
					}
				}
				return true
			})
		}
	}
	if found == 0 {
		t.Error("no test calls skipSaramaTxnRace: is the parse right?")
	}
}
