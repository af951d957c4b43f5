package dev.sessiond.client;

import com.google.common.util.concurrent.FutureCallback;
import com.google.common.util.concurrent.Futures;
import com.google.common.util.concurrent.ListenableFuture;
import com.google.common.util.concurrent.MoreExecutors;
import dev.sessiond.v1.AuthenticateRequest;
import dev.sessiond.v1.ChannelSubscription;
import dev.sessiond.v1.CheckMode;
import dev.sessiond.v1.CheckPrivilegesRequest;
import dev.sessiond.v1.ClearPrivilegesRequest;
import dev.sessiond.v1.ClearStorageRequest;
import dev.sessiond.v1.CloseSessionRequest;
import dev.sessiond.v1.DeleteStorageRequest;
import dev.sessiond.v1.DemoteRequest;
import dev.sessiond.v1.GetPrivilegesRequest;
import dev.sessiond.v1.GetSessionRequest;
import dev.sessiond.v1.GetStorageRequest;
import dev.sessiond.v1.HasPrivilegeRequest;
import dev.sessiond.v1.LogRequest;
import dev.sessiond.v1.LogServiceGrpc;
import dev.sessiond.v1.MessageScope;
import dev.sessiond.v1.MessageServiceGrpc;
import dev.sessiond.v1.PostRequest;
import dev.sessiond.v1.PrivilegeServiceGrpc;
import dev.sessiond.v1.PromoteRequest;
import dev.sessiond.v1.PutStorageRequest;
import dev.sessiond.v1.SessionServiceGrpc;
import dev.sessiond.v1.SetPrivilegesRequest;
import dev.sessiond.v1.StorageServiceGrpc;
import dev.sessiond.v1.SubscribeRequest;
import dev.sessiond.v1.TouchSessionRequest;
import io.grpc.ChannelCredentials;
import io.grpc.Context;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.TlsChannelCredentials;
import io.grpc.stub.AbstractStub;
import io.grpc.stub.MetadataUtils;
import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * A client of one sessiond. Every call comes blocking ({@code authenticate})
 * and asynchronous ({@code authenticateAsync}, a {@link CompletableFuture});
 * both throw (or complete with) a {@link SessiondException} subclass. Thread
 * safe; close it when done.
 *
 * <pre>{@code
 * try (var client = SessiondClient.builder("localhost:50051").apiKey(key).build()) {
 *   Identity id = client.authenticate(token, "viewSales");
 * } catch (LoginRequiredException e) { ... the user must sign in again ... }
 * }</pre>
 */
public final class SessiondClient implements AutoCloseable {
  /** The deadline of a call unless the builder or {@link #withTimeout} says otherwise. */
  public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(10);
  /** How many times updateStorage tries unless the builder says otherwise. */
  public static final int DEFAULT_UPDATE_ATTEMPTS = 10;

  private final ManagedChannel channel;
  private final Duration timeout;
  private final int updateAttempts;
  private final SessionServiceGrpc.SessionServiceFutureStub sessions;
  private final SessionServiceGrpc.SessionServiceBlockingStub sessionStreams;
  private final PrivilegeServiceGrpc.PrivilegeServiceFutureStub privileges;
  private final StorageServiceGrpc.StorageServiceFutureStub storage;
  private final LogServiceGrpc.LogServiceFutureStub logs;
  private final MessageServiceGrpc.MessageServiceFutureStub messages;
  private final MessageServiceGrpc.MessageServiceBlockingStub messageStreams;

  private SessiondClient(ManagedChannel channel, String apiKey, Duration timeout, int updateAttempts) {
    this.channel = channel;
    this.timeout = timeout;
    this.updateAttempts = updateAttempts;
    Metadata headers = new Metadata();
    if (apiKey != null && !apiKey.isEmpty()) {
      headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + apiKey);
    }
    var withKey = MetadataUtils.newAttachHeadersInterceptor(headers);
    this.sessions = SessionServiceGrpc.newFutureStub(channel).withInterceptors(withKey);
    this.sessionStreams = SessionServiceGrpc.newBlockingStub(channel).withInterceptors(withKey);
    this.privileges = PrivilegeServiceGrpc.newFutureStub(channel).withInterceptors(withKey);
    this.storage = StorageServiceGrpc.newFutureStub(channel).withInterceptors(withKey);
    this.logs = LogServiceGrpc.newFutureStub(channel).withInterceptors(withKey);
    this.messages = MessageServiceGrpc.newFutureStub(channel).withInterceptors(withKey);
    this.messageStreams = MessageServiceGrpc.newBlockingStub(channel).withInterceptors(withKey);
  }

  private SessiondClient(SessiondClient other, Duration timeout) {
    this.channel = other.channel;
    this.timeout = timeout;
    this.updateAttempts = other.updateAttempts;
    this.sessions = other.sessions;
    this.sessionStreams = other.sessionStreams;
    this.privileges = other.privileges;
    this.storage = other.storage;
    this.logs = other.logs;
    this.messages = other.messages;
    this.messageStreams = other.messageStreams;
  }

  /** A builder for a client of sessiond at target ({@code host:port}). */
  public static Builder builder(String target) {
    return new Builder(target);
  }

  /** Configures a client: API key, TLS, default deadline. */
  public static final class Builder {
    private final String target;
    private String apiKey = "";
    private ChannelCredentials credentials = InsecureChannelCredentials.create();
    private Duration timeout = DEFAULT_TIMEOUT;
    private int updateAttempts = DEFAULT_UPDATE_ATTEMPTS;

    private Builder(String target) {
      this.target = Objects.requireNonNull(target);
    }

    /** Sent on every call as {@code authorization: Bearer <key>}. */
    public Builder apiKey(String key) {
      this.apiKey = key;
      return this;
    }

    /** TLS with the system's trust roots. */
    public Builder tls() {
      this.credentials = TlsChannelCredentials.create();
      return this;
    }

    /**
     * TLS trusting the CAs in caFile (PEM; null: the system roots) and, for
     * mutual TLS, presenting certFile with keyFile (PEM; both null: none).
     */
    public Builder tls(File caFile, File certFile, File keyFile) {
      var tls = TlsChannelCredentials.newBuilder();
      try {
        if (caFile != null) {
          tls.trustManager(caFile);
        }
        if (certFile != null || keyFile != null) {
          tls.keyManager(Objects.requireNonNull(certFile, "certFile"), Objects.requireNonNull(keyFile, "keyFile"));
        }
      } catch (IOException e) {
        throw new UncheckedIOException("reading the TLS files", e);
      }
      this.credentials = tls.build();
      return this;
    }

    /** The deadline of each call (default 10 s). Streams get none. */
    public Builder timeout(Duration timeout) {
      this.timeout = timeout;
      return this;
    }

    /** How many times updateStorage tries before it gives up (default 10). */
    public Builder updateAttempts(int attempts) {
      this.updateAttempts = attempts;
      return this;
    }

    /** The client; it connects on its first call. */
    public SessiondClient build() {
      return new SessiondClient(Grpc.newChannelBuilder(target, credentials).build(), apiKey, timeout, updateAttempts);
    }
  }

  /** The same client (same connection) with another deadline per call. */
  public SessiondClient withTimeout(Duration timeout) {
    return new SessiondClient(this, timeout);
  }

  /** Closes the connection, waiting up to 5 s for calls in flight. */
  @Override
  public void close() {
    channel.shutdown();
    try {
      if (!channel.awaitTermination(5, TimeUnit.SECONDS)) {
        channel.shutdownNow();
      }
    } catch (InterruptedException e) {
      channel.shutdownNow();
      Thread.currentThread().interrupt();
    }
  }

  // ---- sessions ----

  /** Starts a session and answers its token. */
  public Created createSession(NewSession session) {
    return await(createSessionAsync(session));
  }

  /** {@link #createSession}, asynchronously. */
  public CompletableFuture<Created> createSessionAsync(NewSession session) {
    return call(deadline(sessions).createSession(session.proto()),
        a -> new Created(a.getToken(), Session.from(a.getSession()), a.getSequence()));
  }

  /**
   * The one call per request: whose session the token is, and whether it holds
   * privileges. A token to sign in again with throws {@link
   * LoginRequiredException} (or its {@link SessionNotFoundException}, {@link
   * SessionEndedException}).
   */
  public Identity authenticate(String token, String... privileges) {
    return await(authenticateAsync(token, privileges));
  }

  /** {@link #authenticate}, asynchronously. */
  public CompletableFuture<Identity> authenticateAsync(String token, String... privileges) {
    List<String> asked = List.of(privileges);
    var request = AuthenticateRequest.newBuilder().setToken(token).addAllPrivileges(asked).build();
    return call(deadline(sessions).authenticate(request), a -> new Identity(a.getSessionId(), a.getUserId(),
        a.getTenant(), a.getKind(), List.copyOf(a.getRolesList()), Model.instant(a.hasExpiresAt(), a.getExpiresAt()),
        asked, List.copyOf(a.getGrantedList()), a.getAllGranted(), a.getTrusted()));
  }

  /** Looks a session up. Counts as activity. */
  public Session getSession(Ref ref) {
    return await(getSessionAsync(ref));
  }

  /** {@link #getSession}, asynchronously. */
  public CompletableFuture<Session> getSessionAsync(Ref ref) {
    return call(deadline(sessions).getSession(GetSessionRequest.newBuilder().setSession(ref.proto()).build()),
        a -> Session.from(a.getSession()));
  }

  /** Marks activity; answers the new expiry (null: none). */
  public Instant touchSession(Ref ref) {
    return await(touchSessionAsync(ref));
  }

  /** {@link #touchSession}, asynchronously. */
  public CompletableFuture<Instant> touchSessionAsync(Ref ref) {
    return call(deadline(sessions).touchSession(TouchSessionRequest.newBuilder().setSession(ref.proto()).build()),
        a -> Model.instant(a.hasExpiresAt(), a.getExpiresAt()));
  }

  /** Ends a session; closing again answers the same. */
  public Closed closeSession(Ref ref) {
    return await(closeSessionAsync(ref, "", ""));
  }

  /** Ends a session as failed, with the error and its stack trace. */
  public Closed closeSession(Ref ref, String error, String stackTrace) {
    return await(closeSessionAsync(ref, error, stackTrace));
  }

  /** {@link #closeSession}, asynchronously (error empty: closed, not failed). */
  public CompletableFuture<Closed> closeSessionAsync(Ref ref, String error, String stackTrace) {
    var request = CloseSessionRequest.newBuilder().setSession(ref.proto()).setError(error).setStackTrace(stackTrace);
    return call(deadline(sessions).closeSession(request.build()),
        a -> new Closed(a.getSessionId(), a.getLogId(), a.getEndReason()));
  }

  /** One page of sessions, newest first. */
  public SessionPage listSessions(SessionFilter filter) {
    return await(listSessionsAsync(filter));
  }

  /** {@link #listSessions}, asynchronously. */
  public CompletableFuture<SessionPage> listSessionsAsync(SessionFilter filter) {
    return call(deadline(sessions).listSessions(filter.request.build()),
        a -> new SessionPage(a.getSessionsList().stream().map(Session::from).toList(), a.getNextPageToken()));
  }

  /** Ends every open session matching filter (END_REASON_REVOKED). */
  public Revoked revokeSessions(RevokeFilter filter) {
    return await(revokeSessionsAsync(filter));
  }

  /** {@link #revokeSessions}, asynchronously. */
  public CompletableFuture<Revoked> revokeSessionsAsync(RevokeFilter filter) {
    return call(deadline(sessions).revokeSessions(filter.request.build()),
        a -> new Revoked(List.copyOf(a.getSessionIdsList()), a.getSequence()));
  }

  /**
   * Streams session events; close the answer to stop. Its {@code next()}
   * blocks for the next event and throws a {@link SessiondException} when the
   * stream fails.
   */
  public EventStream watchSessions(WatchFilter filter) {
    Context.CancellableContext context = Context.current().withCancellation();
    Context previous = context.attach();
    try {
      return new EventStream(context, sessionStreams.watchSessions(filter.request.build()));
    } finally {
      context.detach(previous);
    }
  }

  /** The events of a watchSessions stream. */
  public static final class EventStream implements Iterator<Event>, AutoCloseable {
    private final Context.CancellableContext context;
    private final Iterator<dev.sessiond.v1.WatchSessionsResponse> events;

    private EventStream(Context.CancellableContext context, Iterator<dev.sessiond.v1.WatchSessionsResponse> events) {
      this.context = context;
      this.events = events;
    }

    @Override
    public boolean hasNext() {
      try {
        return events.hasNext();
      } catch (RuntimeException e) {
        throw SessiondException.from(e);
      }
    }

    @Override
    public Event next() {
      try {
        return Event.from(events.next());
      } catch (RuntimeException e) {
        throw SessiondException.from(e);
      }
    }

    /** Cancels the stream. */
    @Override
    public void close() {
      context.cancel(null);
    }
  }

  // ---- privileges ----

  /** Whether the session holds privilege. */
  public boolean hasPrivilege(Ref ref, String privilege) {
    return await(hasPrivilegeAsync(ref, privilege));
  }

  /** {@link #hasPrivilege}, asynchronously. */
  public CompletableFuture<Boolean> hasPrivilegeAsync(Ref ref, String privilege) {
    var request = HasPrivilegeRequest.newBuilder().setSession(ref.proto()).setPrivilege(privilege).build();
    return call(deadline(privileges).hasPrivilege(request), a -> a.getGranted());
  }

  /** Checks several privileges: granted when all (or any, by mode) are held. */
  public Check checkPrivileges(Ref ref, CheckMode mode, String... names) {
    return await(checkPrivilegesAsync(ref, mode, names));
  }

  /** {@link #checkPrivileges}, asynchronously. */
  public CompletableFuture<Check> checkPrivilegesAsync(Ref ref, CheckMode mode, String... names) {
    var request = CheckPrivilegesRequest.newBuilder().setSession(ref.proto()).addAllPrivileges(List.of(names))
        .setMode(mode).build();
    return call(deadline(privileges).checkPrivileges(request),
        a -> new Check(a.getGranted(), List.copyOf(a.getHeldList())));
  }

  /** What the session holds. */
  public Privileges getPrivileges(Ref ref) {
    return await(getPrivilegesAsync(ref));
  }

  /** {@link #getPrivileges}, asynchronously. */
  public CompletableFuture<Privileges> getPrivilegesAsync(Ref ref) {
    return call(deadline(privileges).getPrivileges(GetPrivilegesRequest.newBuilder().setSession(ref.proto()).build()),
        a -> new Privileges(List.copyOf(a.getPrivilegesList()), List.copyOf(a.getGrantedPrivilegesList()),
            List.copyOf(a.getRolesList()), a.getPromotionsList().stream().map(p -> Promotion.from(p, 0)).toList(),
            a.getTrusted()));
  }

  /** Replaces the privileges and roles granted. */
  public PrivilegesSet setPrivileges(Ref ref, Collection<String> names, Collection<String> roles) {
    return await(setPrivilegesAsync(ref, names, roles));
  }

  /** {@link #setPrivileges}, asynchronously. */
  public CompletableFuture<PrivilegesSet> setPrivilegesAsync(Ref ref, Collection<String> names, Collection<String> roles) {
    var request = SetPrivilegesRequest.newBuilder().setSession(ref.proto()).addAllPrivileges(names)
        .addAllRoles(roles).build();
    return call(deadline(privileges).setPrivileges(request),
        a -> new PrivilegesSet(List.copyOf(a.getPrivilegesList()), a.getSequence()));
  }

  /** Removes every privilege and role granted; answers the change's sequence. */
  public long clearPrivileges(Ref ref) {
    return await(clearPrivilegesAsync(ref));
  }

  /** {@link #clearPrivileges}, asynchronously. */
  public CompletableFuture<Long> clearPrivilegesAsync(Ref ref) {
    var request = ClearPrivilegesRequest.newBuilder().setSession(ref.proto()).build();
    return call(deadline(privileges).clearPrivileges(request), a -> a.getSequence());
  }

  /** Grants privilege for duration. */
  public Promotion promote(Ref ref, String privilege, Duration duration) {
    return await(promoteAsync(ref, privilege, duration));
  }

  /** {@link #promote}, asynchronously. */
  public CompletableFuture<Promotion> promoteAsync(Ref ref, String privilege, Duration duration) {
    var request = PromoteRequest.newBuilder().setSession(ref.proto()).setPrivilege(privilege)
        .setDuration(Model.duration(duration)).build();
    return call(deadline(privileges).promote(request), a -> Promotion.from(a.getPromotion(), a.getSequence()));
  }

  /** Ends a promotion; one already over changes nothing. Answers the change's sequence. */
  public long demote(Ref ref, String promotionId) {
    return await(demoteAsync(ref, promotionId));
  }

  /** {@link #demote}, asynchronously. */
  public CompletableFuture<Long> demoteAsync(Ref ref, String promotionId) {
    var request = DemoteRequest.newBuilder().setSession(ref.proto()).setPromotionId(promotionId).build();
    return call(deadline(privileges).demote(request), a -> a.getSequence());
  }

  // ---- storage ----

  /** Reads keys (none: every key) and the storage's version. */
  public Storage getStorage(Ref ref, String... keys) {
    return await(getStorageAsync(ref, keys));
  }

  /** {@link #getStorage}, asynchronously. */
  public CompletableFuture<Storage> getStorageAsync(Ref ref, String... keys) {
    var request = GetStorageRequest.newBuilder().setSession(ref.proto()).addAllKeys(List.of(keys)).build();
    return call(deadline(storage).getStorage(request),
        a -> new Storage(Values.fromValues(a.getValuesMap()), a.getVersion()));
  }

  /** Sets values, leaving other keys as they are. */
  public Written putStorage(Ref ref, Map<String, ?> values) {
    return await(putStorageAsync(ref, values, null));
  }

  /**
   * Sets values only if the storage is still at expectedVersion (null: at any
   * version); otherwise throws {@link VersionConflictException}.
   */
  public Written putStorage(Ref ref, Map<String, ?> values, Long expectedVersion) {
    return await(putStorageAsync(ref, values, expectedVersion));
  }

  /** {@link #putStorage}, asynchronously. */
  public CompletableFuture<Written> putStorageAsync(Ref ref, Map<String, ?> values, Long expectedVersion) {
    var request = PutStorageRequest.newBuilder().setSession(ref.proto()).putAllValues(Values.toValues(values));
    if (expectedVersion != null) {
      request.setExpectedVersion(expectedVersion);
    }
    return call(deadline(storage).putStorage(request.build()), a -> new Written(a.getVersion(), a.getSequence()));
  }

  /** Removes keys, at expectedVersion (null: at any version). */
  public Written deleteStorage(Ref ref, Collection<String> keys, Long expectedVersion) {
    return await(deleteStorageAsync(ref, keys, expectedVersion));
  }

  /** {@link #deleteStorage}, asynchronously. */
  public CompletableFuture<Written> deleteStorageAsync(Ref ref, Collection<String> keys, Long expectedVersion) {
    var request = DeleteStorageRequest.newBuilder().setSession(ref.proto()).addAllKeys(keys);
    if (expectedVersion != null) {
      request.setExpectedVersion(expectedVersion);
    }
    return call(deadline(storage).deleteStorage(request.build()), a -> new Written(a.getVersion(), a.getSequence()));
  }

  /** Removes every key, at expectedVersion (null: at any version). */
  public Written clearStorage(Ref ref, Long expectedVersion) {
    return await(clearStorageAsync(ref, expectedVersion));
  }

  /** {@link #clearStorage}, asynchronously. */
  public CompletableFuture<Written> clearStorageAsync(Ref ref, Long expectedVersion) {
    var request = ClearStorageRequest.newBuilder().setSession(ref.proto());
    if (expectedVersion != null) {
      request.setExpectedVersion(expectedVersion);
    }
    return call(deadline(storage).clearStorage(request.build()), a -> new Written(a.getVersion(), a.getSequence()));
  }

  /**
   * Compare-and-set: reads the storage, lets change alter a copy of its values
   * (put, replace or remove keys), and writes what changed at the version
   * read. When another write came first it starts again, up to the builder's
   * updateAttempts, then throws the last {@link VersionConflictException}.
   * An exception of change stops it, unwritten. Changed keys go in one
   * putStorage and removed ones in one deleteStorage, each at the version
   * expected: when change both sets and removes keys, a reader may see the
   * removal a moment before the rest.
   */
  public Written updateStorage(Ref ref, Consumer<Map<String, Object>> change) {
    return await(updateStorageAsync(ref, change));
  }

  /** {@link #updateStorage}, asynchronously (change runs on a gRPC thread). */
  public CompletableFuture<Written> updateStorageAsync(Ref ref, Consumer<Map<String, Object>> change) {
    return attemptUpdate(ref, change, 1);
  }

  private CompletableFuture<Written> attemptUpdate(Ref ref, Consumer<Map<String, Object>> change, int attempt) {
    return getStorageAsync(ref)
        .thenCompose(current -> {
          Map<String, Object> values = Values.fromValues(Values.toValues(current.values()));
          change.accept(values);
          return writeChanges(ref, current, values);
        })
        .handle((written, failure) -> {
          Throwable cause = failure instanceof CompletionException ? failure.getCause() : failure;
          if (cause instanceof VersionConflictException && attempt < updateAttempts) {
            return attemptUpdate(ref, change, attempt + 1);
          }
          return cause == null ? CompletableFuture.completedFuture(written) : CompletableFuture.<Written>failedFuture(cause);
        })
        .thenCompose(Function.identity());
  }

  private CompletableFuture<Written> writeChanges(Ref ref, Storage current, Map<String, Object> values) {
    Map<String, Object> changed = new java.util.LinkedHashMap<>();
    values.forEach((key, value) -> {
      if (!current.values().containsKey(key) || !Objects.equals(current.values().get(key), Values.normalise(value))) {
        changed.put(key, value);
      }
    });
    List<String> removed = new ArrayList<>();
    current.values().keySet().forEach(key -> {
      if (!values.containsKey(key)) {
        removed.add(key);
      }
    });
    CompletableFuture<Written> written = CompletableFuture.completedFuture(new Written(current.version(), 0));
    if (!removed.isEmpty()) {
      written = written.thenCompose(w -> deleteStorageAsync(ref, removed, w.version()));
    }
    if (!changed.isEmpty()) {
      written = written.thenCompose(w -> putStorageAsync(ref, changed, w.version()));
    }
    return written;
  }

  // ---- logs ----

  /** Appends entries once committed; answers how many the log policy kept. */
  public int log(Ref ref, LogEntry... entries) {
    return await(logAsync(ref, entries));
  }

  /** {@link #log}, asynchronously. */
  public CompletableFuture<Integer> logAsync(Ref ref, LogEntry... entries) {
    var request = LogRequest.newBuilder().setSession(ref.proto());
    for (LogEntry entry : entries) {
      request.addEntries(entry.proto());
    }
    return call(deadline(logs).log(request.build()), a -> a.getAccepted());
  }

  /** Searches kept logs (an admin key's call). */
  public LogPage queryLogs(LogFilter filter) {
    return await(queryLogsAsync(filter));
  }

  /** {@link #queryLogs}, asynchronously. */
  public CompletableFuture<LogPage> queryLogsAsync(LogFilter filter) {
    return call(deadline(logs).queryLogs(filter.request.build()),
        a -> new LogPage(a.getRecordsList().stream().map(LogRecord::from).toList(), a.getNextPageToken()));
  }

  // ---- messages ----

  /**
   * Posts payload (what {@link Values#toValue} takes; null included) to
   * channel: a name of the tenant's own ({@code chat/room-42}), {@code
   * session:ID} or {@code user:ID}; GLOBAL, without a type name.
   */
  public Posted post(String channel, Object payload) {
    return await(postAsync(channel, payload, MessageScope.MESSAGE_SCOPE_GLOBAL, ""));
  }

  /** Posts with a scope (LOCAL: this replica's subscribers only) and a type name (empty: none). */
  public Posted post(String channel, Object payload, MessageScope scope, String typeName) {
    return await(postAsync(channel, payload, scope, typeName));
  }

  /** {@link #post}, asynchronously. */
  public CompletableFuture<Posted> postAsync(String channel, Object payload, MessageScope scope, String typeName) {
    var request = PostRequest.newBuilder().setChannel(channel).setPayload(Values.toValue(payload)).setScope(scope)
        .setTypeName(typeName).build();
    return call(deadline(messages).post(request), a -> new Posted(a.getSequence(), a.getLocalDeliveries()));
  }

  /** Follows channels, live only: see {@link #subscribe(List, Long)}. */
  public Subscription subscribe(List<String> channels) {
    return subscribe(channels, null);
  }

  /**
   * Follows channels; returns once sessiond has put the subscription in
   * place, so every message posted after it returns reaches it. With
   * afterSequence (null: live only), every channel first replays the kept
   * messages after it; a cursor that cannot be served throws {@link
   * CursorOutOfRangeException}. No deadline; close the subscription to end it.
   */
  public Subscription subscribe(List<String> channels, Long afterSequence) {
    var request = SubscribeRequest.newBuilder();
    for (String channel : channels) {
      var subscription = ChannelSubscription.newBuilder().setChannel(channel);
      if (afterSequence != null) {
        subscription.setAfterSequence(afterSequence);
      }
      request.addChannels(subscription);
    }
    Context.CancellableContext context = Context.current().withCancellation();
    Context previous = context.attach();
    try {
      return new Subscription(context, messageStreams.subscribe(request.build()));
    } catch (RuntimeException e) {
      context.cancel(null);
      throw SessiondException.from(e);
    } finally {
      context.detach(previous);
    }
  }

  // ---- plumbing ----

  private <S extends AbstractStub<S>> S deadline(S stub) {
    return stub.withDeadlineAfter(timeout.toNanos(), TimeUnit.NANOSECONDS);
  }

  /** The call's answer mapped, or its failure as a SessiondException. */
  private static <A, R> CompletableFuture<R> call(ListenableFuture<A> answer, Function<A, R> map) {
    CompletableFuture<R> result = new CompletableFuture<>();
    Futures.addCallback(answer, new FutureCallback<A>() {
      @Override
      public void onSuccess(A value) {
        try {
          result.complete(map.apply(value));
        } catch (RuntimeException e) {
          result.completeExceptionally(e);
        }
      }

      @Override
      public void onFailure(Throwable failure) {
        result.completeExceptionally(SessiondException.from(failure));
      }
    }, MoreExecutors.directExecutor());
    result.whenComplete((value, failure) -> {
      if (result.isCancelled()) {
        answer.cancel(true);
      }
    });
    return result;
  }

  /** Waits for a future, throwing its failure as it is. */
  private static <R> R await(CompletableFuture<R> future) {
    try {
      return future.get();
    } catch (ExecutionException e) {
      if (e.getCause() instanceof RuntimeException cause) {
        throw cause;
      }
      throw SessiondException.from(e.getCause());
    } catch (InterruptedException e) {
      future.cancel(true);
      Thread.currentThread().interrupt();
      throw SessiondException.from(e);
    }
  }
}
