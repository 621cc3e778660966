package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"sync"
	"time"
)

// ReceiverCertNames are the DNS names in the "tls" receiver's certificate.
// verify.test is deliberately absent: a "verify" policy for it fails with a
// hostname mismatch when Config.TrustTestCA is set.
var ReceiverCertNames = []string{"tls.test", "mx.tls.test", "out.test", "tls1.test", "*.wild.test"}

type testPKI struct {
	caPEM    []byte // CA certificate
	chainPEM []byte // receiver certificate followed by the CA
	keyPEM   []byte // receiver key (RSA 2048, like most real MX hosts)
}

var (
	pkiOnce sync.Once
	pki     testPKI
	pkiErr  error
)

// testCerts returns a CA and a receiver certificate, generated once per
// test binary (RSA key generation is the slow part).
func testCerts() (testPKI, error) {
	pkiOnce.Do(func() { pki, pkiErr = makePKI(time.Now()) })
	return pki, pkiErr
}

func makePKI(now time.Time) (testPKI, error) {
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return testPKI{}, fmt.Errorf("e2e: CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mailtls e2e test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return testPKI{}, fmt.Errorf("e2e: CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return testPKI{}, fmt.Errorf("e2e: CA certificate: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return testPKI{}, fmt.Errorf("e2e: receiver key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "mx.tls.test"},
		DNSNames:     ReceiverCertNames,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return testPKI{}, fmt.Errorf("e2e: receiver certificate: %w", err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), caPEM...)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return testPKI{caPEM: caPEM, chainPEM: chain, keyPEM: keyPEM}, nil
}
