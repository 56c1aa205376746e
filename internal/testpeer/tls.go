// Package testpeer runs real protocol peers on loopback for relay's tests:
// an SMTP upstream built on go-smtp with real TLS, and an OAuth 2.0
// authorization server. Each Start* helper registers its own cleanup.
package testpeer

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
	"sync"
	"testing"
	"time"
)

// PKI is a certificate authority made for the test run and a server
// certificate it signed for localhost, 127.0.0.1 and ::1.
type PKI struct {
	CAPEM   []byte
	CAPool  *x509.CertPool
	Cert    tls.Certificate
	CertPEM []byte
	KeyPEM  []byte
}

var (
	pkiOnce sync.Once
	pki     *PKI
	pkiErr  error
)

// TestPKI returns the run's PKI, made on first use.
func TestPKI(t testing.TB) *PKI {
	t.Helper()
	pkiOnce.Do(func() { pki, pkiErr = makePKI() })
	if pkiErr != nil {
		t.Fatalf("make test certificates: %v", pkiErr)
	}
	return pki
}

// Files writes the CA certificate, server certificate and key into a
// temporary directory and returns their paths.
func (p *PKI) Files(t testing.TB) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	caFile = filepath.Join(dir, "ca.pem")
	certFile = filepath.Join(dir, "cert.pem")
	keyFile = filepath.Join(dir, "key.pem")
	for name, data := range map[string][]byte{caFile: p.CAPEM, certFile: p.CertPEM, keyFile: p.KeyPEM} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

func makePKI() (*PKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "relay test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	p := &PKI{
		CAPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		CAPool:  x509.NewCertPool(),
	}
	p.CAPool.AddCert(caCert)
	if p.Cert, err = tls.X509KeyPair(p.CertPEM, p.KeyPEM); err != nil {
		return nil, err
	}
	return p, nil
}
