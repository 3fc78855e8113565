package charts

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The Prometheus Operator's ServiceMonitor (monitoring.coreos.com/v1), cut
// down to the fields the chart may render, with the operator's JSON names.
// Registering it in the test scheme lets the strict decoder reject a
// misspelled field of the chart's ServiceMonitor as it does for built-in
// kinds; a field the chart starts to use must be added here from the CRD.

var monitoringV1 = schema.GroupVersion{Group: "monitoring.coreos.com", Version: "v1"}

type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              serviceMonitorSpec `json:"spec"`
}

type serviceMonitorSpec struct {
	JobLabel          string               `json:"jobLabel,omitempty"`
	TargetLabels      []string             `json:"targetLabels,omitempty"`
	PodTargetLabels   []string             `json:"podTargetLabels,omitempty"`
	Endpoints         []monitorEndpoint    `json:"endpoints"`
	Selector          metav1.LabelSelector `json:"selector"`
	NamespaceSelector *namespaceSelector   `json:"namespaceSelector,omitempty"`
	SampleLimit       *uint64              `json:"sampleLimit,omitempty"`
}

type namespaceSelector struct {
	Any        bool     `json:"any,omitempty"`
	MatchNames []string `json:"matchNames,omitempty"`
}

type monitorEndpoint struct {
	Port            string              `json:"port,omitempty"`
	Path            string              `json:"path,omitempty"`
	Scheme          string              `json:"scheme,omitempty"`
	Params          map[string][]string `json:"params,omitempty"`
	Interval        string              `json:"interval,omitempty"`
	ScrapeTimeout   string              `json:"scrapeTimeout,omitempty"`
	HonorLabels     bool                `json:"honorLabels,omitempty"`
	HonorTimestamps *bool               `json:"honorTimestamps,omitempty"`
}

// DeepCopyObject copies through JSON; the type exists for decoding only.
func (s *serviceMonitor) DeepCopyObject() runtime.Object {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	out := new(serviceMonitor)
	if err := json.Unmarshal(b, out); err != nil {
		panic(err)
	}
	return out
}

type serviceMonitorList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []serviceMonitor `json:"items"`
}

func (l *serviceMonitorList) DeepCopyObject() runtime.Object {
	b, err := json.Marshal(l)
	if err != nil {
		panic(err)
	}
	out := new(serviceMonitorList)
	if err := json.Unmarshal(b, out); err != nil {
		panic(err)
	}
	return out
}
