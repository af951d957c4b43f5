package dev.sessiond.client.servlet;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import dev.sessiond.client.Created;
import dev.sessiond.client.NewSession;
import dev.sessiond.client.Ref;
import dev.sessiond.client.SessiondClient;
import dev.sessiond.client.SessiondServer;
import dev.sessiond.v1.SessionKind;
import jakarta.servlet.http.Cookie;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.lang.reflect.Proxy;
import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The filter against a real sessiond. The servlet container's side (request
 * cookies and attributes, the response's status) is played by the smallest
 * stand-ins that record what the filter does with them.
 */
class AuthenticateFilterTest {
  static SessiondServer server;
  static SessiondClient client;

  @BeforeAll
  static void start() throws Exception {
    server = SessiondServer.start();
    client = server.client("acme");
  }

  @AfterAll
  static void stop() throws Exception {
    client.close();
    server.close();
  }

  /** What one request through the filter came to. */
  record Outcome(int status, String location, String user) {}

  static Outcome request(AuthenticateFilter filter, String token) throws Exception {
    Map<String, Object> attributes = new HashMap<>();
    Map<String, Object> sent = new HashMap<>();
    var request = (HttpServletRequest) Proxy.newProxyInstance(AuthenticateFilterTest.class.getClassLoader(),
        new Class<?>[] {HttpServletRequest.class}, (proxy, method, args) -> switch (method.getName()) {
          case "getCookies" -> token == null ? null : new Cookie[] {new Cookie(AuthenticateFilter.COOKIE, token)};
          case "getAttribute" -> attributes.get((String) args[0]);
          case "setAttribute" -> attributes.put((String) args[0], args[1]);
          default -> throw new UnsupportedOperationException(method.getName());
        });
    var response = (HttpServletResponse) Proxy.newProxyInstance(AuthenticateFilterTest.class.getClassLoader(),
        new Class<?>[] {HttpServletResponse.class}, (proxy, method, args) -> switch (method.getName()) {
          case "sendError" -> sent.put("status", args[0]);
          case "sendRedirect" -> sent.put("location", args[0]);
          default -> throw new UnsupportedOperationException(method.getName());
        });
    filter.doFilter(request, response, (req, res) -> sent.put("status", 200));
    var id = AuthenticateFilter.identity(request);
    return new Outcome(sent.get("location") != null ? 303 : (Integer) sent.get("status"),
        (String) sent.get("location"), id == null ? null : id.userId());
  }

  @Test
  void theFilterAuthenticatesEachRequestOnce() throws Exception {
    var pages = new AuthenticateFilter(client, "/login", "viewSales");
    var api = new AuthenticateFilter(client, null, "viewSales");
    Created manager = client.createSession(
        NewSession.of(SessionKind.SESSION_KIND_WEB_USER).userId("alice").roles("Manager"));
    Created viewer = client.createSession(
        NewSession.of(SessionKind.SESSION_KIND_WEB_USER).userId("bob").roles("Viewer"));

    assertEquals(new Outcome(200, null, "alice"), request(pages, manager.token()));
    assertEquals(403, request(pages, viewer.token()).status());
    assertEquals(new Outcome(303, "/login", null), request(pages, null));
    client.closeSession(Ref.token(manager.token()));
    assertEquals(new Outcome(303, "/login", null), request(pages, manager.token()));
    Outcome refused = request(api, manager.token());
    assertEquals(401, refused.status());
    assertNull(refused.user());
  }
}
