package dev.sessiond.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.sessiond.v1.SessionKind;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

class WebLoginTest {
  static SessiondServer server;

  @BeforeAll
  static void start() throws Exception {
    server = SessiondServer.start();
  }

  @AfterAll
  static void stop() throws Exception {
    server.close();
  }

  /** The web-login flow of the README, as a user writes it. */
  @SuppressWarnings("unchecked")
  static String webLogin(SessiondClient client) {
    // Login: a WEB_USER session for alice, a Manager.
    Created created = client.createSession(
        NewSession.of(SessionKind.SESSION_KIND_WEB_USER).userId("alice").roles("Manager"));
    String token = created.token(); // goes into alice's cookie
    // Every request: who is it, may they view sales?
    Identity id = client.authenticate(token, "viewSales");
    if (!id.allGranted()) {
      throw new IllegalStateException("forbidden");
    }
    // Add to the cart: compare-and-set, retried on conflict.
    client.updateStorage(Ref.token(token), values ->
        ((List<Object>) values.computeIfAbsent("cart", k -> new ArrayList<>())).add("book"));
    client.log(Ref.token(token), LogEntry.info(id.userId() + " added a book"));
    // Logout, then the token asks for a new login.
    client.closeSession(Ref.token(token));
    try {
      client.authenticate(token);
      throw new IllegalStateException("still signed in");
    } catch (SessionEndedException e) {
      return e.endReason();
    }
  }

  @Test
  void theWebLoginFlowEndsWithASignInAgain() {
    try (SessiondClient client = server.client("acme"); SessiondClient admin = server.client("acme-admin")) {
      assertEquals("closed", webLogin(client));
      LogPage page = admin.queryLogs(new LogFilter().userId("alice"));
      assertTrue(page.records().stream().anyMatch(r -> r.message().equals("alice added a book")), page.toString());
    }
  }
}
