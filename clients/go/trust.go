package cortex

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Trust says which server certificates to accept. There is no "skip verification".
type Trust struct {
	caFile       string
	fingerprints []string
}

// TrustCAFile accepts certificates signed by a CA in this PEM file, valid for the server
// name (normal chain and name checks).
func TrustCAFile(path string) Trust { return Trust{caFile: path} }

// TrustFingerprint accepts exactly the certificates with these SHA-256 fingerprints (hex,
// colons allowed; a cluster's nodes: one each, or comma-separated).
func TrustFingerprint(fp ...string) Trust {
	var all []string
	for _, f := range fp {
		for _, one := range strings.Split(f, ",") {
			one = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(one), ":", ""))
			if one != "" {
				all = append(all, one)
			}
		}
	}
	return Trust{fingerprints: all}
}

// TrustCertFile accepts exactly the certificate in this PEM file (pinned by its
// fingerprint).
func TrustCertFile(path string) (Trust, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Trust{}, fmt.Errorf("cortex: trust: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "CERTIFICATE" {
		return Trust{}, fmt.Errorf("cortex: trust: no certificate in %s", path)
	}
	return TrustFingerprint(Fingerprint(block.Bytes)), nil
}

// TrustLocal accepts the certificate a broker keeps in its data directory
// (DATA_DIR/tls/cert.pem, made by `cortex serve` on first start): the default for an
// agent on the broker's own host.
func TrustLocal(dataDir string) (Trust, error) {
	return TrustCertFile(filepath.Join(dataDir, "tls", "cert.pem"))
}

// Fingerprint is the SHA-256 of a DER certificate, lowercase hex.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func (t Trust) tlsConfig(serverName string) (*tls.Config, error) {
	c := &tls.Config{
		ServerName: serverName,
		NextProtos: []string{ALPN},
		MinVersion: tls.VersionTLS13,
	}
	switch {
	case t.caFile != "":
		raw, err := os.ReadFile(t.caFile)
		if err != nil {
			return nil, fmt.Errorf("cortex: trust: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw) {
			return nil, fmt.Errorf("cortex: trust: no certificate in %s", t.caFile)
		}
		c.RootCAs = pool
	case len(t.fingerprints) > 0:
		pins := append([]string(nil), t.fingerprints...)
		// Go's chain check is replaced, not skipped: the handshake still proves the peer
		// holds the key of the certificate, and that certificate must be a pinned one.
		c.InsecureSkipVerify = true
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("cortex: the server sent no certificate")
			}
			got := Fingerprint(cs.PeerCertificates[0].Raw)
			for _, p := range pins {
				if p == got {
					return nil
				}
			}
			return fmt.Errorf("cortex: the server's certificate %s is not a trusted one", got)
		}
	default:
		return nil, errors.New("cortex: no trust given (TrustCAFile, TrustFingerprint, TrustCertFile or TrustLocal)")
	}
	return c, nil
}
