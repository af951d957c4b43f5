package dev.sessiond.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.sessiond.v1.CheckMode;
import dev.sessiond.v1.EndReason;
import dev.sessiond.v1.EventType;
import dev.sessiond.v1.MessageScope;
import dev.sessiond.v1.SessionKind;
import dev.sessiond.v1.SessionLabels;
import io.grpc.Status;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class SessiondClientTest {
  /** Well formed, but no session was ever given it. */
  static final String FORGED_TOKEN = "sdt_" + "A".repeat(43);

  static SessiondServer server;
  SessiondClient client;

  @BeforeAll
  static void start() throws Exception {
    server = SessiondServer.start();
  }

  @AfterAll
  static void stop() throws Exception {
    server.close();
  }

  @BeforeEach
  void connect() {
    client = server.client("acme");
  }

  @AfterEach
  void disconnect() {
    client.close();
  }

  Created webUser(String user, String... roles) {
    return client.createSession(NewSession.of(SessionKind.SESSION_KIND_WEB_USER).userId(user).roles(roles));
  }

  @Test
  void authenticateAnswersTheIdentityAndEachPrivilegeAsked() throws Exception {
    Created created = webUser("bob", "Viewer");
    Identity id = client.authenticateAsync(created.token(), "viewBasic", "editSales").get();
    assertEquals(created.session().id(), id.sessionId());
    assertEquals("bob", id.userId());
    assertEquals("acme", id.tenant());
    assertEquals(SessionKind.SESSION_KIND_WEB_USER, id.kind());
    assertTrue(id.holds("VIEWBASIC"));
    assertFalse(id.holds("editSales"));
    assertFalse(id.allGranted());
    assertTrue(id.expiresAt().isAfter(Instant.now()));
  }

  @Test
  void sessionsAreCreatedReadTouchedListedAndClosedByTokenOrId() {
    Created created = client.createSession(NewSession.of(SessionKind.SESSION_KIND_WEB_USER).userId("carol")
        .idleTimeout(Duration.ofMinutes(10)).lifetime(Duration.ZERO)
        .storage(Map.of("theme", "dark", "visits", 3))
        .labels(SessionLabels.newBuilder().setEndpoint("shop").build()));
    Ref byId = Ref.id(created.session().id()).after(created.sequence());
    Session session = client.getSession(byId);
    assertEquals(Duration.ofMinutes(10), session.idleTimeout());
    assertNull(session.lifetime());
    assertEquals("shop", session.labels().getEndpoint());
    Instant expires = client.touchSession(Ref.token(created.token()));
    assertTrue(expires.isAfter(Instant.now().plus(Duration.ofMinutes(9))));
    Storage storage = client.getStorage(byId);
    assertEquals(Map.of("theme", "dark", "visits", 3.0), storage.values());
    SessionPage page = client.listSessions(new SessionFilter().userId("carol"));
    assertEquals(List.of(created.session().id()), page.sessions().stream().map(Session::id).toList());
    Closed closed = client.closeSession(byId, "payment refused", "");
    assertEquals(EndReason.END_REASON_FAILED, closed.endReason());
  }

  @Test
  void privilegesAreSetCheckedPromotedAndDemoted() {
    Ref ref = Ref.token(webUser("dave", "Viewer").token());
    assertFalse(client.hasPrivilege(ref, "viewSales"));
    Promotion promotion = client.promote(ref, "viewSales", Duration.ofMinutes(1));
    Check check = client.checkPrivileges(ref, CheckMode.CHECK_MODE_ALL, "viewBasic", "viewSales");
    assertTrue(check.granted());
    assertEquals(List.of(true, true), check.held());
    client.demote(ref, promotion.id());
    PrivilegesSet set = client.setPrivileges(ref, List.of("editSales"), List.of());
    assertTrue(set.privileges().contains("viewsales"), set.toString());
    Privileges held = client.getPrivileges(ref);
    assertTrue(held.promotions().isEmpty());
    assertEquals(List.of("editsales"), held.grantedPrivileges());
  }

  @Test
  void updateStorageLosesNoIncrementUnderContention() throws Exception {
    int workers = 8;
    int increments = 15;
    Ref ref = Ref.token(webUser("erin").token());
    AtomicInteger attempts = new AtomicInteger(); // more than workers * increments: writers met
    try (SessiondClient patient = SessiondClient.builder(server.address).apiKey(server.keys.get("acme"))
        .updateAttempts(1000).build()) {
      ExecutorService pool = Executors.newFixedThreadPool(workers);
      try {
        List<Future<?>> done = new ArrayList<>();
        for (int w = 0; w < workers; w++) {
          done.add(pool.submit(() -> {
            for (int i = 0; i < increments; i++) {
              patient.updateStorage(ref, values -> {
                attempts.incrementAndGet();
                values.put("counter", ((Number) values.getOrDefault("counter", 0.0)).doubleValue() + 1);
              });
            }
          }));
        }
        for (Future<?> f : done) {
          f.get();
        }
      } finally {
        pool.shutdown();
      }
    }
    assertEquals((double) workers * increments, client.getStorage(ref, "counter").values().get("counter"));
    assertTrue(attempts.get() > workers * increments, attempts + " attempts: the writers never conflicted");
  }

  @Test
  void updateStorageRemovesKeysAndGivesUpAfterItsAttempts() throws Exception {
    Ref ref = Ref.token(client.createSession(NewSession.of(SessionKind.SESSION_KIND_WEB_USER).userId("frank")
        .storage(Map.of("a", 1, "b", 2))).token());
    client.updateStorageAsync(ref, values -> {
      values.remove("a");
      values.put("c", 3);
    }).get();
    assertEquals(Map.of("b", 2.0, "c", 3.0), client.getStorage(ref).values());

    AtomicInteger attempts = new AtomicInteger();
    try (SessiondClient hasty = SessiondClient.builder(server.address).apiKey(server.keys.get("acme"))
        .updateAttempts(3).build()) {
      var conflict = assertThrows(VersionConflictException.class, () -> hasty.updateStorage(ref, values -> {
        // Another writer comes first on every attempt.
        client.putStorage(ref, Map.of("other", attempts.incrementAndGet()));
        values.put("mine", true);
      }));
      assertEquals(3, attempts.get());
      assertNotEquals(0, conflict.currentVersion());
      assertEquals("VERSION_CONFLICT", conflict.reason());
      var async = assertThrows(CompletionException.class, () -> hasty.updateStorageAsync(ref, values -> {
        client.putStorage(ref, Map.of("other", 0));
        values.put("mine", true);
      }).join());
      assertInstanceOf(VersionConflictException.class, async.getCause());
    }
    // An exception of the change stops it.
    var stop = new IllegalStateException("no");
    assertEquals(stop, assertThrows(IllegalStateException.class, () -> client.updateStorage(ref, values -> {
      throw stop;
    })));
  }

  @Test
  void everyTokenTheUserCannotUseIsALoginRequired() {
    Map<String, String> reasons = Map.of("", "TOKEN_MISSING", "not-a-token", "TOKEN_MALFORMED",
        FORGED_TOKEN, "SESSION_NOT_FOUND");
    reasons.forEach((token, reason) -> {
      var e = assertThrows(LoginRequiredException.class, () -> client.authenticate(token));
      assertEquals(reason, e.reason());
      assertEquals(Status.Code.UNAUTHENTICATED, e.code());
    });
    assertThrows(SessionNotFoundException.class, () -> client.authenticate(FORGED_TOKEN));

    Created revoked = webUser("grace");
    client.revokeSessions(new RevokeFilter().userId("grace"));
    var ended = assertThrows(SessionEndedException.class, () -> client.authenticate(revoked.token()));
    assertEquals("revoked", ended.endReason());
    assertEquals("SESSION_REVOKED", ended.reason());
    assertEquals(Status.Code.UNAUTHENTICATED, Status.fromThrowable(ended.getCause()).getCode());
  }

  @Test
  void otherCallsOnAnEndedOrUnknownSessionAreLoginRequiredToo() {
    var notFound = assertThrows(SessionNotFoundException.class, () -> client.getSession(Ref.id("0".repeat(32))));
    assertEquals(Status.Code.NOT_FOUND, notFound.code());
    Created created = webUser("heidi");
    client.closeSession(Ref.token(created.token()));
    var ended = assertThrows(SessionEndedException.class,
        () -> client.putStorage(Ref.token(created.token()), Map.of("x", 1)));
    assertEquals(Status.Code.FAILED_PRECONDITION, ended.code());
    assertEquals("closed", ended.endReason());
    assertEquals("SESSION_CLOSED", ended.reason());
  }

  @Test
  void eachDocumentedFailureIsItsType() throws Exception {
    Ref ref = Ref.token(webUser("ivan").token());
    Written written = client.putStorage(ref, Map.of("k", "v"));
    var conflict = assertThrows(VersionConflictException.class,
        () -> client.putStorage(ref, Map.of("k", "w"), written.version() - 1));
    assertEquals(written.version(), conflict.currentVersion());

    assertThrows(PermissionDeniedException.class, () -> client.queryLogs(new LogFilter()));

    var invalid = assertThrows(InvalidArgumentException.class,
        () -> client.checkPrivileges(ref, CheckMode.CHECK_MODE_ANY, "viewBasic", "noSuchPrivilege"));
    assertEquals(List.of("privileges[1]"), invalid.violations().stream().map(v -> v.field()).toList());

    Ref full = Ref.token(webUser("ivan").token());
    Map<String, Object> values = new HashMap<>();
    for (int i = 0; i < SessiondServer.MAX_STORAGE_KEYS; i++) {
      values.put("key" + i, i);
    }
    client.putStorage(full, values);
    assertThrows(ResourceExhaustedException.class, () -> client.putStorage(full, Map.of("one more", true)));

    Map<String, String> keys = Map.of("", "API_KEY_MISSING", "sdk_" + "B".repeat(43), "API_KEY_INVALID");
    for (var key : keys.entrySet()) {
      try (SessiondClient stranger = SessiondClient.builder(server.address).apiKey(key.getKey()).build()) {
        var e = assertThrows(UnauthenticatedException.class, () -> stranger.authenticate(FORGED_TOKEN));
        assertEquals(key.getValue(), e.reason());
      }
    }

    try (SessiondClient nobody = SessiondClient.builder("127.0.0.1:" + SessiondServer.freePort()).build()) {
      assertThrows(UnavailableException.class, () -> nobody.getSession(ref));
    }
  }

  @Test
  void aCallThatCannotMeetItsDeadlineIsDeadlineExceeded() throws Exception {
    Created created = webUser("judy");
    server.pause();
    try {
      SessiondClient hurried = client.withTimeout(Duration.ofMillis(300));
      var e = assertThrows(DeadlineExceededException.class, () -> hurried.authenticate(created.token()));
      assertEquals(Status.Code.DEADLINE_EXCEEDED, e.code());
      var async = assertThrows(CompletionException.class,
          () -> hurried.getStorageAsync(Ref.token(created.token())).join());
      assertInstanceOf(DeadlineExceededException.class, async.getCause());
    } finally {
      server.resume();
    }
    assertEquals("judy", client.authenticate(created.token()).userId());
  }

  @Test
  void anotherTenantsKeySeesNoSuchSession() {
    Created created = webUser("kim");
    try (SessiondClient globex = server.client("globex")) {
      assertThrows(SessionNotFoundException.class, () -> globex.authenticate(created.token()));
      assertThrows(SessionNotFoundException.class, () -> globex.getSession(Ref.id(created.session().id())));
    }
    assertEquals("acme", client.authenticate(created.token()).tenant());
  }

  @Test
  void watchSessionsStreamsEventsFromASequence() {
    Created created = webUser("leo");
    client.closeSession(Ref.token(created.token()));
    List<EventType> types = new ArrayList<>();
    var filter = new WatchFilter().sessionId(created.session().id()).afterSequence(created.sequence() - 1);
    try (var events = client.watchSessions(filter)) {
      while (events.hasNext()) {
        Event event = events.next();
        types.add(event.type());
        assertNotNull(event.at());
        if (event.type() == EventType.EVENT_TYPE_CLOSED) {
          break;
        }
      }
    }
    assertEquals(List.of(EventType.EVENT_TYPE_CREATED, EventType.EVENT_TYPE_CLOSED), types);
    try (var events = client.watchSessions(new WatchFilter().sessionId("0".repeat(32)))) {
      assertThrows(SessionNotFoundException.class, events::hasNext);
    }
  }

  @Test
  void aSubscriberReceivesPostsAndASessionChannelEndsWithItsSession() {
    String channel = "test/java-" + System.nanoTime();
    Map<String, Object> payload = Map.of("from", "alice", "n", 3.0, "tags", List.of("a", true));
    try (Subscription subscription = client.subscribe(List.of(channel))) {
      assertEquals(List.of(channel), subscription.channels());
      assertEquals(new Posted(1, 1), client.post(channel, payload, MessageScope.MESSAGE_SCOPE_GLOBAL, "chat.Line"));
      var message = assertInstanceOf(SubscriptionItem.Message.class, subscription.next());
      assertEquals(channel, message.channel());
      assertEquals(1, message.sequence());
      assertEquals(payload, message.payload());
      assertEquals("chat.Line", message.typeName());
      assertEquals(MessageScope.MESSAGE_SCOPE_GLOBAL, message.scope());
      assertNotNull(message.postedAt());
      subscription.close();
      assertFalse(subscription.hasNext());
    }
    var ahead = assertThrows(CursorOutOfRangeException.class, () -> client.subscribe(List.of(channel), 5L));
    assertFalse(ahead.expired());
    assertEquals(channel, ahead.channel());
    assertEquals(1, ahead.latestSequence());

    Created created = webUser("java-messages");
    String sessionChannel = "session:" + created.session().id();
    try (Subscription subscription = client.subscribe(List.of(sessionChannel))) {
      client.closeSession(Ref.token(created.token()));
      var ended = new SubscriptionItem.SessionEnd(sessionChannel, created.session().id(),
          EndReason.END_REASON_CLOSED, true);
      assertEquals(ended, subscription.next());
      assertFalse(subscription.hasNext());
    }
  }
}
