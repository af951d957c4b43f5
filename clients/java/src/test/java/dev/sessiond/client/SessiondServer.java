package dev.sessiond.client;

import io.grpc.ChannelCredentials;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * A throwaway sessiond for the tests: $SESSIOND_BIN (default the
 * repository's target/debug/sessiond) on a free loopback port with a fresh
 * data dir, config/roles.yaml, every closed session's log kept, at most
 * {@value #MAX_STORAGE_KEYS} storage keys per session, and API keys made by
 * {@code sessiond hash-key --generate}: a service and an admin key of tenant
 * acme, a service key of tenant globex.
 */
public final class SessiondServer implements AutoCloseable {
  static final int MAX_STORAGE_KEYS = 20;
  private static final Duration READY_WITHIN = Duration.ofSeconds(15);
  private static final Pattern PRINTED = Pattern.compile("(?m)^(key|hash):\\s*(\\S+)\\s*$");

  final String address;
  /** API keys by name: acme, acme-admin, globex. */
  final Map<String, String> keys = new LinkedHashMap<>();
  private final Path home;
  private final Process process;

  private SessiondServer(String address, Path home, Process process) {
    this.address = address;
    this.home = home;
    this.process = process;
  }

  /** Starts sessiond and waits until its health check says SERVING. */
  public static SessiondServer start() throws Exception {
    return start(Map.of(), List.of(), InsecureChannelCredentials.create());
  }

  /**
   * Starts sessiond with more SESSIOND_* settings and keys-file entries,
   * checking its health over credentials.
   */
  static SessiondServer start(Map<String, String> env, List<String> keyLines, ChannelCredentials credentials)
      throws Exception {
    Path root = repoRoot();
    String configured = System.getenv("SESSIOND_BIN");
    Path binary = configured == null || configured.isEmpty()
        ? root.resolve("target/debug/sessiond") : Path.of(configured);
    if (!Files.isExecutable(binary)) {
      throw new IllegalStateException("no sessiond binary at " + binary + ": run `cargo build --bin sessiond` or set SESSIOND_BIN");
    }
    Path home = Files.createTempDirectory("sessiond-java-");
    StringBuilder keysFile = new StringBuilder("keys:\n");
    Map<String, String> keys = new LinkedHashMap<>();
    for (String[] k : List.of(new String[] {"acme", "acme", "service"}, new String[] {"acme-admin", "acme", "admin"},
        new String[] {"globex", "globex", "service"})) {
      String[] made = generateKey(binary);
      keys.put(k[0], made[0]);
      // Service keys are allowed what the tests do beyond a login flow.
      String allow = k[2].equals("service") ? ", allow: [change_privileges, session_ids]" : "";
      keysFile.append(String.format("  - {name: %s, tenant: %s, role: %s, hash: \"%s\"%s}%n", k[0], k[1], k[2], made[1], allow));
    }
    keyLines.forEach(line -> keysFile.append("  - ").append(line).append('\n'));
    Path keysPath = home.resolve("api-keys.yaml");
    Files.writeString(keysPath, keysFile);
    String address = "127.0.0.1:" + freePort();
    ProcessBuilder builder = new ProcessBuilder(binary.toString(), "--listen", address, "--data-dir",
        home.resolve("data").toString());
    clean(builder.environment());
    builder.environment().put("SESSIOND_API_KEYS_FILE", keysPath.toString());
    builder.environment().put("SESSIOND_ROLES_FILE", root.resolve("config/roles.yaml").toString());
    builder.environment().put("SESSIOND_SESSION_LOG_KEEP_ALL", "true");
    builder.environment().put("SESSIOND_STORAGE_MAX_KEYS", String.valueOf(MAX_STORAGE_KEYS));
    builder.environment().putAll(env);
    builder.redirectErrorStream(true).redirectOutput(home.resolve("sessiond.log").toFile());
    SessiondServer server = new SessiondServer(address, home, builder.start());
    server.keys.putAll(keys);
    try {
      server.waitUntilServing(credentials);
    } catch (Exception e) {
      System.err.println("---- sessiond log ----\n" + server.logTail());
      server.close();
      throw e;
    }
    return server;
  }

  /** A client with the named key. */
  public SessiondClient client(String key) {
    return SessiondClient.builder(address).apiKey(keys.get(key)).build();
  }

  /**
   * Stops the process (SIGSTOP): calls then get no answer. Returns once every thread of the process
   * is stopped: SIGSTOP takes effect when one of them next runs and takes it, then stops the
   * others, and on a busy machine that thread may wait for a CPU while the others answer the next
   * call.
   */
  void pause() throws IOException, InterruptedException {
    signal("STOP");
    long deadline = System.nanoTime() + 10_000_000_000L;
    while (System.nanoTime() < deadline) {
      if (allStopped(process.pid())) {
        return;
      }
      Thread.sleep(1);
    }
    throw new IllegalStateException("sessiond did not stop within 10 s of SIGSTOP");
  }

  /** Whether every thread of process {@code pid} is stopped. */
  private static boolean allStopped(long pid) throws IOException {
    Path tasks = Path.of("/proc", String.valueOf(pid), "task");
    if (!Files.isDirectory(tasks)) {
      return true;
    }
    try (var threads = Files.list(tasks)) {
      for (Path thread : (Iterable<Path>) threads::iterator) {
        String stat;
        try {
          stat = Files.readString(thread.resolve("stat"), StandardCharsets.UTF_8);
        } catch (IOException exited) {
          continue;
        }
        // `tid (comm) state …`: the name may hold spaces, so read after its `)`.
        String state = stat.substring(stat.lastIndexOf(')') + 1).trim().split(" ")[0];
        if (!state.equals("T") && !state.equals("t")) {
          return false;
        }
      }
    }
    return true;
  }

  /** Continues a paused process (SIGCONT). */
  void resume() throws IOException, InterruptedException {
    signal("CONT");
  }

  private void signal(String name) throws IOException, InterruptedException {
    Process kill = new ProcessBuilder("kill", "-" + name, String.valueOf(process.pid())).inheritIO().start();
    if (kill.waitFor() != 0) {
      throw new IllegalStateException("kill -" + name + " failed");
    }
  }

  String logTail() {
    try {
      List<String> lines = Files.readAllLines(home.resolve("sessiond.log"), StandardCharsets.UTF_8);
      return String.join("\n", lines.subList(Math.max(0, lines.size() - 40), lines.size()));
    } catch (IOException e) {
      return "(no log)";
    }
  }

  /** SIGTERM (SIGKILL after 10 s), then removes the files. */
  @Override
  public void close() throws IOException {
    try {
      if (process.isAlive()) {
        resume();
        process.destroy();
        if (!process.waitFor(10, TimeUnit.SECONDS)) {
          process.destroyForcibly().waitFor();
        }
      }
    } catch (InterruptedException e) {
      process.destroyForcibly();
      Thread.currentThread().interrupt();
    }
    try (Stream<Path> files = Files.walk(home)) {
      files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }

  private void waitUntilServing(ChannelCredentials credentials) throws Exception {
    ManagedChannel channel = Grpc.newChannelBuilder(address, credentials).build();
    try {
      var health = HealthGrpc.newBlockingStub(channel);
      Instant giveUp = Instant.now().plus(READY_WITHIN);
      while (Instant.now().isBefore(giveUp)) {
        if (!process.isAlive()) {
          throw new IllegalStateException("sessiond exited before serving on " + address);
        }
        try {
          var answer = health.withDeadlineAfter(500, TimeUnit.MILLISECONDS).withWaitForReady()
              .check(HealthCheckRequest.getDefaultInstance());
          if (answer.getStatus() == HealthCheckResponse.ServingStatus.SERVING) {
            return;
          }
          Thread.sleep(50); // up, not serving yet
        } catch (StatusRuntimeException e) {
          // Not listening yet: the next check waits for the channel again.
        }
      }
      throw new IllegalStateException("sessiond was not serving on " + address + " within " + READY_WITHIN);
    } finally {
      channel.shutdownNow();
    }
  }

  /** A new key and its hash from `sessiond hash-key --generate`. */
  private static String[] generateKey(Path binary) throws Exception {
    ProcessBuilder builder = new ProcessBuilder(binary.toString(), "hash-key", "--generate");
    clean(builder.environment());
    Process process = builder.redirectErrorStream(true).start();
    String printed = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (process.waitFor() != 0) {
      throw new IllegalStateException("sessiond hash-key --generate failed: " + printed);
    }
    String key = null;
    String hash = null;
    Matcher m = PRINTED.matcher(printed);
    while (m.find()) {
      if (m.group(1).equals("key")) {
        key = m.group(2);
      } else {
        hash = m.group(2);
      }
    }
    if (key == null || hash == null) {
      throw new IllegalStateException("no key and hash in: " + printed);
    }
    return new String[] {key, hash};
  }

  private static void clean(Map<String, String> environment) {
    environment.keySet().removeIf(name -> name.startsWith("SESSIOND_"));
  }

  static int freePort() throws IOException {
    try (ServerSocket probe = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      return probe.getLocalPort();
    }
  }

  private static Path repoRoot() {
    String configured = System.getenv("SESSIOND_REPO_ROOT");
    Path dir = (configured != null ? Path.of(configured) : Path.of("")).toAbsolutePath().normalize();
    for (Path p = dir; p != null; p = p.getParent()) {
      if (Files.exists(p.resolve("Cargo.toml"))) {
        return p;
      }
    }
    throw new IllegalStateException("no Cargo.toml above " + dir + ": run the tests inside the sessiond repository");
  }
}
