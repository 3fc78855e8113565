// Package charts holds the checks of ladder's Helm chart: it renders
// charts/ladder with the helm SDK and decodes every manifest strictly into the
// Kubernetes API types, in a module of its own so that helm and Kubernetes
// stay out of the product's go.mod.
package charts
