package dev.sessiond.client.servlet;

import dev.sessiond.client.Identity;
import dev.sessiond.client.LoginRequiredException;
import dev.sessiond.client.SessiondClient;
import dev.sessiond.client.SessiondException;
import jakarta.servlet.Filter;
import jakarta.servlet.FilterChain;
import jakarta.servlet.ServletException;
import jakarta.servlet.ServletRequest;
import jakarta.servlet.ServletResponse;
import jakarta.servlet.http.Cookie;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * A servlet filter on sessiond: one {@code authenticate} per request, the
 * caller's {@link Identity} as the request attribute {@link #IDENTITY}.
 *
 * <p>A request without a usable session cookie (missing, unknown, ended) is
 * redirected to the login page, or answered 401 when there is none; a session
 * without the privileges asked is answered 403; sessiond unreachable, 503.
 *
 * <pre>{@code
 * context.addFilter("sales", new AuthenticateFilter(client, "/login", "viewSales"))
 *     .addMappingForUrlPatterns(null, false, "/sales/*");
 * }</pre>
 */
public class AuthenticateFilter implements Filter {
  /** The request attribute holding the {@link Identity}. */
  public static final String IDENTITY = Identity.class.getName();
  /** The cookie that carries the session token. */
  public static final String COOKIE = "session";

  private static final Logger LOG = Logger.getLogger(AuthenticateFilter.class.getName());

  private final SessiondClient client;
  private final String loginUrl;
  private final String[] privileges;

  /** Asks for privileges on every request; loginUrl null answers 401 instead of redirecting. */
  public AuthenticateFilter(SessiondClient client, String loginUrl, String... privileges) {
    this.client = client;
    this.loginUrl = loginUrl;
    this.privileges = privileges.clone();
  }

  /** The identity the filter put on request, or null. */
  public static Identity identity(ServletRequest request) {
    return (Identity) request.getAttribute(IDENTITY);
  }

  @Override
  public void doFilter(ServletRequest req, ServletResponse res, FilterChain chain)
      throws IOException, ServletException {
    var request = (HttpServletRequest) req;
    var response = (HttpServletResponse) res;
    try {
      Identity id = client.authenticate(token(request), privileges);
      if (!id.allGranted()) {
        response.sendError(HttpServletResponse.SC_FORBIDDEN);
        return;
      }
      request.setAttribute(IDENTITY, id);
    } catch (LoginRequiredException e) {
      if (loginUrl == null) {
        response.sendError(HttpServletResponse.SC_UNAUTHORIZED);
      } else {
        response.sendRedirect(loginUrl);
      }
      return;
    } catch (SessiondException e) {
      LOG.log(Level.WARNING, "sessiond: " + e.getMessage());
      response.sendError(HttpServletResponse.SC_SERVICE_UNAVAILABLE);
      return;
    }
    chain.doFilter(req, res);
  }

  private static String token(HttpServletRequest request) {
    if (request.getCookies() != null) {
      for (Cookie cookie : request.getCookies()) {
        if (COOKIE.equals(cookie.getName())) {
          return cookie.getValue();
        }
      }
    }
    return "";
  }
}
