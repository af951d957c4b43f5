package sessiondtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Certs are PEM files of a throwaway CA, a server certificate for
// 127.0.0.1 and two client certificates, all signed by the CA: Client,
// which a keys file names by ClientSHA256, and Stranger, which none does.
type Certs struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
	StrangerCert, StrangerKey                        string
	// ClientSHA256 is the hex SHA-256 of the client certificate's DER, as a
	// keys file's cert_sha256 names it.
	ClientSHA256 string
}

// MakeCerts writes a CA, a server and two client certificates into dir.
func MakeCerts(dir string) (*Certs, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sessiond test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	c := &Certs{CA: filepath.Join(dir, "ca.crt")}
	if err := writePEM(c.CA, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage, certPath, keyPath string) ([]byte, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		template := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		if usage == x509.ExtKeyUsageServerAuth {
			template.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
			template.DNSNames = []string{"localhost"}
		}
		der, err := x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := writePEM(certPath, "CERTIFICATE", der); err != nil {
			return nil, err
		}
		return der, writePEM(keyPath, "PRIVATE KEY", keyDER)
	}
	c.ServerCert, c.ServerKey = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if _, err := leaf(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, c.ServerCert, c.ServerKey); err != nil {
		return nil, err
	}
	c.ClientCert, c.ClientKey = filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	clientDER, err := leaf(3, "checkout", x509.ExtKeyUsageClientAuth, c.ClientCert, c.ClientKey)
	if err != nil {
		return nil, err
	}
	c.StrangerCert, c.StrangerKey = filepath.Join(dir, "stranger.crt"), filepath.Join(dir, "stranger.key")
	if _, err := leaf(4, "stranger", x509.ExtKeyUsageClientAuth, c.StrangerCert, c.StrangerKey); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(clientDER)
	c.ClientSHA256 = hex.EncodeToString(sum[:])
	return c, nil
}

func writePEM(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}
