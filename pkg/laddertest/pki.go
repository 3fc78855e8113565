package laddertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// PKI is a throwaway certificate authority with a server certificate (for
// 127.0.0.1, ::1 and localhost) and a client certificate, all as PEM files
// in a temporary directory removed when the test ends.
type PKI struct {
	Dir string
	// CAFile is the CA certificate (PEM), what clients trust.
	CAFile string
	// ServerCertFile and ServerKeyFile are the broker's certificate and key.
	ServerCertFile, ServerKeyFile string
	// ClientCertFile and ClientKeyFile are a client certificate for mutual TLS.
	ClientCertFile, ClientKeyFile string
	// ServerName is a DNS name in the server certificate that is not the
	// broker's address, for tests of LADDER_TLS_SERVER_NAME.
	ServerName string

	pool   *x509.CertPool
	server tls.Certificate
}

// NewPKI creates a CA and certificates signed by it (ECDSA P-256, valid for a day).
func NewPKI(tb testing.TB) *PKI {
	tb.Helper()
	dir := tb.TempDir()
	p := &PKI{Dir: dir, ServerName: "kafka.ladder.test", pool: x509.NewCertPool()}
	now := time.Now()
	caKey := newKey(tb)
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: "ladder test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatalf("creating test CA: %v", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		tb.Fatal(err)
	}
	p.pool.AddCert(ca)
	p.CAFile = writePEM(tb, dir, "ca.crt", "CERTIFICATE", caDER)

	issue := func(name string, usage x509.ExtKeyUsage, dns []string, ips []net.IP) (certFile, keyFile string, cert tls.Certificate) {
		key := newKey(tb)
		tmpl := &x509.Certificate{
			SerialNumber: serial(tb),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			DNSNames:     dns,
			IPAddresses:  ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			tb.Fatalf("issuing test certificate %s: %v", name, err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			tb.Fatal(err)
		}
		certFile = writePEM(tb, dir, name+".crt", "CERTIFICATE", der)
		keyFile = writePEM(tb, dir, name+".key", "EC PRIVATE KEY", keyDER)
		cert, err = tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			tb.Fatal(err)
		}
		return certFile, keyFile, cert
	}
	p.ServerCertFile, p.ServerKeyFile, p.server = issue("server", x509.ExtKeyUsageServerAuth,
		[]string{"localhost", p.ServerName}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback})
	p.ClientCertFile, p.ClientKeyFile, _ = issue("client", x509.ExtKeyUsageClientAuth, nil, nil)
	return p
}

// Secrets returns the private keys' PEM bodies, line by line: what a
// secret scan looks for besides passwords.
func (p *PKI) Secrets() []string {
	var out []string
	for _, f := range []string{p.ServerKeyFile, p.ClientKeyFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line != "" && !strings.HasPrefix(line, "-----") {
				out = append(out, line)
			}
		}
	}
	return out
}

// ServerTLS is the broker's TLS configuration; with mutual, clients must
// present a certificate signed by the CA.
func (p *PKI) ServerTLS(mutual bool) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12}
	if mutual {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = p.pool
	}
	return c
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("generating key: %v", err)
	}
	return k
}

func serial(tb testing.TB) *big.Int {
	tb.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func writePEM(tb testing.TB, dir, name, typ string, der []byte) string {
	tb.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}
