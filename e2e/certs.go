package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
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
	// The same key in two more certificates: expiredPEM from the CA for
	// expired.test, valid from two days ago until yesterday (followed by
	// the CA); untrustedPEM for untrusted.test from another CA, which no
	// one trusts, followed by that CA (as a server with a private CA
	// sends it).
	expiredPEM, untrustedPEM []byte
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

	expTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(3),
		Subject:      pkix.Name{CommonName: "expired.test"},
		DNSNames:     []string{"expired.test"},
		NotBefore:    now.Add(-48 * time.Hour),
		NotAfter:     now.Add(-24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	expDER, err := x509.CreateCertificate(rand.Reader, expTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return testPKI{}, fmt.Errorf("e2e: expired certificate: %w", err)
	}
	expired := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: expDER}), caPEM...)

	// The other CA signs with ECDSA: no second RSA key to generate.
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return testPKI{}, fmt.Errorf("e2e: untrusted CA key: %w", err)
	}
	otherTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(4),
		Subject:               pkix.Name{CommonName: "mailtls e2e untrusted CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	otherDER, err := x509.CreateCertificate(rand.Reader, otherTmpl, otherTmpl, &otherKey.PublicKey, otherKey)
	if err != nil {
		return testPKI{}, fmt.Errorf("e2e: untrusted CA certificate: %w", err)
	}
	other, err := x509.ParseCertificate(otherDER)
	if err != nil {
		return testPKI{}, fmt.Errorf("e2e: untrusted CA certificate: %w", err)
	}
	untTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(5),
		Subject:      pkix.Name{CommonName: "untrusted.test"},
		DNSNames:     []string{"untrusted.test"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	untDER, err := x509.CreateCertificate(rand.Reader, untTmpl, other, &key.PublicKey, otherKey)
	if err != nil {
		return testPKI{}, fmt.Errorf("e2e: untrusted certificate: %w", err)
	}
	untrusted := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: untDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: otherDER})...)
	return testPKI{caPEM: caPEM, chainPEM: chain, keyPEM: keyPEM, expiredPEM: expired, untrustedPEM: untrusted}, nil
}
