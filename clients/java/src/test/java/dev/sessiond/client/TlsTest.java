package dev.sessiond.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.sessiond.v1.SessionKind;
import io.grpc.TlsChannelCredentials;
import java.io.File;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.cert.CertificateFactory;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The client over TLS and mutual TLS, against a sessiond serving TLS with
 * certificates of a throwaway CA that openssl makes.
 */
class TlsTest {
  static Path dir;
  static SessiondServer server;

  @BeforeAll
  static void start() throws Exception {
    dir = Files.createTempDirectory("sessiond-java-tls-");
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
        "-subj", "/CN=sessiond test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign");
    leaf("server", 2, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
    leaf("client", 3, "extendedKeyUsage=clientAuth\n");
    leaf("stranger", 4, "extendedKeyUsage=clientAuth\n");
    server = SessiondServer.start(
        Map.of("SESSIOND_TLS_CERT", file("server.crt").toString(), "SESSIOND_TLS_KEY", file("server.key").toString(),
            "SESSIOND_TLS_CLIENT_CA", file("ca.crt").toString()),
        List.of("{name: checkout-cert, tenant: globex, role: service, cert_sha256: \"" + sha256("client.crt") + "\"}"),
        TlsChannelCredentials.newBuilder().trustManager(file("ca.crt")).build());
  }

  @AfterAll
  static void stop() throws Exception {
    if (server != null) {
      server.close();
    }
    try (var files = Files.walk(dir)) {
      files.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }

  @Test
  void anApiKeyOverTlsOrAClientCertificateIdentifiesTheCaller() {
    try (SessiondClient withKey = SessiondClient.builder(server.address).apiKey(server.keys.get("acme"))
            .tls(file("ca.crt"), null, null).build();
        SessiondClient withCert = SessiondClient.builder(server.address)
            .tls(file("ca.crt"), file("client.crt"), file("client.key")).build();
        SessiondClient stranger = SessiondClient.builder(server.address)
            .tls(file("ca.crt"), file("stranger.crt"), file("stranger.key")).build();
        SessiondClient systemRoots = SessiondClient.builder(server.address).apiKey(server.keys.get("acme"))
            .tls().build()) {
      var created = withKey.createSession(NewSession.of(SessionKind.SESSION_KIND_WEB_USER).userId("mallory"));
      assertEquals("acme", withKey.authenticate(created.token()).tenant());
      created = withCert.createSession(NewSession.of(SessionKind.SESSION_KIND_WEB_USER).userId("niaj"));
      assertEquals("globex", withCert.authenticate(created.token()).tenant());
      String token = created.token();
      // A certificate of the CA that no key entry names: the service's failure, not the user's.
      var unknown = assertThrows(UnauthenticatedException.class, () -> stranger.authenticate(token));
      assertEquals("CLIENT_CERTIFICATE_UNKNOWN", unknown.reason());
      // The system roots do not trust the test CA: no connection.
      assertThrows(UnavailableException.class, () -> systemRoots.authenticate(token));
    }
  }

  static File file(String name) {
    return dir.resolve(name).toFile();
  }

  /** A key and a certificate signed by the CA, with extensions. */
  static void leaf(String name, int serial, String extensions) throws Exception {
    Files.writeString(dir.resolve(name + ".ext"), extensions);
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
        "-subj", "/CN=" + name);
    openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial",
        String.valueOf(serial), "-days", "1", "-extfile", name + ".ext", "-out", name + ".crt");
  }

  static void openssl(String... args) throws Exception {
    var command = new java.util.ArrayList<String>(List.of("openssl"));
    command.addAll(List.of(args));
    Process process = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true).start();
    String output = new String(process.getInputStream().readAllBytes());
    if (process.waitFor() != 0) {
      throw new IllegalStateException("openssl " + String.join(" ", args) + " failed:\n" + output);
    }
  }

  /** The hex SHA-256 of a certificate's DER encoding, as cert_sha256 names it. */
  static String sha256(String name) throws Exception {
    try (InputStream in = Files.newInputStream(dir.resolve(name))) {
      var certificate = CertificateFactory.getInstance("X.509").generateCertificate(in);
      return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(certificate.getEncoded()));
    }
  }
}
