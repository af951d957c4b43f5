/**
 * The client: every sessiond call as a promise, on one gRPC channel.
 */

import fs from 'node:fs';
import { setTimeout as pause } from 'node:timers/promises';
import { isDeepStrictEqual } from 'node:util';

import {
  type CallOptions,
  type ChannelCredentials,
  type ClientOptions,
  credentials as grpcCredentials,
  Metadata,
  type ServiceError,
} from '@grpc/grpc-js';

import { VersionConflict, fromServiceError } from './errors.js';
import * as mpb from './gen/sessiond/v1/messages.js';
import * as pb from './gen/sessiond/v1/sessiond.js';
import { Subscription } from './subscription.js';
import * as t from './types.js';
import type { JsonValue, Kind, LogEntry, LogLevel, Scope, State } from './types.js';

/**
 * A session as a call names it: its token (a string), or `{ sessionId }`
 * (a `Session` answered earlier works too); `minSequence` asks for a state
 * that reflects that event (read-your-writes across replicas).
 */
export type SessionLike = string | { sessionId: string; minSequence?: number } | { token: string; minSequence?: number };

export interface ClientOptionsTls {
  /** PEM file of the CA that signed sessiond's certificate; unset: the system's roots. */
  caFile?: string;
  /** PEM files of a client certificate and its key, for mTLS. */
  certFile?: string;
  keyFile?: string;
}

export interface SessiondClientOptions {
  /** Sent on every call as `authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** TLS: true for the system's roots, or files; unset: plaintext. */
  tls?: boolean | ClientOptionsTls;
  /** The deadline of every call, in milliseconds (default 10 000); `withTimeout` changes it. */
  timeoutMs?: number;
  /** grpc-js channel options, e.g. `{ 'grpc.ssl_target_name_override': 'sessiond' }`. */
  channelOptions?: ClientOptions;
}

function ref(session: SessionLike): pb.SessionRef {
  if (typeof session === 'string') return pb.SessionRef.fromPartial({ token: session });
  if ('sessionId' in session && session.sessionId) {
    return pb.SessionRef.fromPartial({ sessionId: session.sessionId, minSequence: session.minSequence ?? 0 });
  }
  if ('token' in session) return pb.SessionRef.fromPartial({ token: session.token, minSequence: session.minSequence ?? 0 });
  throw new TypeError('a session is named by its token (a string) or { sessionId }');
}

function tlsCredentials(tls: SessiondClientOptions['tls']): ChannelCredentials {
  if (!tls) return grpcCredentials.createInsecure();
  const files = tls === true ? {} : tls;
  if (Boolean(files.certFile) !== Boolean(files.keyFile)) {
    throw new TypeError('a client certificate needs both certFile and keyFile');
  }
  const read = (file?: string) => (file ? fs.readFileSync(file) : null);
  return grpcCredentials.createSsl(read(files.caFile), read(files.keyFile), read(files.certFile));
}

function entry(e: string | LogEntry): pb.LogEntry {
  const given = typeof e === 'string' ? { message: e } : e;
  return pb.LogEntry.fromPartial({
    level: t.logLevel.toProto(given.level ?? 'info'),
    message: given.message,
    exception: given.exception ?? '',
    stackTrace: given.stackTrace ?? '',
    clientTime: given.clientTime,
  });
}

function written(answer: { version: number; sequence: number }): t.Written {
  return { version: answer.version, sequence: answer.sequence };
}

/** The callback-style generated stub methods this client calls. */
type Unary<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => unknown;

interface Stubs {
  sessions: pb.SessionServiceClient;
  privileges: pb.PrivilegeServiceClient;
  storage: pb.StorageServiceClient;
  logs: pb.LogServiceClient;
  messages: mpb.MessageServiceClient;
}

/**
 * A sessiond client. `new Client('localhost:50051', { apiKey })`; every
 * method answers a promise and rejects with a `SessiondError` subclass.
 * Share one client: it holds one channel, used by every call.
 */
export class Client {
  private readonly stubs: Stubs;
  private readonly metadata: Metadata;
  private timeoutMs: number;

  constructor(address: string, options: SessiondClientOptions = {}) {
    const creds = tlsCredentials(options.tls);
    const sessions = new pb.SessionServiceClient(address, creds, options.channelOptions);
    const shared = { ...options.channelOptions, channelOverride: sessions.getChannel() };
    this.stubs = {
      sessions,
      privileges: new pb.PrivilegeServiceClient(address, creds, shared),
      storage: new pb.StorageServiceClient(address, creds, shared),
      logs: new pb.LogServiceClient(address, creds, shared),
      messages: new mpb.MessageServiceClient(address, creds, shared),
    };
    this.metadata = new Metadata();
    if (options.apiKey) this.metadata.set('authorization', `Bearer ${options.apiKey}`);
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  /** This client, on the same channel, with another per-call deadline. */
  withTimeout(timeoutMs: number): Client {
    const other = Object.create(Client.prototype) as Client;
    Object.assign(other, this, { timeoutMs });
    return other;
  }

  /** Closes the channel; calls made after fail. */
  close(): void {
    this.stubs.sessions.close();
  }

  private call<S, Req, Res>(stub: S, method: Unary<Req, Res>, request: Req): Promise<Res> {
    return new Promise((resolve, reject) => {
      method.call(stub, request, this.metadata, { deadline: Date.now() + this.timeoutMs }, (error, response) =>
        error ? reject(fromServiceError(error)) : resolve(response),
      );
    });
  }

  // --- sessions -------------------------------------------------------------

  /**
   * Starts a session; answers its secret token (shown only now) and the
   * session. Unset timeouts take the kind's defaults; 0 means none.
   */
  async createSession(
    kind: Kind,
    options: {
      userId?: string;
      roles?: string[];
      privileges?: string[];
      idleTimeoutMs?: number;
      lifetimeMs?: number;
      storage?: Record<string, JsonValue>;
      labels?: t.Labels;
      trusted?: boolean;
      /** An idempotency key (a random UUID): a retry answers the first create. */
      requestId?: string;
    } = {},
  ): Promise<t.CreatedSession> {
    const s = this.stubs.sessions;
    const answer = await this.call(s, s.createSession, pb.CreateSessionRequest.fromPartial({
      kind: t.kind.toProto(kind),
      userId: options.userId ?? '',
      roles: options.roles ?? [],
      privileges: options.privileges ?? [],
      idleTimeout: options.idleTimeoutMs === undefined ? undefined : t.toDuration(options.idleTimeoutMs),
      lifetime: options.lifetimeMs === undefined ? undefined : t.toDuration(options.lifetimeMs),
      storage: options.storage ?? {},
      labels: options.labels,
      trusted: options.trusted ?? false,
      requestId: options.requestId ?? '',
    }));
    return { token: answer.token, session: t.session(answer.session), sequence: answer.sequence };
  }

  /**
   * Who the token's session is, and whether it holds each privilege: one
   * call per request. Counts as activity. Rejects with `LoginRequired` (or
   * its subclasses `SessionNotFound`, `SessionEnded`) when the user must
   * sign in again.
   */
  async authenticate(token: string, privileges: string[] = [], options: { minSequence?: number } = {}): Promise<t.Identity> {
    const s = this.stubs.sessions;
    const a = await this.call(s, s.authenticate, pb.AuthenticateRequest.fromPartial({
      token,
      privileges,
      minSequence: options.minSequence ?? 0,
    }));
    return {
      sessionId: a.sessionId,
      userId: a.userId,
      tenant: a.tenant,
      kind: t.kind.fromProto(a.kind),
      roles: a.roles,
      expiresAt: a.expiresAt,
      granted: t.byPrivilege(privileges, a.granted),
      allGranted: a.allGranted,
      trusted: a.trusted,
    };
  }

  /** The session, by token or id. Counts as activity. */
  async getSession(session: SessionLike): Promise<t.Session> {
    const s = this.stubs.sessions;
    return t.session((await this.call(s, s.getSession, { session: ref(session) })).session);
  }

  /** Marks activity; answers when the session now expires (undefined: never). */
  async touchSession(session: SessionLike): Promise<Date | undefined> {
    const s = this.stubs.sessions;
    return (await this.call(s, s.touchSession, { session: ref(session) })).expiresAt;
  }

  /** Ends the session (failed when `error` is given). Closing again answers the same. */
  async closeSession(session: SessionLike, options: { error?: string; stackTrace?: string } = {}): Promise<t.Closed> {
    const s = this.stubs.sessions;
    const a = await this.call(s, s.closeSession, {
      session: ref(session),
      error: options.error ?? '',
      stackTrace: options.stackTrace ?? '',
    });
    return { sessionId: a.sessionId, endReason: t.endReason.fromProto(a.endReason), logId: a.logId };
  }

  /** Sessions, newest first, one page at a time. Without userId it needs an admin key. */
  async listSessions(
    filter: { userId?: string; kind?: Kind; state?: State; pageSize?: number; pageToken?: string } = {},
  ): Promise<t.SessionPage> {
    const s = this.stubs.sessions;
    const a = await this.call(s, s.listSessions, {
      userId: filter.userId ?? '',
      kind: t.kind.toProto(filter.kind),
      state: t.state.toProto(filter.state),
      pageSize: filter.pageSize ?? 0,
      pageToken: filter.pageToken ?? '',
    });
    return { sessions: a.sessions.map(t.session), nextPageToken: a.nextPageToken };
  }

  /** Ends every open session matching the filters (at least one) with reason revoked. */
  async revokeSessions(filter: { userId?: string; kind?: Kind; sessionIds?: string[] }): Promise<t.Revoked> {
    const s = this.stubs.sessions;
    const a = await this.call(s, s.revokeSessions, {
      userId: filter.userId ?? '',
      kind: t.kind.toProto(filter.kind),
      sessionIds: filter.sessionIds ?? [],
    });
    return { sessionIds: a.sessionIds, sequence: a.sequence };
  }

  /**
   * Lifecycle events as they happen (after `afterSequence` first, when
   * given), as an async iterable: `for await (const event of ...)`; leaving
   * the loop cancels the stream. No deadline unless `timeoutMs`. Without
   * sessionId or userId it needs an admin key.
   */
  async *watchSessions(
    filter: { sessionId?: string; userId?: string; kind?: Kind; afterSequence?: number; timeoutMs?: number } = {},
  ): AsyncGenerator<t.Event> {
    const request = pb.WatchSessionsRequest.fromPartial({
      sessionId: filter.sessionId ?? '',
      userId: filter.userId ?? '',
      kind: t.kind.toProto(filter.kind),
      afterSequence: filter.afterSequence,
    });
    const options = filter.timeoutMs === undefined ? {} : { deadline: Date.now() + filter.timeoutMs };
    const stream = this.stubs.sessions.watchSessions(request, this.metadata, options);
    try {
      for await (const answer of stream) yield t.event(answer as pb.WatchSessionsResponse);
    } catch (error) {
      throw (error as ServiceError).code === undefined ? error : fromServiceError(error as ServiceError);
    } finally {
      stream.cancel();
    }
  }

  // --- privileges -----------------------------------------------------------

  async hasPrivilege(session: SessionLike, privilege: string): Promise<boolean> {
    const s = this.stubs.privileges;
    return (await this.call(s, s.hasPrivilege, { session: ref(session), privilege })).granted;
  }

  /** Whether the session holds all (mode 'all', the default) or any of the privileges. */
  async checkPrivileges(session: SessionLike, privileges: string[], mode: 'all' | 'any' = 'all'): Promise<t.Check> {
    const s = this.stubs.privileges;
    const a = await this.call(s, s.checkPrivileges, {
      session: ref(session),
      privileges,
      mode: mode === 'any' ? pb.CheckMode.CHECK_MODE_ANY : pb.CheckMode.CHECK_MODE_ALL,
    });
    return { granted: a.granted, held: t.byPrivilege(privileges, a.held) };
  }

  async getPrivileges(session: SessionLike): Promise<t.Privileges> {
    const s = this.stubs.privileges;
    const a = await this.call(s, s.getPrivileges, { session: ref(session) });
    return {
      privileges: a.privileges,
      grantedPrivileges: a.grantedPrivileges,
      roles: a.roles,
      promotions: a.promotions.map((p) => ({ promotionId: p.promotionId, privilege: p.privilege, expiresAt: p.expiresAt })),
      trusted: a.trusted,
    };
  }

  /** Replaces the session's privileges and roles; answers every privilege now held. */
  async setPrivileges(session: SessionLike, grant: { privileges?: string[]; roles?: string[] }): Promise<string[]> {
    const s = this.stubs.privileges;
    const a = await this.call(s, s.setPrivileges, {
      session: ref(session),
      privileges: grant.privileges ?? [],
      roles: grant.roles ?? [],
    });
    return a.privileges;
  }

  /** Removes every privilege, role and promotion; answers the event's sequence. */
  async clearPrivileges(session: SessionLike): Promise<number> {
    const s = this.stubs.privileges;
    return (await this.call(s, s.clearPrivileges, { session: ref(session) })).sequence;
  }

  /** Grants `privilege` for `durationMs`; demote with the answer's promotionId. */
  async promote(session: SessionLike, privilege: string, durationMs: number): Promise<t.Promotion> {
    const s = this.stubs.privileges;
    const a = await this.call(s, s.promote, { session: ref(session), privilege, duration: t.toDuration(durationMs) });
    const p = a.promotion ?? pb.Promotion.fromPartial({});
    return { promotionId: p.promotionId, privilege: p.privilege, expiresAt: p.expiresAt };
  }

  /** Ends a promotion early (idempotent); answers the event's sequence (0: no change). */
  async demote(session: SessionLike, promotionId: string): Promise<number> {
    const s = this.stubs.privileges;
    return (await this.call(s, s.demote, { session: ref(session), promotionId })).sequence;
  }

  // --- storage --------------------------------------------------------------

  /** The named keys (none: every key) and the storage's version. */
  async getStorage(session: SessionLike, keys: string[] = []): Promise<t.Storage> {
    const s = this.stubs.storage;
    const a = await this.call(s, s.getStorage, { session: ref(session), keys });
    return { values: a.values as Record<string, JsonValue>, version: a.version };
  }

  /** Sets keys. With expectedVersion, rejects with VersionConflict unless the storage is at it. */
  async putStorage(
    session: SessionLike,
    values: Record<string, JsonValue>,
    options: { expectedVersion?: number } = {},
  ): Promise<t.Written> {
    const s = this.stubs.storage;
    return written(await this.call(s, s.putStorage, { session: ref(session), values, expectedVersion: options.expectedVersion }));
  }

  async deleteStorage(session: SessionLike, keys: string[], options: { expectedVersion?: number } = {}): Promise<t.Written> {
    const s = this.stubs.storage;
    return written(await this.call(s, s.deleteStorage, { session: ref(session), keys, expectedVersion: options.expectedVersion }));
  }

  async clearStorage(session: SessionLike, options: { expectedVersion?: number } = {}): Promise<t.Written> {
    const s = this.stubs.storage;
    return written(await this.call(s, s.clearStorage, { session: ref(session), expectedVersion: options.expectedVersion }));
  }

  /**
   * Compare-and-set: reads the storage (or `keys`), applies `fn` to a copy,
   * writes what changed with the version read, and starts again on a
   * VersionConflict. `fn` changes the object in place or returns the new
   * values (it may be async, and may run several times, so it must have no
   * other effects). Keys it removes are deleted; a change may not both set
   * and remove keys. Rejects with the last VersionConflict after `attempts`
   * tries (default 10). Answers the values written and their version.
   */
  async updateStorage(
    session: SessionLike,
    fn: (values: Record<string, JsonValue>) => Record<string, JsonValue> | void | Promise<Record<string, JsonValue> | void>,
    options: { keys?: string[]; attempts?: number } = {},
  ): Promise<t.Storage> {
    const attempts = options.attempts ?? 10;
    for (let attempt = 1; ; attempt++) {
      const current = await this.getStorage(session, options.keys);
      const copy = structuredClone(current.values);
      const next = (await fn(copy)) ?? copy;
      const changed = Object.fromEntries(
        Object.entries(next).filter(([key, value]) => !isDeepStrictEqual(current.values[key], value)),
      );
      const removed = Object.keys(current.values).filter((key) => !(key in next));
      if (Object.keys(changed).length > 0 && removed.length > 0) {
        throw new TypeError('updateStorage: fn both changed and removed keys; a write does one or the other');
      }
      let answer: t.Written;
      try {
        if (Object.keys(changed).length > 0) {
          answer = await this.putStorage(session, changed, { expectedVersion: current.version });
        } else if (removed.length > 0) {
          answer = await this.deleteStorage(session, removed, { expectedVersion: current.version });
        } else {
          return current;
        }
      } catch (error) {
        if (!(error instanceof VersionConflict) || attempt >= attempts) throw error;
        await pause(Math.random() * Math.min(50, 2 * 2 ** attempt)); // jittered, at most 50 ms
        continue;
      }
      return { values: next, version: answer.version };
    }
  }

  // --- logs -----------------------------------------------------------------

  /** Appends entries (a string is an info entry); answers how many were kept. */
  async log(session: SessionLike, entries: (string | LogEntry)[], options: { requestId?: string } = {}): Promise<number> {
    const s = this.stubs.logs;
    const a = await this.call(s, s.log, { session: ref(session), entries: entries.map(entry), requestId: options.requestId ?? '' });
    return a.accepted;
  }

  /** Entries of kept logs (closed sessions), one page at a time. Needs an admin key. */
  async queryLogs(
    filter: {
      sessionId?: string;
      userId?: string;
      kind?: Kind;
      startTime?: Date;
      endTime?: Date;
      minLevel?: LogLevel;
      failedOnly?: boolean;
      slowOnly?: boolean;
      pageSize?: number;
      pageToken?: string;
    } = {},
  ): Promise<t.LogPage> {
    const s = this.stubs.logs;
    const a = await this.call(s, s.queryLogs, pb.QueryLogsRequest.fromPartial({
      sessionId: filter.sessionId ?? '',
      userId: filter.userId ?? '',
      kind: t.kind.toProto(filter.kind),
      startTime: filter.startTime,
      endTime: filter.endTime,
      minLevel: t.logLevel.toProto(filter.minLevel),
      failedOnly: filter.failedOnly ?? false,
      slowOnly: filter.slowOnly ?? false,
      pageSize: filter.pageSize ?? 0,
      pageToken: filter.pageToken ?? '',
    }));
    return {
      records: a.records.map((r) => ({
        logId: r.logId,
        sessionId: r.sessionId,
        userId: r.userId,
        kind: t.kind.fromProto(r.kind),
        level: t.logLevel.fromProto(r.level),
        message: r.message,
        exception: r.exception,
        stackTrace: r.stackTrace,
        clientTime: r.clientTime,
        loggedAt: r.loggedAt,
        sequence: r.sequence,
      })),
      nextPageToken: a.nextPageToken,
    };
  }

  // --- messages -------------------------------------------------------------

  /**
   * Posts `payload` (any JSON value, null included) to `channel`: a name of
   * the tenant's own ('chat/room-42'), 'session:ID' or 'user:ID'. `scope`
   * 'global' (the default: numbered, kept for replay, every replica) or
   * 'local' (this replica's subscribers only). Answers the message's
   * sequence and how many subscriptions of this replica it was handed to.
   */
  async post(channel: string, payload: JsonValue, options: { scope?: Scope; typeName?: string } = {}): Promise<t.Posted> {
    if (payload === undefined) throw new TypeError('post: a payload is required (null is one)');
    const s = this.stubs.messages;
    const a = await this.call(s, s.post, mpb.PostRequest.fromPartial({
      channel,
      payload,
      typeName: options.typeName ?? '',
      scope: t.scope.toProto(options.scope),
    }));
    return { sequence: a.sequence, localDeliveries: a.localDeliveries };
  }

  /**
   * Follows one channel or several; resolves once the subscription is in
   * place. `for await (const item of subscription)` yields `Message` and
   * `SessionEnd` items (tell them apart by `item.type`) and ends after a
   * final SessionEnd or `close()`. `afterSequence` (for every channel, or
   * by channel) first replays the kept messages after it; unset: live
   * only. No deadline unless `timeoutMs`. Rejects with `CursorExpired` or
   * `CursorAhead` for a cursor that cannot be served, and the iteration
   * with `SubscriberTooSlow` when cut off for falling behind.
   */
  async subscribe(
    channels: string | string[],
    options: { afterSequence?: number | Record<string, number>; timeoutMs?: number } = {},
  ): Promise<Subscription> {
    const names = typeof channels === 'string' ? [channels] : channels;
    const after = options.afterSequence;
    const request = mpb.SubscribeRequest.fromPartial({
      channels: names.map((channel) => ({
        channel,
        afterSequence: typeof after === 'number' ? after : after?.[channel],
      })),
    });
    const callOptions = options.timeoutMs === undefined ? {} : { deadline: Date.now() + options.timeoutMs };
    return Subscription.open(this.stubs.messages.subscribe(request, this.metadata, callOptions));
  }
}
