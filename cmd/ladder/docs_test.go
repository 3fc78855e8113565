//go:build !nodev

package main

// The documentation's commands and links, checked: every Markdown file of the
// repository (README.md and the docs beside the code) is read, and
//   - every `ladder ...` line of a ```sh block parses with the command's real
//     flag set (the command is stopped right after its flags parse);
//   - every `make X VAR=v` names a Makefile target and a variable it uses;
//   - every repository path a command names (topics/provision.sh, ./pkg/x,
//     charts/ladder) exists, and every `helm ... --set key=v` names a key of
//     the chart's values.yaml;
//   - every relative link resolves to a file, and its #anchor to a heading;
//   - README.md's tutorial runs as written against `ladder dev`;
//   - every metric the code defines, and every field of `ladder inspect
//     --json`, is in the docs' table of them.
// The configuration table of cmd/ladder/README.md is `ladder config --usage`.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/ladder/ladder/pkg/laddertest"
)

var update = flag.Bool("update", false, "rewrite the generated configuration table of cmd/ladder/README.md")

// repoRoot is the repository, from cmd/ladder.
const repoRoot = "../.."

// pendingDocs are what the docs name that another branch of this session is
// adding (issue 12: python). A missing one is logged, not failed; one that
// exists is logged too, asking for the entry to go.
var pendingDocs = map[string]string{}

const (
	configTableStart = "<!-- configuration table: `ladder config --usage`, written by `make docs`; TestConfigurationTable fails when it is stale -->\n"
	configTableEnd   = "<!-- end of configuration table -->"
	configDoc        = "README.md" // of cmd/ladder
)

// TestConfigurationTable: the configuration table of cmd/ladder/README.md is
// the output of `ladder config --usage`, generated from the Config struct.
// `make docs` (this test with -update) rewrites it.
func TestConfigurationTable(t *testing.T) {
	var stdout bytes.Buffer
	if code := Main(context.Background(), []string{"config", "--usage"}, nil, &stdout, &stdout); code != 0 {
		t.Fatalf("ladder config --usage: exit %d: %s", code, stdout.String())
	}
	doc, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(doc, []byte(configTableStart))
	j := bytes.Index(doc, []byte(configTableEnd))
	if i < 0 || j < i {
		t.Fatalf("cmd/ladder/%s lacks the lines %q and %q around the configuration table", configDoc, strings.TrimSpace(configTableStart), configTableEnd)
	}
	want := slices.Concat(doc[:i+len(configTableStart)], stdout.Bytes(), doc[j:])
	if bytes.Equal(doc, want) {
		return
	}
	if *update {
		if err := os.WriteFile(configDoc, want, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the configuration table of cmd/ladder/%s", configDoc)
		return
	}
	t.Errorf("the configuration table of cmd/ladder/%s is not `ladder config --usage`: run `make docs`. It should be:\n%s", configDoc, stdout.String())
}

// docFile is a Markdown file of the repository.
type docFile struct {
	path string // relative to the repository root
	text string
}

func markdownFiles(t *testing.T) []docFile {
	t.Helper()
	var docs []docFile
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != repoRoot && (strings.HasPrefix(d.Name(), ".") || d.Name() == "bin" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(d.Name(), ".md") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, path)
		docs = append(docs, docFile{path: filepath.ToSlash(rel), text: string(b)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) < 2 {
		t.Fatalf("found %d Markdown files under %s", len(docs), repoRoot)
	}
	return docs
}

// shBlock is a ```sh block: its lines, continuations joined, with the line
// number of each.
type shBlock struct {
	section string // the heading above it
	lines   []shLine
}

type shLine struct {
	n    int
	text string
}

func shBlocks(doc string) []shBlock {
	var blocks []shBlock
	var cur *shBlock
	var cont strings.Builder
	contStart := 0
	section := ""
	inOther := false
	for i, line := range strings.Split(doc, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && !inOther && strings.HasPrefix(trimmed, "```"):
			if trimmed == "```sh" || trimmed == "```bash" || trimmed == "```shell" {
				blocks = append(blocks, shBlock{section: section})
				cur = &blocks[len(blocks)-1]
			} else {
				inOther = true
			}
		case inOther:
			inOther = trimmed != "```"
		case cur != nil && trimmed == "```":
			cur = nil
		case cur != nil:
			if cont.Len() == 0 {
				contStart = i + 1
			}
			if strings.HasSuffix(line, "\\") {
				cont.WriteString(strings.TrimSuffix(line, "\\"))
				continue
			}
			cont.WriteString(line)
			cur.lines = append(cur.lines, shLine{n: contStart, text: cont.String()})
			cont.Reset()
		case strings.HasPrefix(line, "#"):
			section = strings.TrimSpace(strings.TrimLeft(line, "#"))
		}
	}
	return blocks
}

// shWords splits a shell line into simple commands (at | || && ; & and
// parentheses outside quotes), each a list of words with quotes removed; a
// comment ends the line.
func shWords(line string) [][]string {
	var cmds [][]string
	var words []string
	var w strings.Builder
	inWord := false
	endWord := func() {
		if inWord {
			words = append(words, w.String())
			w.Reset()
			inWord = false
		}
	}
	endCmd := func() {
		endWord()
		if len(words) > 0 {
			cmds = append(cmds, words)
			words = nil
		}
	}
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case c == '\'':
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			w.WriteString(string(rs[i+1 : min(j, len(rs))]))
			inWord, i = true, j
		case c == '"':
			j := i + 1
			for j < len(rs) && rs[j] != '"' {
				if rs[j] == '\\' && j+1 < len(rs) {
					j++
				}
				w.WriteRune(rs[j])
				j++
			}
			inWord, i = true, j
		case c == '\\' && i+1 < len(rs):
			w.WriteRune(rs[i+1])
			inWord, i = true, i+1
		case c == '#' && !inWord:
			endCmd()
			return cmds
		case unicode.IsSpace(c):
			endWord()
		case strings.ContainsRune("|&;()<>", c):
			endCmd()
		default:
			w.WriteRune(c)
			inWord = true
		}
	}
	endCmd()
	return cmds
}

var envAssignment = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)

// splitEnv separates leading VAR=value words from a command.
func splitEnv(words []string) (env, cmd []string) {
	i := 0
	for i < len(words) && envAssignment.MatchString(words[i]) {
		i++
	}
	return words[:i], words[i:]
}

// TestDocCommands checks every command of every ```sh block of the
// repository's Markdown files (see the top of this file).
func TestDocCommands(t *testing.T) {
	makefile, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	targets := makeTargets(string(makefile))
	values := chartValueKeys(t)
	missing := func(t *testing.T, what, where string) {
		t.Helper()
		if issue, ok := pendingDocs[what]; ok {
			t.Logf("%s: %s is not here yet (pending: %s)", where, what, issue)
			return
		}
		t.Errorf("%s: %s does not exist", where, what)
	}

	checked := map[string]int{}
	for _, doc := range markdownFiles(t) {
		for _, block := range shBlocks(doc.text) {
			// export VAR=v lasts for the rest of its block.
			blockEnv := map[string]string{}
			for _, line := range block.lines {
				where := fmt.Sprintf("%s:%d", doc.path, line.n)
				for _, words := range shWords(line.text) {
					if words[0] == "export" {
						for _, a := range words[1:] {
							if k, v, ok := strings.Cut(a, "="); ok {
								blockEnv[k] = v
							}
						}
						continue
					}
					env, cmd := splitEnv(words)
					if len(cmd) == 0 {
						continue
					}
					for _, p := range repoPaths(cmd) {
						checked["path"]++
						if _, err := os.Stat(filepath.Join(repoRoot, p)); err != nil {
							missing(t, "path "+p, where)
						}
					}
					switch cmd[0] {
					case "ladder":
						checked["ladder"]++
						lineEnv := map[string]string{}
						for k, v := range blockEnv {
							lineEnv[k] = v
						}
						for _, a := range env {
							k, v, _ := strings.Cut(a, "=")
							lineEnv[k] = v
						}
						if msg := checkLadderCommand(cmd[1:], lineEnv); msg != "" {
							t.Errorf("%s: %s: %s", where, strings.Join(cmd, " "), msg)
						}
					case "make":
						checked["make"]++
						for _, a := range cmd[1:] {
							if k, _, ok := strings.Cut(a, "="); ok {
								if !regexp.MustCompile(`\b` + regexp.QuoteMeta(k) + `\b`).Match(makefile) {
									missing(t, "make variable "+k, where)
								}
							} else if !strings.HasPrefix(a, "-") && !targets[a] {
								missing(t, "make target "+a, where)
							}
						}
					case "helm":
						checked["helm"]++
						for i, a := range cmd {
							if a == "--set" && i+1 < len(cmd) {
								key, _, _ := strings.Cut(cmd[i+1], "=")
								if !values[key] {
									t.Errorf("%s: helm --set %s: charts/ladder/values.yaml has no key %s", where, cmd[i+1], key)
								}
							}
						}
					}
				}
			}
		}
	}
	// A pending entry that has landed must go.
	for what, issue := range pendingDocs {
		kind, name, _ := strings.Cut(what, " ")
		landed := false
		switch kind {
		case "path":
			_, err := os.Stat(filepath.Join(repoRoot, name))
			landed = err == nil
		case "make":
			k, n, _ := strings.Cut(name, " ")
			landed = k == "target" && targets[n] || k == "variable" && regexp.MustCompile(`\b`+regexp.QuoteMeta(n)+`\b`).Match(makefile)
		}
		if landed {
			t.Logf("pendingDocs: %s (%s) is here now: remove it from pendingDocs", what, issue)
		}
	}
	if checked["ladder"] < 20 || checked["make"] < 2 || checked["path"] < 3 {
		t.Errorf("checked only %v: are the ```sh blocks still found?", checked)
	}
	t.Logf("checked %v", checked)
}

// checkLadderCommand runs `ladder args...` with env until its flags are
// parsed, and returns what is wrong with it, or "".
func checkLadderCommand(args []string, env map[string]string) string {
	for k, v := range env {
		if strings.Contains(v, "$") {
			continue // a shell expansion: not known here
		}
		old, had := os.LookupEnv(k)
		os.Setenv(k, v)
		if had {
			defer os.Setenv(k, old)
		} else {
			defer os.Unsetenv(k)
		}
	}
	if len(args) == 0 {
		return "no command"
	}
	var parsed []string
	var parseErr error
	hook := func(f *flags, err error) error {
		parsed = append(parsed, f.Name())
		if err != nil && !errors.Is(err, flag.ErrHelp) && parseErr == nil {
			parseErr = err
		}
		return flag.ErrHelp // stop the command here
	}
	afterParse.Store(&hook)
	defer afterParse.Store(nil)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code := Main(ctx, args, strings.NewReader(""), &out, &out)
	switch {
	case parseErr != nil:
		return fmt.Sprintf("its flags do not parse: %v", parseErr)
	case len(parsed) == 0 && code != 0:
		return fmt.Sprintf("exit %d before parsing any flags: %s", code, strings.TrimSpace(out.String()))
	}
	return ""
}

var makeTarget = regexp.MustCompile(`(?m)^([A-Za-z0-9_.-]+(?:[ \t]+[A-Za-z0-9_.-]+)*)[ \t]*:(?:[^=]|$)`)

func makeTargets(makefile string) map[string]bool {
	targets := map[string]bool{}
	for _, m := range makeTarget.FindAllStringSubmatch(makefile, -1) {
		for _, name := range strings.Fields(m[1]) {
			targets[name] = true
		}
	}
	return targets
}

// repoPaths returns the words of a command that name a path in the
// repository: ./x, or a word starting with one of its top-level directories.
func repoPaths(cmd []string) []string {
	var paths []string
	for _, w := range cmd {
		if strings.ContainsAny(w, "$*{}=") {
			continue
		}
		w = strings.TrimSuffix(strings.TrimPrefix(w, "./"), "/...")
		for _, top := range []string{"cmd/", "pkg/", "topics/", "charts/"} {
			if strings.HasPrefix(w, top) {
				paths = append(paths, strings.TrimSuffix(w, "/"))
			}
		}
	}
	return paths
}

// chartValueKeys returns every key path of charts/ladder/values.yaml
// (image, image.repository, ...).
func chartValueKeys(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "charts/ladder/values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			keys[prefix+k] = true
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
			}
		}
	}
	walk("", v)
	return keys
}

var mdLink = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)

// TestDocLinks: every relative link of every Markdown file resolves to a file
// of the repository, and its #anchor to a heading of that file.
func TestDocLinks(t *testing.T) {
	docs := markdownFiles(t)
	anchors := map[string]map[string]bool{}
	for _, d := range docs {
		anchors[d.path] = headingAnchors(d.text)
	}
	n := 0
	for _, d := range docs {
		for i, line := range outsideCode(d.text) {
			for _, m := range mdLink.FindAllStringSubmatch(stripInlineCode(line), -1) {
				link := m[1]
				if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
					continue
				}
				n++
				where := fmt.Sprintf("%s:%d", d.path, i+1)
				file, anchor, _ := strings.Cut(link, "#")
				target := d.path
				if file != "" {
					target = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(d.path), file)))
					if _, err := os.Stat(filepath.Join(repoRoot, target)); err != nil {
						if issue, ok := pendingDocs["path "+target]; ok {
							t.Logf("%s: link %s: not here yet (pending: %s)", where, link, issue)
							continue
						}
						t.Errorf("%s: link %s: %s does not exist", where, link, target)
						continue
					}
				}
				if anchor != "" {
					a, isDoc := anchors[target]
					if !isDoc {
						t.Errorf("%s: link %s: an anchor into %s, which is not Markdown", where, link, target)
					} else if !a[anchor] {
						t.Errorf("%s: link %s: %s has no heading with the anchor #%s", where, link, target, anchor)
					}
				}
			}
		}
	}
	if n < 20 {
		t.Errorf("checked only %d links", n)
	}
}

// outsideCode returns the lines of doc, blanking those inside fenced code.
func outsideCode(doc string) []string {
	lines := strings.Split(doc, "\n")
	in := false
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			in = !in
			lines[i] = ""
			continue
		}
		if in {
			lines[i] = ""
		}
	}
	return lines
}

var inlineCode = regexp.MustCompile("`[^`]*`")

// stripInlineCode blanks `code` spans that are not a link's text.
func stripInlineCode(line string) string {
	return inlineCode.ReplaceAllStringFunc(line, func(s string) string {
		return strings.Repeat(" ", len(s))
	})
}

// headingAnchors returns the anchors GitHub gives the headings of doc.
func headingAnchors(doc string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	for _, l := range outsideCode(doc) {
		if !strings.HasPrefix(l, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(l, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		a := b.String()
		if k := seen[a]; k > 0 {
			anchors[a+"-"+strconv.Itoa(k)] = true
		} else {
			anchors[a] = true
		}
		seen[a]++
	}
	return anchors
}

// TestDocAnchors: the anchor rule above agrees with GitHub on headings with
// code, punctuation and repeats.
func TestDocAnchors(t *testing.T) {
	got := headingAnchors("# ladder\n## Capacity planning: `ladder plan`\n### At-least-once (the default)\n## Soak\n## Soak\n```sh\n# not a heading\n```\n")
	for _, want := range []string{"ladder", "capacity-planning-ladder-plan", "at-least-once-the-default", "soak", "soak-1"} {
		if !got[want] {
			t.Errorf("no anchor %q in %v", want, got)
		}
	}
	if got["not-a-heading"] {
		t.Errorf("a comment in a code block made an anchor")
	}
}

// TestDocCommandCheck: the checks above fail on what they should.
func TestDocCommandCheck(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		bad  bool
	}{
		{args: []string{"schedule", "--topic", "work", "--delay", "20s", "hello"}},
		{args: []string{"schedule", "--topic", "work", "--dealy", "20s", "hello"}, bad: true},
		{args: []string{"inspect", "--watch", "soon"}, bad: true},
		{args: []string{"topics", "plan", "-f", "topics/topics.yaml"}},
		{args: []string{"bench", "drain", "--records", "10"}},
		{args: []string{"bench", "nope"}, bad: true},
		{args: []string{"nope"}, bad: true},
		{args: []string{"version"}},
		{args: []string{"run"}, env: map[string]string{"LADDER_BUFFER_MEMORY": "many"}, bad: true},
	} {
		msg := checkLadderCommand(tc.args, tc.env)
		if (msg != "") != tc.bad {
			t.Errorf("ladder %s (env %v): %q; want a complaint: %v", strings.Join(tc.args, " "), tc.env, msg, tc.bad)
		}
	}
	if got := shWords(`LADDER_X=1 ladder inspect --json | jq '.tiers[] | {topic}' # comment`); len(got) != 2 ||
		strings.Join(got[0], " ") != "LADDER_X=1 ladder inspect --json" || strings.Join(got[1], " ") != "jq .tiers[] | {topic}" {
		t.Errorf("shWords: %q", got)
	}
	if !makeTargets("a b: c\n\techo\nX ?= 1\nd:\n")["b"] || makeTargets("X := 1\n")["X"] {
		t.Error("makeTargets")
	}
}

// TestReadmeTutorial runs the five-minute tutorial of README.md as written,
// each line through sh with the ladder binary on PATH: `ladder dev` and the
// kcat watcher in the background (the watcher told to exit after one
// message), the other commands in the foreground, where they must succeed.
// Only the broker's address differs: the tutorial's 127.0.0.1:9092 becomes a
// free port. The scheduled message must come back on time, not early.
func TestReadmeTutorial(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []shLine
	for _, b := range shBlocks(string(readme)) {
		if strings.Contains(strings.ToLower(b.section), "tutorial") {
			lines = append(lines, b.lines...)
		}
	}
	if len(lines) < 4 {
		t.Fatalf("README.md's tutorial has %d command lines: is its heading still called a tutorial?", len(lines))
	}
	const docAddr = "127.0.0.1:9092"
	path := filepath.Dir(binary) + string(os.PathListSeparator) + os.Getenv("PATH")
	env := append(os.Environ(), "PATH="+path, "LADDER_DEV_ADDR=127.0.0.1:0", "LADDER_DEV_DATA_DIR="+t.TempDir(),
		"LADDER_HTTP_ADDR=127.0.0.1:0", "LADDER_LOG_FORMAT=json")
	_, hasKcat := exec.LookPath("kcat")
	var (
		addr      string
		watcher   *proc
		scheduled = regexp.MustCompile(`scheduled for (\S+), due \S+ \(unix ms (\d+)\), via (\S+) `)
		target    string
		via       string
		due       int64
	)
	for _, line := range lines {
		cmdline := strings.TrimSpace(line.text)
		words := shWords(cmdline)
		if len(words) == 0 {
			continue
		}
		_, cmd := splitEnv(words[0])
		switch {
		case len(cmd) > 1 && cmd[0] == "ladder" && cmd[1] == "dev":
			p := startShell(t, env, cmdline)
			laddertest.Eventually(t, 60*time.Second, func() bool {
				m := bannerAddr.FindStringSubmatch(p.out.String())
				if m != nil {
					addr = m[1]
				}
				return m != nil
			}, "README.md:%d: %s printed no broker address:\n%s", line.n, cmdline, p.out)
			env = append(env, "LADDER_BROKERS="+addr)
		case addr == "":
			t.Fatalf("README.md:%d: %s comes before `ladder dev`", line.n, cmdline)
		case cmd[0] == "kcat" && slices.Contains(cmd, "-C"):
			if hasKcat != nil {
				if os.Getenv("CI") != "" {
					t.Fatal("kcat is not installed; .ci/run installs it")
				}
				t.Logf("README.md:%d: kcat is not installed: watching without it", line.n)
				continue
			}
			watcher = startShell(t, env, strings.ReplaceAll(cmdline, docAddr, addr)+" -c 1")
		default:
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			c := exec.CommandContext(ctx, "sh", "-c", strings.ReplaceAll(cmdline, docAddr, addr))
			c.Env = env
			out, err := c.CombinedOutput()
			cancel()
			if err != nil {
				t.Fatalf("README.md:%d: %s: %v\n%s", line.n, cmdline, err, out)
			}
			if m := scheduled.FindSubmatch(out); m != nil {
				target, via = string(m[1]), string(m[3])
				due, _ = strconv.ParseInt(string(m[2]), 10, 64)
			}
			// README: inspect shows the message held in the tier it went to.
			if len(cmd) > 1 && cmd[0] == "ladder" && cmd[1] == "inspect" && via != "" &&
				!regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(via)+` .* held `).Match(out) {
				t.Errorf("README.md:%d: %s does not show the message held in %s:\n%s", line.n, cmdline, via, out)
			}
			// README: with no worker group, inspect says the lane is unattended.
			if len(cmd) > 1 && cmd[0] == "ladder" && cmd[1] == "inspect" && slices.Contains(cmd, "--workahead-lanes") &&
				!strings.Contains(string(out), "work: unattended: worker group work-workers has no member reading work") {
				t.Errorf("README.md:%d: %s does not say the lane is unattended:\n%s", line.n, cmdline, out)
			}
			t.Logf("README.md:%d: %s\n%s", line.n, cmdline, out)
		}
	}
	if target == "" {
		t.Fatal("the tutorial scheduled nothing (no `scheduled for ...` line)")
	}
	got := laddertest.Collect(t, addr, target).WaitDistinct(t, 1, time.Until(time.UnixMilli(due))+60*time.Second)
	for _, r := range got {
		if r.Timestamp.UnixMilli() < due || r.Headers["ladder-early"] != "" {
			t.Errorf("the tutorial's message came back at %s, due %s (ladder-early=%q): README says it comes back when due",
				r.Timestamp.Format(time.RFC3339Nano), time.UnixMilli(due).Format(time.RFC3339Nano), r.Headers["ladder-early"])
		}
	}
	if watcher != nil {
		select {
		case <-watcher.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("the tutorial's kcat watcher printed nothing within 30s of the message's arrival:\n%s", watcher.out)
		}
		if out := watcher.out.String(); !strings.Contains(out, "ladder-target="+target) {
			t.Errorf("the tutorial's kcat watcher printed:\n%s", out)
		}
	}
}

// startShell runs a command line through sh in the background, like start.
func startShell(t *testing.T, env []string, cmdline string) *proc {
	t.Helper()
	cmd := exec.Command("sh", "-c", "exec "+cmdline)
	cmd.Env = env
	p := &proc{cmd: cmd, out: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmdline, err)
	}
	go func() { p.done <- cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("output of %s:\n%s", cmdline, p.out.String())
		}
	})
	return p
}

var metricDefinition = regexp.MustCompile(`(?:Name:\s*|NewDesc\()"(ladder_[a-z0-9_]+)"`)

// TestDocMetrics: every metric the code defines has a row in a metrics table
// of the docs (pkg/forward/README.md), so a new metric is documented where
// operators look for it.
func TestDocMetrics(t *testing.T) {
	var docs strings.Builder
	for _, d := range markdownFiles(t) {
		docs.WriteString(d.text)
	}
	n := 0
	err := filepath.WalkDir(filepath.Join(repoRoot, "pkg"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range metricDefinition.FindAllSubmatch(src, -1) {
			n++
			if !strings.Contains(docs.String(), "| `"+string(m[1])+"` |") {
				t.Errorf("%s defines the metric %s, which no metrics table of the docs has (pkg/forward/README.md#metrics-and-health)", path, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 15 {
		t.Errorf("found only %d metric definitions", n)
	}
}

var jsonTag = regexp.MustCompile("json:\"([a-z0-9_]+)")

// TestDocInspectJSON: every field of `ladder inspect --json` is in the field
// table of pkg/inspect/README.md, which promises stable names.
func TestDocInspectJSON(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repoRoot, "pkg/inspect/README.md"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(repoRoot, "pkg/inspect/*.go"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range jsonTag.FindAllSubmatch(src, -1) {
			n++
			if !regexp.MustCompile("`" + string(m[1]) + `(\[\])?` + "`").Match(doc) {
				t.Errorf("%s: the JSON field %s is not in the field table of pkg/inspect/README.md", f, m[1])
			}
		}
	}
	if n < 30 {
		t.Errorf("found only %d JSON fields", n)
	}
}
