package charts

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	appsv1 "k8s.io/api/apps/v1"
)

// TestImageMatchesChart ties the chart to the Dockerfile it runs: the user
// the pods run as, the entrypoint their args go to, and where the image keeps
// the topic spec the provisioning job falls back to. No Docker engine runs
// in CI, so the Dockerfile is read, not built.
func TestImageMatchesChart(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// The final stage: from its FROM line on.
	df := string(b)
	final := df[strings.LastIndex(df, "\nFROM "):]
	for _, want := range []string{
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"USER 65532:65532",
		`ENTRYPOINT ["/usr/local/bin/ladder"]`,
		"COPY topics/ " + strings.TrimSuffix(defaultTopics, "topics.yaml"),
	} {
		if !strings.Contains(final, want) {
			t.Errorf("Dockerfile's final stage lacks %q", want)
		}
	}
	if !strings.Contains(df, "CGO_ENABLED=0 go build -tags nodev -trimpath") {
		t.Errorf("Dockerfile does not build the static production binary (make build-prod)")
	}

	d := get[*appsv1.Deployment](t, mustRender(t, values(t, "")), "Deployment", fullname)
	if sc := d.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 65532 {
		t.Errorf("pods do not run as the image's user 65532: %+v", sc)
	}
}

// dockerIgnored reports whether .dockerignore's patterns leave path out of
// the build context, as Docker matches them: relative to the context root
// (a leading "/" changes nothing), filepath.Match per pattern, a matched
// directory taking its contents with it, and "!" re-including. "**" is not
// used in the file; a pattern with it fails the test.
func dockerIgnored(t *testing.T, patterns []string, path string) bool {
	t.Helper()
	ignored := false
	for _, p := range patterns {
		include := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/")
		if strings.Contains(p, "**") {
			t.Fatalf(".dockerignore pattern %q: ** is not understood by this test", p)
		}
		for dir := path; dir != "."; dir = filepath.Dir(dir) {
			if ok, err := filepath.Match(p, dir); err != nil {
				t.Fatalf(".dockerignore pattern %q: %v", p, err)
			} else if ok {
				ignored = !include
				break
			}
		}
	}
	return ignored
}

// TestDockerignore: the build context leaves out a stray ladder binary at the
// top (built by `go build ./cmd/ladder`), the chart and the git history, and
// keeps the sources and topics/ the image needs.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, filepath.Clean(line))
		}
	}
	for path, want := range map[string]bool{
		"ladder":                    true,
		"ladder.test":               true,
		".git/HEAD":                 true,
		"charts/ladder/values.yaml": true,
		"bin/ladder":                true,
		"cmd/ladder/main.go":        false,
		"go.mod":                    false,
		"pkg/forward/forward.go":    false,
		"topics/topics.yaml":        false,
		"Dockerfile":                false,
	} {
		if got := dockerIgnored(t, patterns, path); got != want {
			t.Errorf(".dockerignore leaves out %s: %v, want %v", path, got, want)
		}
	}
}

// TestImageSpecMatchesChart: without topics.spec the provisioning job applies
// the spec in the image (topics/topics.yaml), and the chart checks the
// forwarders' tiers against it without reading it: its tiers and prefix
// must be the chart's copy of them (ladder.imageTopicSpec) and the defaults.
func TestImageSpecMatchesChart(t *testing.T) {
	spec, err := chartutil.ReadValuesFile("../topics/topics.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l, err := spec.Table("ladder")
	if err != nil {
		t.Fatalf("topics/topics.yaml: %v", err)
	}
	tiers, _ := l["tiers"].([]any)
	prefix, _ := l["topicPrefix"].(string)
	if len(tiers) == 0 || prefix == "" {
		t.Fatalf("topics/topics.yaml: ladder %v", l)
	}
	c := loadChart(t)
	override := map[string]any{"ladder": map[string]any{"tiers": tiers, "topicPrefix": prefix}}
	if _, err := decodeValues(c, override); err != nil {
		t.Errorf("the tiers of topics/topics.yaml (%v, %s) do not render against the image's spec: %v", tiers, prefix, err)
	}
	defaults, err := chartutil.ReadValuesFile(chartDir + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := defaults.Table("ladder"); fmt.Sprint(got["tiers"], got["topicPrefix"]) != fmt.Sprint(tiers, prefix) {
		t.Errorf("values.yaml ladder.tiers %v topicPrefix %v, topics/topics.yaml %v %s", got["tiers"], got["topicPrefix"], tiers, prefix)
	}
}
