package charts

import (
	"os"
	"strings"
	"testing"

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
