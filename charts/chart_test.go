package charts

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

const (
	chartDir        = "ladder"
	productionFile  = "ladder/ci/production-values.yaml"
	releaseName     = "ladder"
	releaseNS       = "delays"
	kubeVersion     = "v1.33.0"
	fullname        = "ladder" // release "ladder" of chart "ladder"
	topicsJobName   = "ladder-topics"
	tlsMountPath    = "/etc/ladder/tls"
	defaultTopics   = "/usr/share/ladder/topics/topics.yaml"
	configMapTopics = "/etc/ladder/topics/topics.yaml"
)

// strict decodes YAML into the registered Kubernetes API types and fails on
// an unknown or duplicate field, a wrong type, or an unregistered kind.
var strict = func() runtime.Decoder {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	s.AddKnownTypeWithName(monitoringV1.WithKind("ServiceMonitor"), &serviceMonitor{})
	s.AddKnownTypeWithName(monitoringV1.WithKind("ServiceMonitorList"), &serviceMonitorList{})
	metav1.AddToGroupVersion(s, monitoringV1)
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, s, s,
		kjson.SerializerOptions{Yaml: true, Strict: true})
}()

// rendered is one release's manifests, decoded.
type rendered struct {
	objects map[string]runtime.Object // "Kind/name"
	notes   string
}

func (r rendered) kinds() []string {
	var out []string
	for k := range r.objects {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func get[T runtime.Object](t *testing.T, r rendered, kind, name string) T {
	t.Helper()
	o, ok := r.objects[kind+"/"+name]
	if !ok {
		t.Fatalf("no %s/%s rendered; have %v", kind, name, r.kinds())
	}
	v, ok := o.(T)
	if !ok {
		t.Fatalf("%s/%s decoded as %T", kind, name, o)
	}
	return v
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return c
}

// values reads a values file (or none) and lays YAML overrides on top.
func values(t *testing.T, file string, overrides ...string) map[string]any {
	t.Helper()
	vals := map[string]any{}
	if file != "" {
		v, err := chartutil.ReadValuesFile(file)
		if err != nil {
			t.Fatalf("read %s: %v", file, err)
		}
		vals = v
	}
	for _, o := range overrides {
		v, err := chartutil.ReadValues([]byte(o))
		if err != nil {
			t.Fatalf("override %q: %v", o, err)
		}
		vals = chartutil.MergeTables(v, vals)
	}
	return vals
}

// render does what `helm install` does before it talks to the cluster: it
// coalesces the values with the chart's defaults, validates them against
// values.schema.json, and renders the templates.
func render(c *chart.Chart, vals map[string]any) (map[string]string, error) {
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		return nil, err
	}
	if !chartutil.IsCompatibleRange(c.Metadata.KubeVersion, kv.String()) {
		return nil, fmt.Errorf("chart needs Kubernetes %s, not %s", c.Metadata.KubeVersion, kv)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = *kv
	top, err := chartutil.ToRenderValues(c, vals, chartutil.ReleaseOptions{
		Name: releaseName, Namespace: releaseNS, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return nil, err
	}
	return engine.Render(c, top)
}

// decode splits the rendered templates into documents and decodes each
// strictly.
func decode(files map[string]string) (rendered, error) {
	r := rendered{objects: map[string]runtime.Object{}}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.HasSuffix(name, "NOTES.txt") {
			r.notes = files[name]
			continue
		}
		docs := releaseutil.SplitManifests(files[name])
		keys := make([]string, 0, len(docs))
		for k := range docs {
			keys = append(keys, k)
		}
		sort.Sort(releaseutil.BySplitManifestsOrder(keys))
		for _, k := range keys {
			doc := docs[k]
			if strings.TrimSpace(doc) == "" {
				continue
			}
			obj, gvk, err := strict.Decode([]byte(doc), nil, nil)
			if err != nil {
				return r, fmt.Errorf("%s: %w\n%s", name, err, doc)
			}
			meta, err := metaOf(obj)
			if err != nil {
				return r, fmt.Errorf("%s: %w", name, err)
			}
			key := gvk.Kind + "/" + meta.GetName()
			if _, dup := r.objects[key]; dup {
				return r, fmt.Errorf("%s: %s rendered twice", name, key)
			}
			r.objects[key] = obj
		}
	}
	return r, nil
}

func metaOf(obj runtime.Object) (metav1.Object, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", obj)
	}
	return m, nil
}

func mustRender(t *testing.T, vals map[string]any) rendered {
	t.Helper()
	files, err := render(loadChart(t), vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	r, err := decode(files)
	if err != nil {
		t.Fatalf("strict decode: %v", err)
	}
	return r
}

func TestDefaultValues(t *testing.T) {
	r := mustRender(t, values(t, ""))
	want := []string{"Deployment/" + fullname, "Job/" + topicsJobName, "PodDisruptionBudget/" + fullname, "Service/" + fullname}
	if got := r.kinds(); !slices.Equal(got, want) {
		t.Fatalf("rendered %v, want %v (no ServiceMonitor by default; no ConfigMap without a topic spec)", got, want)
	}
	d := get[*appsv1.Deployment](t, r, "Deployment", fullname)
	checkForwarders(t, d, 2)
	checkSelectors(t, r)

	fwd := d.Spec.Template.Spec.Containers[0]
	env := envMap(fwd.Env)
	for name, want := range map[string]string{
		"LADDER_BROKERS":          "kafka:9092",
		"LADDER_TIERS":            "1m,15m,1h,6h",
		"LADDER_TOPIC_PREFIX":     "delay-",
		"LADDER_GROUP":            "ladder",
		"LADDER_BUFFER_MEMORY":    "32MiB",
		"LADDER_TARGET_TIMEOUT":   "60s",
		"LADDER_MAX_HOPS":         "0",
		"LADDER_SHUTDOWN_TIMEOUT": "15s",
		"LADDER_LOG_FORMAT":       "json",
		"LADDER_HTTP_ADDR":        ":8080",
		"LADDER_EXACTLY_ONCE":     "false",
	} {
		if got := env[name].Value; got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"LADDER_SASL_MECHANISM", "LADDER_SASL_USERNAME", "LADDER_TLS_ENABLED", "LADDER_TLS_CA_FILE", "LADDER_WORKAHEAD_LANES"} {
		if _, ok := env[name]; ok {
			t.Errorf("%s set without SASL, TLS or work-ahead configured", name)
		}
	}
	if got := *d.Spec.Template.Spec.TerminationGracePeriodSeconds; got != 30 {
		t.Errorf("terminationGracePeriodSeconds = %d, want 30 (shutdown timeout 15s + 15)", got)
	}
	if len(d.Spec.Template.Spec.Volumes) != 0 || len(fwd.VolumeMounts) != 0 {
		t.Errorf("volumes without TLS files: %v %v", d.Spec.Template.Spec.Volumes, fwd.VolumeMounts)
	}

	job := get[*batchv1.Job](t, r, "Job", topicsJobName)
	checkTopicsJob(t, job, d, defaultTopics)

	pdb := get[*policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget", fullname)
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.MinAvailable != nil {
		t.Errorf("PDB: maxUnavailable %v minAvailable %v, want 1 and unset", pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable)
	}
	checkNotes(t, r.notes, `kc() { kcat -b "kafka:9092" "$@"; }`)
}

func TestProductionValues(t *testing.T) {
	r := mustRender(t, values(t, productionFile))
	want := []string{"ConfigMap/" + topicsJobName, "Deployment/" + fullname, "Job/" + topicsJobName,
		"PodDisruptionBudget/" + fullname, "Service/" + fullname, "ServiceMonitor/" + fullname}
	if got := r.kinds(); !slices.Equal(got, want) {
		t.Fatalf("rendered %v, want %v", got, want)
	}
	d := get[*appsv1.Deployment](t, r, "Deployment", fullname)
	checkForwarders(t, d, 3)
	checkSelectors(t, r)
	pod := d.Spec.Template.Spec
	fwd := pod.Containers[0]

	if got := fwd.Image; got != "registry.example.com/platform/ladder:0.1.0" {
		t.Errorf("image = %q", got)
	}
	if got := fwd.Resources.Limits.Memory().String(); got != "512Mi" {
		t.Errorf("memory limit = %s, want 512Mi", got)
	}
	if got := fwd.Resources.Requests.Cpu().String(); got != "250m" {
		t.Errorf("cpu request = %s, want 250m", got)
	}
	if got := *pod.TerminationGracePeriodSeconds; got != 40 {
		t.Errorf("terminationGracePeriodSeconds = %d, want 40", got)
	}
	if len(pod.ImagePullSecrets) != 1 || pod.ImagePullSecrets[0].Name != "registry-credentials" {
		t.Errorf("imagePullSecrets = %v", pod.ImagePullSecrets)
	}

	env := envMap(fwd.Env)
	for name, want := range map[string]string{
		"LADDER_BROKERS":                  "kafka-0.kafka.svc:9093,kafka-1.kafka.svc:9093,kafka-2.kafka.svc:9093",
		"LADDER_KAFKA_VERSION":            "3.6.0",
		"LADDER_CLIENT_ID":                "ladder-prod",
		"LADDER_SHUTDOWN_TIMEOUT":         "18s",
		"LADDER_EXACTLY_ONCE":             "true",
		"LADDER_WORKAHEAD_ENABLED":        "true",
		"LADDER_WORKAHEAD_LAG_THRESHOLD":  "100",
		"LADDER_WORKAHEAD_RATE":           "50",
		"LADDER_WORKAHEAD_LANES":          "work-fast=workers-fast,work-slow=workers-slow",
		"LADDER_SASL_MECHANISM":           "SCRAM-SHA-512",
		"LADDER_TLS_ENABLED":              "true",
		"LADDER_TLS_CA_FILE":              tlsMountPath + "/ca.crt",
		"LADDER_TLS_CERT_FILE":            tlsMountPath + "/tls.crt",
		"LADDER_TLS_KEY_FILE":             tlsMountPath + "/tls.key",
		"LADDER_TLS_SERVER_NAME":          "kafka.svc",
		"LADDER_TLS_INSECURE_SKIP_VERIFY": "",
	} {
		if got := env[name].Value; got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	for name, key := range map[string]string{"LADDER_SASL_USERNAME": "username", "LADDER_SASL_PASSWORD": "password"} {
		ref := env[name].ValueFrom
		if ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != "ladder-kafka-credentials" || ref.SecretKeyRef.Key != key {
			t.Errorf("%s: want secretKeyRef ladder-kafka-credentials/%s, got %+v", name, key, ref)
		}
		if env[name].Value != "" {
			t.Errorf("%s has a literal value", name)
		}
	}
	if ref := env["GOMEMLIMIT"].ValueFrom; ref == nil || ref.ResourceFieldRef == nil || ref.ResourceFieldRef.Resource != "limits.memory" {
		t.Errorf("extraEnv GOMEMLIMIT not passed through: %+v", env["GOMEMLIMIT"])
	}
	checkTLSVolume(t, pod, fwd)

	job := get[*batchv1.Job](t, r, "Job", topicsJobName)
	checkTopicsJob(t, job, d, configMapTopics)
	checkTLSVolume(t, job.Spec.Template.Spec, job.Spec.Template.Spec.Containers[0])
	checkTLSVolume(t, job.Spec.Template.Spec, job.Spec.Template.Spec.InitContainers[0])

	cm := get[*corev1.ConfigMap](t, r, "ConfigMap", topicsJobName)
	checkHook(t, cm.ObjectMeta, "-10")
	if spec := cm.Data["topics.yaml"]; !strings.Contains(spec, "minInsyncReplicas: 2") || !strings.Contains(spec, "- work-fast") {
		t.Errorf("topic spec not passed verbatim:\n%s", spec)
	}
	var cmVolume bool
	for _, v := range job.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
			cmVolume = true
		}
	}
	if !cmVolume {
		t.Errorf("job does not mount ConfigMap %s", cm.Name)
	}

	sm := get[*serviceMonitor](t, r, "ServiceMonitor", fullname)
	if sm.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor labels %v lack the Prometheus selector label", sm.Labels)
	}
	if len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("ServiceMonitor endpoints: %+v", sm.Spec.Endpoints)
	}
	ep := sm.Spec.Endpoints[0]
	if ep.Path != "/metrics" || ep.Interval != "15s" || ep.ScrapeTimeout != "10s" {
		t.Errorf("ServiceMonitor endpoint %+v", ep)
	}

	pdb := get[*policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget", fullname)
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 2 || pdb.Spec.MaxUnavailable != nil {
		t.Errorf("PDB: minAvailable %v maxUnavailable %v, want 2 and unset", pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable)
	}
	checkNotes(t, r.notes, `  (umask 077; printf '%s\n' \
    "bootstrap.servers=kafka-0.kafka.svc:9093,kafka-1.kafka.svc:9093,kafka-2.kafka.svc:9093" \
    "security.protocol=SASL_SSL" \
    "sasl.mechanism=SCRAM-SHA-512" \
    "ssl.ca.location=ca.crt" \
    "ssl.certificate.location=tls.crt" \
    "ssl.key.location=tls.key" \
    "sasl.username=$KAFKA_USER" "sasl.password=$KAFKA_PASSWORD" > ladder-kcat.conf)
  kc() { kcat -F ladder-kcat.conf "$@"; }`, "rm ladder-kcat.conf")
	// TLS without SASL: no secret, flags on the command line.
	tlsOnly := mustRender(t, values(t, productionFile, `kafka: {sasl: {mechanism: ""}}`))
	checkNotes(t, tlsOnly.notes, `kc() { kcat -b "kafka-0.kafka.svc:9093,kafka-1.kafka.svc:9093,kafka-2.kafka.svc:9093" -X security.protocol=SSL -X ssl.ca.location=ca.crt -X ssl.certificate.location=tls.crt -X ssl.key.location=tls.key "$@"; }`)
}

// checkForwarders asserts what every forwarder Deployment must have.
func checkForwarders(t *testing.T, d *appsv1.Deployment, replicas int32) {
	t.Helper()
	if d.Namespace != releaseNS {
		t.Errorf("namespace = %q, want %q", d.Namespace, releaseNS)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != replicas {
		t.Errorf("replicas = %v, want %d", d.Spec.Replicas, replicas)
	}
	pod := d.Spec.Template.Spec
	checkPod(t, pod)
	if len(pod.Containers) != 1 {
		t.Fatalf("containers: %d, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if !slices.Equal(c.Args, []string{"run"}) {
		t.Errorf("args = %q, want [run]", c.Args)
	}
	checkContainer(t, c)
	var port *corev1.ContainerPort
	for i := range c.Ports {
		if c.Ports[i].Name == "http" {
			port = &c.Ports[i]
		}
	}
	if port == nil {
		t.Fatalf("no port named http in %+v", c.Ports)
	}
	if got, want := envMap(c.Env)["LADDER_HTTP_ADDR"].Value, fmt.Sprintf(":%d", port.ContainerPort); got != want {
		t.Errorf("LADDER_HTTP_ADDR = %q but the http port is %d", got, port.ContainerPort)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe: want an HTTP GET, got %+v", p.name, p.probe)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "http" {
			t.Errorf("%s probe: GET %s on port %s, want %s on http", p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
		}
	}
	grace := pod.TerminationGracePeriodSeconds
	shutdown := envMap(c.Env)["LADDER_SHUTDOWN_TIMEOUT"].Value
	var secs int64
	if _, err := fmt.Sscanf(shutdown, "%ds", &secs); err != nil {
		t.Fatalf("LADDER_SHUTDOWN_TIMEOUT = %q: %v", shutdown, err)
	}
	if grace == nil || *grace <= secs {
		t.Errorf("terminationGracePeriodSeconds %v does not exceed LADDER_SHUTDOWN_TIMEOUT %s", grace, shutdown)
	}
}

// checkPod asserts the pod-level settings shared by the forwarders and the job.
func checkPod(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Errorf("enableServiceLinks = %v, want false (Kubernetes would inject look-alike variables)", pod.EnableServiceLinks)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken = %v, want false", pod.AutomountServiceAccountToken)
	}
	sc := pod.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", sc)
	}
	if sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccompProfile: want RuntimeDefault")
	}
}

// checkContainer asserts a container's security context.
func checkContainer(t *testing.T, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil {
		t.Fatalf("container %s has no securityContext", c.Name)
	}
	for what, ok := range map[string]bool{
		"runAsNonRoot":                   sc.RunAsNonRoot != nil && *sc.RunAsNonRoot,
		"readOnlyRootFilesystem":         sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem,
		"allowPrivilegeEscalation false": sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation,
		"capabilities drop ALL":          sc.Capabilities != nil && slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) && len(sc.Capabilities.Add) == 0,
		"seccompProfile RuntimeDefault":  sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault,
	} {
		if !ok {
			t.Errorf("container %s: want %s in %+v", c.Name, what, sc)
		}
	}
}

// checkTopicsJob asserts the provisioning hook: apply then verify on the
// spec file, with the forwarders' environment and security settings.
func checkTopicsJob(t *testing.T, job *batchv1.Job, d *appsv1.Deployment, file string) {
	t.Helper()
	checkHook(t, job.ObjectMeta, "0")
	pod := job.Spec.Template.Spec
	checkPod(t, pod)
	if pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("job restartPolicy = %q, want Never", pod.RestartPolicy)
	}
	if len(pod.InitContainers) != 1 || len(pod.Containers) != 1 {
		t.Fatalf("job: %d init containers and %d containers, want 1 and 1", len(pod.InitContainers), len(pod.Containers))
	}
	apply, verify := pod.InitContainers[0], pod.Containers[0]
	if want := []string{"topics", "apply", "-f", file}; !slices.Equal(apply.Args, want) {
		t.Errorf("apply args = %q, want %q", apply.Args, want)
	}
	if want := []string{"topics", "verify", "-f", file}; !slices.Equal(verify.Args, want) {
		t.Errorf("verify args = %q, want %q", verify.Args, want)
	}
	fwd := d.Spec.Template.Spec.Containers[0]
	for _, c := range []corev1.Container{apply, verify} {
		checkContainer(t, c)
		if c.Image != fwd.Image {
			t.Errorf("job container %s runs %s, the forwarders %s", c.Name, c.Image, fwd.Image)
		}
		if got, want := envNames(c.Env), envNames(fwd.Env); !slices.Equal(got, want) {
			t.Errorf("job container %s env %v differs from the forwarders' %v", c.Name, got, want)
		}
		for _, e := range c.Env {
			if f := envMap(fwd.Env)[e.Name]; f.Value != e.Value || fmt.Sprint(f.ValueFrom) != fmt.Sprint(e.ValueFrom) {
				t.Errorf("job container %s: %s = %+v, forwarders %+v", c.Name, e.Name, e, f)
			}
		}
	}
}

func checkHook(t *testing.T, m metav1.ObjectMeta, weight string) {
	t.Helper()
	a := m.Annotations
	if hooks := strings.Split(a["helm.sh/hook"], ","); !slices.Contains(hooks, "pre-install") || !slices.Contains(hooks, "pre-upgrade") {
		t.Errorf("%s: helm.sh/hook = %q, want pre-install,pre-upgrade", m.Name, a["helm.sh/hook"])
	}
	if a["helm.sh/hook-weight"] != weight {
		t.Errorf("%s: helm.sh/hook-weight = %q, want %q", m.Name, a["helm.sh/hook-weight"], weight)
	}
	if p := strings.Split(a["helm.sh/hook-delete-policy"], ","); !slices.Contains(p, "before-hook-creation") {
		t.Errorf("%s: helm.sh/hook-delete-policy = %q, want before-hook-creation", m.Name, a["helm.sh/hook-delete-policy"])
	}
}

// checkTLSVolume asserts that the TLS Secret's keys are mounted under the
// file names the environment points at.
func checkTLSVolume(t *testing.T, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	var vol *corev1.Volume
	for i := range pod.Volumes {
		if pod.Volumes[i].Secret != nil && pod.Volumes[i].Secret.SecretName == "ladder-kafka-tls" {
			vol = &pod.Volumes[i]
		}
	}
	if vol == nil {
		t.Fatalf("no volume of Secret ladder-kafka-tls in %+v", pod.Volumes)
	}
	paths := map[string]string{}
	for _, it := range vol.Secret.Items {
		paths[it.Path] = it.Key
	}
	if want := map[string]string{"ca.crt": "ca.crt", "tls.crt": "tls.crt", "tls.key": "tls.key"}; fmt.Sprint(paths) != fmt.Sprint(want) {
		t.Errorf("TLS Secret items %v, want %v", paths, want)
	}
	var mounted bool
	for _, m := range c.VolumeMounts {
		if m.Name == vol.Name && m.MountPath == tlsMountPath && m.ReadOnly {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("container %s does not mount %s read-only at %s: %+v", c.Name, vol.Name, tlsMountPath, c.VolumeMounts)
	}
	env := envMap(c.Env)
	for _, name := range []string{"LADDER_TLS_CA_FILE", "LADDER_TLS_CERT_FILE", "LADDER_TLS_KEY_FILE"} {
		if rel := strings.TrimPrefix(env[name].Value, tlsMountPath+"/"); paths[rel] == "" {
			t.Errorf("container %s: %s = %q is not a mounted file", c.Name, name, env[name].Value)
		}
	}
}

// checkSelectors asserts that the Service, the PDB and the ServiceMonitor
// select the forwarder pods (and not the job's), and that named ports exist.
func checkSelectors(t *testing.T, r rendered) {
	t.Helper()
	d := get[*appsv1.Deployment](t, r, "Deployment", fullname)
	pods := labels.Set(d.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(pods) {
		t.Errorf("Deployment selector %v does not match its pods %v (%v)", d.Spec.Selector, pods, err)
	}
	job := get[*batchv1.Job](t, r, "Job", topicsJobName)
	if sel.Matches(labels.Set(job.Spec.Template.Labels)) {
		t.Errorf("Deployment selector also matches the job's pods %v", job.Spec.Template.Labels)
	}

	svc := get[*corev1.Service](t, r, "Service", fullname)
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(pods) {
		t.Errorf("Service selector %v does not match the pods %v", svc.Spec.Selector, pods)
	}
	if !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("Service drops not-ready forwarders from its endpoints: their metrics would go unscraped")
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "metrics" || svc.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("Service ports %+v, want metrics -> http", svc.Spec.Ports)
	}

	pdb := get[*policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget", fullname)
	if sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err != nil || !sel.Matches(pods) {
		t.Errorf("PDB selector %v does not match the pods %v", pdb.Spec.Selector, pods)
	}

	if o, ok := r.objects["ServiceMonitor/"+fullname]; ok {
		sm := o.(*serviceMonitor)
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(svc.Labels)) {
			t.Errorf("ServiceMonitor selector %v does not match the Service labels %v", sm.Spec.Selector, svc.Labels)
		}
		if sm.Spec.NamespaceSelector == nil || !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{releaseNS}) {
			t.Errorf("ServiceMonitor namespaceSelector %+v, want [%s]", sm.Spec.NamespaceSelector, releaseNS)
		}
		for _, ep := range sm.Spec.Endpoints {
			if ep.Port != svc.Spec.Ports[0].Name {
				t.Errorf("ServiceMonitor endpoint port %q is not the Service's port %q", ep.Port, svc.Spec.Ports[0].Name)
			}
		}
	}
}

// checkNotes asserts that NOTES.txt carries the kcat commands of the
// defaults tiers: peek a head with headers, count per tier from the offsets
// (nothing consumed), tail the DLQ; kc is the kcat command line, or the
// lines that write its private config file when SASL is on: a password
// never goes on a command line.
func checkNotes(t *testing.T, notes string, kc ...string) {
	t.Helper()
	for _, want := range append(kc,
		"kc -C -t delay-1m -p 0 -o OFFSET -c 1 -e",
		"headers %h",
		"for t in delay-1m delay-15m delay-1h delay-6h; do",
		`for p in $(kc -L -t "$t" | sed -n 's/^ *partition \([0-9]*\),.*/\1/p'); do`,
		`start=$(kc -Q -t "$t:$p:-2" | awk '{print $NF}')`,
		`end=$(kc -Q -t "$t:$p:-1" | awk '{print $NF}')`,
		`echo "$t/$p $((end - start)) records (offsets $start..$end)"`,
		"kc -C -t delay-dlq -o end -q",
		"exec deploy/"+fullname+" -- ladder inspect",
	) {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES.txt lacks %q:\n%s", want, notes)
		}
	}
	for _, bad := range []string{"-o beginning", "wc -l", "-X sasl.password", "-X sasl.username"} {
		if strings.Contains(notes, bad) {
			t.Errorf("NOTES.txt has %q:\n%s", bad, notes)
		}
	}
}

func envMap(env []corev1.EnvVar) map[string]corev1.EnvVar {
	m := make(map[string]corev1.EnvVar, len(env))
	for _, e := range env {
		m[e.Name] = e
	}
	return m
}

func envNames(env []corev1.EnvVar) []string {
	var out []string
	for _, e := range env {
		out = append(out, e.Name)
	}
	return out
}

func TestEnvNamesAreUniqueAndKnown(t *testing.T) {
	// The variables ladder reads (cmd/ladder Config and the security,
	// HTTP and work-ahead settings); a misspelled one would be ignored by
	// envconfig without a word.
	known := []string{
		"LADDER_BROKERS", "LADDER_KAFKA_VERSION", "LADDER_CLIENT_ID", "LADDER_TIERS", "LADDER_TOPIC_PREFIX",
		"LADDER_GROUP", "LADDER_BUFFER_MEMORY", "LADDER_TARGET_TIMEOUT", "LADDER_RESUME_LEAD", "LADDER_MAX_HOPS", "LADDER_SHUTDOWN_TIMEOUT",
		"LADDER_STATS_INTERVAL", "LADDER_LOG_LEVEL", "LADDER_LOG_FORMAT", "LADDER_HTTP_ADDR", "LADDER_EXACTLY_ONCE",
		"LADDER_WORKAHEAD_ENABLED", "LADDER_WORKAHEAD_LAG_THRESHOLD", "LADDER_WORKAHEAD_RATE", "LADDER_WORKAHEAD_LANES",
		"LADDER_SASL_MECHANISM", "LADDER_SASL_USERNAME", "LADDER_SASL_PASSWORD",
		"LADDER_TLS_ENABLED", "LADDER_TLS_CA_FILE", "LADDER_TLS_CERT_FILE", "LADDER_TLS_KEY_FILE",
		"LADDER_TLS_SERVER_NAME", "LADDER_TLS_INSECURE_SKIP_VERIFY",
	}
	for _, file := range []string{"", productionFile} {
		r := mustRender(t, values(t, file, `kafka: {tls: {insecureSkipVerify: true}}`))
		d := get[*appsv1.Deployment](t, r, "Deployment", fullname)
		seen := map[string]bool{}
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if seen[e.Name] {
				t.Errorf("%s: %s set twice", file, e.Name)
			}
			seen[e.Name] = true
			if strings.HasPrefix(e.Name, "LADDER_") && !slices.Contains(known, e.Name) {
				t.Errorf("%s: %s is not a variable ladder reads", file, e.Name)
			}
		}
	}
}

// TestSchemaRejects checks that values.schema.json stops a bad value at
// install time, naming where it is.
func TestSchemaRejects(t *testing.T) {
	c := loadChart(t)
	for _, tc := range []struct {
		name, values, where string
	}{
		{"replicas as a word", `replicaCount: three`, "/replicaCount"},
		{"replicas negative", `replicaCount: -1`, "/replicaCount"},
		{"unknown top-level key", `replicas: 3`, "replicas"},
		{"misspelled resources key", `resources: {limts: {memory: 1Gi}}`, "limts"},
		{"bad quantity", `resources: {limits: {memory: lots}}`, "/resources/limits/memory"},
		{"brokers as one string", `kafka: {brokers: "a:9092,b:9092"}`, "/kafka/brokers"},
		{"broker without port", `kafka: {brokers: [kafka]}`, "/kafka/brokers/0"},
		{"no brokers", `kafka: {brokers: []}`, "/kafka/brokers"},
		{"unknown SASL mechanism", `kafka: {sasl: {mechanism: GSSAPI, existingSecret: s}}`, "/kafka/sasl/mechanism"},
		{"SASL without a Secret", `kafka: {sasl: {mechanism: PLAIN}}`, "/kafka/sasl"},
		{"client certificate without key", `kafka: {tls: {enabled: true, existingSecret: s, certKey: tls.crt}}`, "/kafka/tls"},
		{"client certificate without Secret", `kafka: {tls: {enabled: true, certKey: tls.crt, keyKey: tls.key}}`, "/kafka/tls"},
		{"TLS flag as a string", `kafka: {tls: {enabled: "yes"}}`, "/kafka/tls/enabled"},
		{"tiers as one string", `ladder: {tiers: "1m,15m"}`, "/ladder/tiers"},
		{"bad tier delay", `ladder: {tiers: [1m, soon]}`, "/ladder/tiers/1"},
		{"bad duration", `ladder: {resumeLead: half-a-second}`, "/ladder/resumeLead"},
		{"shutdown timeout zero", `ladder: {shutdownTimeoutSeconds: 0}`, "/ladder/shutdownTimeoutSeconds"},
		{"buffer memory without a size", `ladder: {bufferMemory: lots}`, "/ladder/bufferMemory"},
		{"log level", `ladder: {logLevel: verbose}`, "/ladder/logLevel"},
		{"log format", `ladder: {logFormat: xml}`, "/ladder/logFormat"},
		{"lane without group", `ladder: {workAhead: {lanes: [{target: work}]}}`, "/ladder/workAhead/lanes/0"},
		{"privileged port", `httpPort: 80`, "/httpPort"},
		{"PDB bound as a word", `podDisruptionBudget: {minAvailable: most}`, "/podDisruptionBudget/minAvailable"},
		{"topic spec as a string", `topics: {spec: "partitions: 3"}`, "/topics/spec"},
		{"pull policy", `image: {pullPolicy: Sometimes}`, "/image/pullPolicy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(c, values(t, "", tc.values))
			if err == nil {
				t.Fatalf("values %q rendered; the schema should reject them", tc.values)
			}
			if !strings.Contains(err.Error(), "values don't meet the specifications of the schema") || !strings.Contains(err.Error(), tc.where) {
				t.Fatalf("values %q: want a schema error at %s, got: %v", tc.values, tc.where, err)
			}
		})
	}
}

// TestSchemaAccepts checks values the schema must not refuse.
func TestSchemaAccepts(t *testing.T) {
	c := loadChart(t)
	for _, v := range []string{
		`global: {imageRegistry: registry.example.com}`, // set by a parent chart
		`podDisruptionBudget: {maxUnavailable: 50%}`,
		`{ladder: {tiers: [30s, 5m, 2d], statsInterval: "0"}, topics: {provision: false}}`,
		`kafka: {sasl: {mechanism: PLAIN, existingSecret: creds}, tls: {enabled: true}}`,
		`kafka: {tls: {enabled: true, existingSecret: ca, caKey: ca.pem}}`,
		`topics: {provision: false}`,
		`replicaCount: 0`,
	} {
		if _, err := decodeValues(c, values(t, "", v)); err != nil {
			t.Errorf("values %q: %v", v, err)
		}
	}
}

func decodeValues(c *chart.Chart, vals map[string]any) (rendered, error) {
	files, err := render(c, vals)
	if err != nil {
		return rendered{}, err
	}
	return decode(files)
}

// TestWrongTypeInValuesFile is the acceptance check: a values file with a
// wrong type fails as `helm install -f` would fail, before any template runs.
func TestWrongTypeInValuesFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad-values.yaml")
	if err := os.WriteFile(file, []byte("replicaCount: \"three\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := render(loadChart(t), values(t, file))
	if err == nil || !strings.Contains(err.Error(), "replicaCount") || !strings.Contains(err.Error(), "want integer") {
		t.Fatalf("replicaCount: \"three\": want a schema type error, got %v", err)
	}
}

// TestTemplateRejects covers what the schema cannot say: relations between values.
func TestTemplateRejects(t *testing.T) {
	c := loadChart(t)
	_, err := render(c, values(t, "", `ladder: {shutdownTimeoutSeconds: 18}`, `terminationGracePeriodSeconds: 18`))
	if err == nil || !strings.Contains(err.Error(), "must exceed ladder.shutdownTimeoutSeconds") {
		t.Fatalf("grace period equal to the shutdown timeout: want a render error, got %v", err)
	}
	const spec = `topics: {spec: {defaults: {partitions: 3, replicationFactor: 3, minInsyncReplicas: 2, maxOutage: 3d}, ladder: {topicPrefix: delay-, tiers: [1m, 15m, 1h, 6h]}}}`
	const imageSpec = "the topic spec in the image (" + defaultTopics + ")"
	for _, tc := range []struct {
		name   string
		values []string
		says   string
	}{
		{"other tiers than the image's spec", []string{`ladder: {tiers: [30s, 5m]}`},
			`ladder.tiers [30s 5m] and ladder.topicPrefix "delay-" name the tier topics delay-30s, delay-5m, but ` + imageSpec + `, which the provisioning job applies, names delay-1m, delay-15m, delay-1h, delay-6h`},
		{"other prefix than the image's spec", []string{`ladder: {topicPrefix: wait-}`},
			`name the tier topics wait-1m, wait-15m, wait-1h, wait-6h, but ` + imageSpec},
		{"a tier fewer than topics.spec", []string{spec, `ladder: {tiers: [1m, 15m, 1h]}`},
			`name the tier topics delay-1m, delay-15m, delay-1h, but topics.spec, which the provisioning job applies, names delay-1m, delay-15m, delay-1h, delay-6h`},
		{"other prefix than topics.spec", []string{spec, `ladder: {topicPrefix: later-}`}, `but topics.spec, which the provisioning job applies`},
		{"topics.spec with the default prefix", []string{`topics: {spec: {ladder: {tiers: [1m, 15m, 1h, 6h]}}}`, `ladder: {topicPrefix: wait-}`},
			`but topics.spec, which the provisioning job applies, names delay-1m, delay-15m, delay-1h, delay-6h`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(c, values(t, "", tc.values...))
			if err == nil || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "Make them agree") {
				t.Fatalf("values %q: want a render error saying %q, got %v", tc.values, tc.says, err)
			}
		})
	}
	// The same topics written otherwise, a spec for other tiers matched by the values, and no provisioning render.
	for _, v := range [][]string{
		{`ladder: {tiers: [60s, 900s, 60m, 6h]}`},
		{`ladder: {tiers: [1h, 6h, 15m, 1m]}`},
		{`ladder: {tiers: ["1m", "0.25h", "3600000ms", "5h60m"]}`},
		{strings.ReplaceAll(spec, "[1m, 15m, 1h, 6h]", "[30s, 2d]"), `ladder: {tiers: [30s, 48h]}`},
		{strings.ReplaceAll(spec, "topicPrefix: delay-", "topicPrefix: wait-"), `ladder: {topicPrefix: wait-}`},
		{`topics: {provision: false}`, `ladder: {tiers: [30s], topicPrefix: other-}`},
	} {
		if _, err := decodeValues(c, values(t, "", v...)); err != nil {
			t.Errorf("values %q: %v", v, err)
		}
	}
	r := mustRender(t, values(t, "", `ladder: {shutdownTimeoutSeconds: 10}`))
	d := get[*appsv1.Deployment](t, r, "Deployment", fullname)
	if got := *d.Spec.Template.Spec.TerminationGracePeriodSeconds; got != 25 {
		t.Errorf("terminationGracePeriodSeconds = %d, want 25 (10 + 15)", got)
	}
}

// TestStrictDecodingCatchesTypos proves the decoder is strict: a chart with
// a misspelled field fails the way the build must fail.
func TestStrictDecodingCatchesTypos(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"Service", `
apiVersion: v1
kind: Service
metadata: {name: x}
spec:
  prots: [{port: 80}]
`, `unknown field "spec.prots"`},
		{"Deployment container", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers: [{name: c, image: i, readinessProbe: {httpGet: {path: /readyz, prot: http}}}]
`, `unknown field "spec.template.spec.containers[0].readinessProbe.httpGet.prot"`},
		{"wrong type", `
apiVersion: v1
kind: Service
metadata: {name: x}
spec:
  ports: [{port: "8080"}]
`, `cannot unmarshal`},
		{"duplicate field", `
apiVersion: v1
kind: ConfigMap
metadata: {name: x, name: z}
`, `key "name" already set in map`},
		{"ServiceMonitor", `
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: x}
spec:
  selector: {}
  endpoints: [{port: metrics, intervall: 30s}]
`, `unknown field "spec.endpoints[0].intervall"`},
		{"unregistered kind", `
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata: {name: x}
`, `no kind "PodMonitor" is registered`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := strict.Decode([]byte(tc.doc), nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}

	// The same through the chart: a template with a typo fails the render check.
	c := loadChart(t)
	c.Templates = append(c.Templates, &chart.File{Name: "templates/typo.yaml", Data: []byte(
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: typo\nspec:\n  prots:\n    - port: 80\n")})
	files, err := render(c, values(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decode(files); err == nil || !strings.Contains(err.Error(), `unknown field "spec.prots"`) {
		t.Fatalf("a chart with spec.prots: want a strict decoding error, got %v", err)
	}
}

// TestLint runs the checks of `helm lint --strict` through the SDK: every
// warning fails, as with the CLI.
func TestLint(t *testing.T) {
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"", productionFile} {
		l := lint.AllWithKubeVersion(chartDir, values(t, file), releaseNS, kv)
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("lint %s: %s", file, m)
			} else {
				t.Logf("lint %s: %s", file, m)
			}
		}
	}
}

// TestSecurityVariants checks the environment and volumes of the ways to
// reach a secured cluster.
func TestSecurityVariants(t *testing.T) {
	for _, tc := range []struct {
		name, values string
		env          map[string]string // "" = must be absent
		items        []string          // files of the TLS volume; nil = no volume
	}{
		{"SASL/PLAIN without TLS", `kafka: {sasl: {mechanism: PLAIN, existingSecret: creds}}`,
			map[string]string{"LADDER_SASL_MECHANISM": "PLAIN", "LADDER_TLS_ENABLED": "", "LADDER_TLS_CA_FILE": ""}, nil},
		{"TLS with the system CAs", `kafka: {tls: {enabled: true}}`,
			map[string]string{"LADDER_TLS_ENABLED": "true", "LADDER_TLS_CA_FILE": "", "LADDER_SASL_MECHANISM": ""}, nil},
		{"TLS with a private CA", `kafka: {tls: {enabled: true, existingSecret: ca, caKey: ca.pem}}`,
			map[string]string{"LADDER_TLS_CA_FILE": tlsMountPath + "/ca.crt", "LADDER_TLS_CERT_FILE": ""}, []string{"ca.pem=ca.crt"}},
		{"mutual TLS with the system CAs", `kafka: {tls: {enabled: true, existingSecret: c, caKey: "", certKey: crt, keyKey: key}}`,
			map[string]string{"LADDER_TLS_CA_FILE": "", "LADDER_TLS_CERT_FILE": tlsMountPath + "/tls.crt", "LADDER_TLS_KEY_FILE": tlsMountPath + "/tls.key"},
			[]string{"crt=tls.crt", "key=tls.key"}},
		{"TLS Secret while TLS is off", `kafka: {tls: {enabled: false, existingSecret: ca}}`,
			map[string]string{"LADDER_TLS_ENABLED": "", "LADDER_TLS_CA_FILE": ""}, nil},
		{"insecure", `kafka: {tls: {enabled: true, insecureSkipVerify: true}}`,
			map[string]string{"LADDER_TLS_INSECURE_SKIP_VERIFY": "true"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, values(t, "", tc.values))
			d := get[*appsv1.Deployment](t, r, "Deployment", fullname)
			job := get[*batchv1.Job](t, r, "Job", topicsJobName)
			for _, pod := range []corev1.PodSpec{d.Spec.Template.Spec, job.Spec.Template.Spec} {
				c := pod.Containers[0]
				env := envMap(c.Env)
				for name, want := range tc.env {
					e, ok := env[name]
					if want == "" && ok {
						t.Errorf("%s: %s = %+v, want it unset", c.Name, name, e)
					} else if want != "" && e.Value != want {
						t.Errorf("%s: %s = %q, want %q", c.Name, name, e.Value, want)
					}
				}
				var items []string
				for _, v := range pod.Volumes {
					if v.Secret != nil {
						for _, it := range v.Secret.Items {
							items = append(items, it.Key+"="+it.Path)
						}
					}
				}
				if !slices.Equal(items, tc.items) {
					t.Errorf("%s: TLS volume files %v, want %v", c.Name, items, tc.items)
				}
				var mounted bool
				for _, m := range c.VolumeMounts {
					mounted = mounted || m.MountPath == tlsMountPath
				}
				if mounted != (tc.items != nil) {
					t.Errorf("%s: TLS mounted = %v with volume files %v", c.Name, mounted, tc.items)
				}
			}
		})
	}
}
