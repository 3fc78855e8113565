package realkafka

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
)

// writeKeystore writes a PEM keystore for Kafka into dir: the private key
// of keyFile as unencrypted PKCS#8 (the only unencrypted form Kafka reads),
// then the certificates of certFile.
func writeKeystore(dir, certFile, keyFile string) (string, error) {
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return "", fmt.Errorf("reading the broker's TLS key: %w", err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return "", fmt.Errorf("the broker's TLS key %s holds no PEM block", keyFile)
	}
	der := block.Bytes
	switch block.Type {
	case "PRIVATE KEY":
	case "EC PRIVATE KEY", "RSA PRIVATE KEY":
		var key any
		if block.Type == "EC PRIVATE KEY" {
			key, err = x509.ParseECPrivateKey(block.Bytes)
		} else {
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		}
		if err == nil {
			der, err = x509.MarshalPKCS8PrivateKey(key)
		}
		if err != nil {
			return "", fmt.Errorf("converting the broker's TLS key %s to PKCS#8: %w", keyFile, err)
		}
	default:
		return "", fmt.Errorf("the broker's TLS key %s is a %q block, want a private key", keyFile, block.Type)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return "", fmt.Errorf("reading the broker's TLS certificate: %w", err)
	}
	out := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), certPEM...)
	path := filepath.Join(dir, "keystore.pem")
	return path, os.WriteFile(path, out, 0o600)
}
