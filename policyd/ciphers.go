package policyd

import "strings"

// certSuite is one TLS 1.2-and-older cipher suite with certificate
// authentication, as `openssl ciphers -v` describes it.
type certSuite struct {
	name, proto, kx, au, enc, mac string
}

// certSuites are the suites of Postfix's medium and high cipher grades
// (tls_medium_cipherlist = aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH) that
// authenticate the server with a certificate, from OpenSSL 3.0:
//
//	openssl ciphers -v 'aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH'
//
// less TLS 1.3 (exclusions do not touch it), PSK, SRP and anonymous suites.
// With OpenSSL 3 the export, low and medium grades add nothing usable.
var certSuites = []certSuite{
	{"ECDHE-ECDSA-AES256-GCM-SHA384", "TLSv1.2", "ECDH", "ECDSA", "AESGCM(256)", "AEAD"},
	{"ECDHE-RSA-AES256-GCM-SHA384", "TLSv1.2", "ECDH", "RSA", "AESGCM(256)", "AEAD"},
	{"DHE-DSS-AES256-GCM-SHA384", "TLSv1.2", "DH", "DSS", "AESGCM(256)", "AEAD"},
	{"DHE-RSA-AES256-GCM-SHA384", "TLSv1.2", "DH", "RSA", "AESGCM(256)", "AEAD"},
	{"ECDHE-ECDSA-CHACHA20-POLY1305", "TLSv1.2", "ECDH", "ECDSA", "CHACHA20/POLY1305(256)", "AEAD"},
	{"ECDHE-RSA-CHACHA20-POLY1305", "TLSv1.2", "ECDH", "RSA", "CHACHA20/POLY1305(256)", "AEAD"},
	{"DHE-RSA-CHACHA20-POLY1305", "TLSv1.2", "DH", "RSA", "CHACHA20/POLY1305(256)", "AEAD"},
	{"ECDHE-ECDSA-AES256-CCM8", "TLSv1.2", "ECDH", "ECDSA", "AESCCM8(256)", "AEAD"},
	{"ECDHE-ECDSA-AES256-CCM", "TLSv1.2", "ECDH", "ECDSA", "AESCCM(256)", "AEAD"},
	{"DHE-RSA-AES256-CCM8", "TLSv1.2", "DH", "RSA", "AESCCM8(256)", "AEAD"},
	{"DHE-RSA-AES256-CCM", "TLSv1.2", "DH", "RSA", "AESCCM(256)", "AEAD"},
	{"ECDHE-ECDSA-ARIA256-GCM-SHA384", "TLSv1.2", "ECDH", "ECDSA", "ARIAGCM(256)", "AEAD"},
	{"ECDHE-ARIA256-GCM-SHA384", "TLSv1.2", "ECDH", "RSA", "ARIAGCM(256)", "AEAD"},
	{"DHE-DSS-ARIA256-GCM-SHA384", "TLSv1.2", "DH", "DSS", "ARIAGCM(256)", "AEAD"},
	{"DHE-RSA-ARIA256-GCM-SHA384", "TLSv1.2", "DH", "RSA", "ARIAGCM(256)", "AEAD"},
	{"ECDHE-ECDSA-AES256-SHA384", "TLSv1.2", "ECDH", "ECDSA", "AES(256)", "SHA384"},
	{"ECDHE-RSA-AES256-SHA384", "TLSv1.2", "ECDH", "RSA", "AES(256)", "SHA384"},
	{"DHE-RSA-AES256-SHA256", "TLSv1.2", "DH", "RSA", "AES(256)", "SHA256"},
	{"DHE-DSS-AES256-SHA256", "TLSv1.2", "DH", "DSS", "AES(256)", "SHA256"},
	{"ECDHE-ECDSA-CAMELLIA256-SHA384", "TLSv1.2", "ECDH", "ECDSA", "Camellia(256)", "SHA384"},
	{"ECDHE-RSA-CAMELLIA256-SHA384", "TLSv1.2", "ECDH", "RSA", "Camellia(256)", "SHA384"},
	{"DHE-RSA-CAMELLIA256-SHA256", "TLSv1.2", "DH", "RSA", "Camellia(256)", "SHA256"},
	{"DHE-DSS-CAMELLIA256-SHA256", "TLSv1.2", "DH", "DSS", "Camellia(256)", "SHA256"},
	{"ECDHE-ECDSA-AES256-SHA", "TLSv1", "ECDH", "ECDSA", "AES(256)", "SHA1"},
	{"ECDHE-RSA-AES256-SHA", "TLSv1", "ECDH", "RSA", "AES(256)", "SHA1"},
	{"DHE-RSA-AES256-SHA", "SSLv3", "DH", "RSA", "AES(256)", "SHA1"},
	{"DHE-DSS-AES256-SHA", "SSLv3", "DH", "DSS", "AES(256)", "SHA1"},
	{"DHE-RSA-CAMELLIA256-SHA", "SSLv3", "DH", "RSA", "Camellia(256)", "SHA1"},
	{"DHE-DSS-CAMELLIA256-SHA", "SSLv3", "DH", "DSS", "Camellia(256)", "SHA1"},
	{"AES256-GCM-SHA384", "TLSv1.2", "RSA", "RSA", "AESGCM(256)", "AEAD"},
	{"AES256-CCM8", "TLSv1.2", "RSA", "RSA", "AESCCM8(256)", "AEAD"},
	{"AES256-CCM", "TLSv1.2", "RSA", "RSA", "AESCCM(256)", "AEAD"},
	{"ARIA256-GCM-SHA384", "TLSv1.2", "RSA", "RSA", "ARIAGCM(256)", "AEAD"},
	{"AES256-SHA256", "TLSv1.2", "RSA", "RSA", "AES(256)", "SHA256"},
	{"CAMELLIA256-SHA256", "TLSv1.2", "RSA", "RSA", "Camellia(256)", "SHA256"},
	{"AES256-SHA", "SSLv3", "RSA", "RSA", "AES(256)", "SHA1"},
	{"CAMELLIA256-SHA", "SSLv3", "RSA", "RSA", "Camellia(256)", "SHA1"},
	{"ECDHE-ECDSA-AES128-GCM-SHA256", "TLSv1.2", "ECDH", "ECDSA", "AESGCM(128)", "AEAD"},
	{"ECDHE-RSA-AES128-GCM-SHA256", "TLSv1.2", "ECDH", "RSA", "AESGCM(128)", "AEAD"},
	{"DHE-DSS-AES128-GCM-SHA256", "TLSv1.2", "DH", "DSS", "AESGCM(128)", "AEAD"},
	{"DHE-RSA-AES128-GCM-SHA256", "TLSv1.2", "DH", "RSA", "AESGCM(128)", "AEAD"},
	{"ECDHE-ECDSA-AES128-CCM8", "TLSv1.2", "ECDH", "ECDSA", "AESCCM8(128)", "AEAD"},
	{"ECDHE-ECDSA-AES128-CCM", "TLSv1.2", "ECDH", "ECDSA", "AESCCM(128)", "AEAD"},
	{"DHE-RSA-AES128-CCM8", "TLSv1.2", "DH", "RSA", "AESCCM8(128)", "AEAD"},
	{"DHE-RSA-AES128-CCM", "TLSv1.2", "DH", "RSA", "AESCCM(128)", "AEAD"},
	{"ECDHE-ECDSA-ARIA128-GCM-SHA256", "TLSv1.2", "ECDH", "ECDSA", "ARIAGCM(128)", "AEAD"},
	{"ECDHE-ARIA128-GCM-SHA256", "TLSv1.2", "ECDH", "RSA", "ARIAGCM(128)", "AEAD"},
	{"DHE-DSS-ARIA128-GCM-SHA256", "TLSv1.2", "DH", "DSS", "ARIAGCM(128)", "AEAD"},
	{"DHE-RSA-ARIA128-GCM-SHA256", "TLSv1.2", "DH", "RSA", "ARIAGCM(128)", "AEAD"},
	{"ECDHE-ECDSA-AES128-SHA256", "TLSv1.2", "ECDH", "ECDSA", "AES(128)", "SHA256"},
	{"ECDHE-RSA-AES128-SHA256", "TLSv1.2", "ECDH", "RSA", "AES(128)", "SHA256"},
	{"DHE-RSA-AES128-SHA256", "TLSv1.2", "DH", "RSA", "AES(128)", "SHA256"},
	{"DHE-DSS-AES128-SHA256", "TLSv1.2", "DH", "DSS", "AES(128)", "SHA256"},
	{"ECDHE-ECDSA-CAMELLIA128-SHA256", "TLSv1.2", "ECDH", "ECDSA", "Camellia(128)", "SHA256"},
	{"ECDHE-RSA-CAMELLIA128-SHA256", "TLSv1.2", "ECDH", "RSA", "Camellia(128)", "SHA256"},
	{"DHE-RSA-CAMELLIA128-SHA256", "TLSv1.2", "DH", "RSA", "Camellia(128)", "SHA256"},
	{"DHE-DSS-CAMELLIA128-SHA256", "TLSv1.2", "DH", "DSS", "Camellia(128)", "SHA256"},
	{"ECDHE-ECDSA-AES128-SHA", "TLSv1", "ECDH", "ECDSA", "AES(128)", "SHA1"},
	{"ECDHE-RSA-AES128-SHA", "TLSv1", "ECDH", "RSA", "AES(128)", "SHA1"},
	{"DHE-RSA-AES128-SHA", "SSLv3", "DH", "RSA", "AES(128)", "SHA1"},
	{"DHE-DSS-AES128-SHA", "SSLv3", "DH", "DSS", "AES(128)", "SHA1"},
	{"DHE-RSA-CAMELLIA128-SHA", "SSLv3", "DH", "RSA", "Camellia(128)", "SHA1"},
	{"DHE-DSS-CAMELLIA128-SHA", "SSLv3", "DH", "DSS", "Camellia(128)", "SHA1"},
	{"AES128-GCM-SHA256", "TLSv1.2", "RSA", "RSA", "AESGCM(128)", "AEAD"},
	{"AES128-CCM8", "TLSv1.2", "RSA", "RSA", "AESCCM8(128)", "AEAD"},
	{"AES128-CCM", "TLSv1.2", "RSA", "RSA", "AESCCM(128)", "AEAD"},
	{"ARIA128-GCM-SHA256", "TLSv1.2", "RSA", "RSA", "ARIAGCM(128)", "AEAD"},
	{"AES128-SHA256", "TLSv1.2", "RSA", "RSA", "AES(128)", "SHA256"},
	{"CAMELLIA128-SHA256", "TLSv1.2", "RSA", "RSA", "Camellia(128)", "SHA256"},
	{"AES128-SHA", "SSLv3", "RSA", "RSA", "AES(128)", "SHA1"},
	{"CAMELLIA128-SHA", "SSLv3", "RSA", "RSA", "Camellia(128)", "SHA1"},
}

// suiteAliases returns the OpenSSL cipher-string aliases (ciphers(1)) that
// select s.
func suiteAliases(s certSuite) []string {
	a := []string{"ALL", "HIGH"}
	switch s.proto { // aliases match a suite's minimum version exactly
	case "SSLv3":
		a = append(a, "SSLv3")
	case "TLSv1":
		a = append(a, "TLSv1", "TLSv1.0")
	case "TLSv1.2":
		a = append(a, "TLSv1.2")
	}
	switch s.kx {
	case "RSA":
		a = append(a, "kRSA", "RSA")
	case "DH":
		a = append(a, "kDHE", "kEDH", "DHE", "EDH", "DH", "kDH")
	case "ECDH":
		a = append(a, "kECDHE", "kEECDH", "ECDHE", "EECDH", "ECDH")
	}
	switch s.au {
	case "RSA":
		a = append(a, "aRSA")
	case "ECDSA":
		a = append(a, "aECDSA", "ECDSA")
	case "DSS":
		a = append(a, "aDSS", "DSS")
	}
	enc, bits, _ := strings.Cut(strings.TrimSuffix(s.enc, ")"), "(")
	switch enc {
	case "AES", "AESGCM", "AESCCM", "AESCCM8":
		a = append(a, "AES", "AES"+bits)
		if enc != "AES" {
			a = append(a, enc)
		}
		if enc == "AESCCM8" {
			a = append(a, "AESCCM")
		}
	case "Camellia":
		a = append(a, "CAMELLIA", "CAMELLIA"+bits)
	case "ARIAGCM":
		a = append(a, "ARIA", "ARIA"+bits, "ARIAGCM")
	case "CHACHA20/POLY1305":
		a = append(a, "CHACHA20")
	}
	switch s.mac {
	case "SHA1":
		a = append(a, "SHA1", "SHA")
	case "SHA256", "SHA384":
		a = append(a, s.mac)
	}
	return a
}

// excludeMatches reports whether an exclusion token (a suite name, or
// aliases joined by "+", all of which must match) selects s.
func excludeMatches(tok string, s certSuite) bool {
	if tok == s.name {
		return true
	}
	aliases := suiteAliases(s)
	for _, part := range strings.Split(tok, "+") {
		found := false
		for _, a := range aliases {
			if part == a {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// excludesEveryCipher reports whether an exclude list leaves no
// certificate-authenticated cipher suite before TLS 1.3. Postfix then fails
// to set the cipher list ("error setting cipher grade"), so every delivery
// is deferred, and under may goes out in plaintext on the retry.
func excludesEveryCipher(toks []string) bool {
	for _, s := range certSuites {
		left := true
		for _, t := range toks {
			if excludeMatches(t, s) {
				left = false
				break
			}
		}
		if left {
			return false
		}
	}
	return true
}
