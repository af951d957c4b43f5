/**
 * sessiond's answers as plain TypeScript values, and their conversions.
 *
 * Storage values are plain JSON-like values (objects, arrays, strings,
 * numbers, booleans, null ↔ google.protobuf.Value); durations are
 * milliseconds (fields and options ending in `Ms`); times are `Date`s. Enums
 * are the lower-case proto names without their prefix ('web_user').
 */

import * as mpb from './gen/sessiond/v1/messages.js';
import * as pb from './gen/sessiond/v1/sessiond.js';

/** A JSON-like value, as storage holds. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** What a session stands for. */
export type Kind =
  | 'method_call'
  | 'web_call'
  | 'method_stream'
  | 'streaming'
  | 'future_call'
  | 'internal'
  | 'web_user'
  | 'remote_user'
  | 'stored_procedure'
  | 'standalone';
export type State = 'open' | 'ended';
export type EndReason =
  | 'closed'
  | 'failed'
  | 'idle_timeout'
  | 'lifetime_reached'
  | 'revoked'
  | 'server_shutdown'
  | 'server_crashed';
export type LogLevel = 'debug' | 'info' | 'warning' | 'error' | 'fatal';
export type EventType =
  | 'created'
  | 'closed'
  | 'expired'
  | 'revoked'
  | 'privileges_changed'
  | 'storage_changed';
/** How far a posted message reaches: this replica's subscribers, or every replica's (kept, numbered). */
export type Scope = 'local' | 'global';

/** A proto enum number as its lower-case name without prefix; undefined for UNSPECIFIED. */
function enumName<T extends string>(table: Record<number, string>, prefix: string, value: number): T | undefined {
  const name = table[value];
  if (name === undefined || name.endsWith('_UNSPECIFIED')) return undefined;
  return name.slice(prefix.length).toLowerCase() as T;
}

/** A lower-case enum name as its proto number; 0 (UNSPECIFIED) for undefined. */
function enumNumber(table: Record<string, string | number>, prefix: string, name: string | undefined): number {
  if (!name) return 0;
  const value = table[prefix + name.toUpperCase()];
  if (typeof value !== 'number') throw new TypeError(`unknown ${prefix.toLowerCase()}value: ${name}`);
  return value;
}

export const kind = {
  toProto: (name?: Kind) => enumNumber(pb.SessionKind, 'SESSION_KIND_', name),
  fromProto: (value: number) => enumName<Kind>(pb.SessionKind, 'SESSION_KIND_', value),
};
export const state = {
  toProto: (name?: State) => enumNumber(pb.SessionState, 'SESSION_STATE_', name),
  fromProto: (value: number) => enumName<State>(pb.SessionState, 'SESSION_STATE_', value),
};
export const endReason = {
  fromProto: (value: number) => enumName<EndReason>(pb.EndReason, 'END_REASON_', value),
};
export const logLevel = {
  toProto: (name?: LogLevel) => enumNumber(pb.LogLevel, 'LOG_LEVEL_', name),
  fromProto: (value: number) => enumName<LogLevel>(pb.LogLevel, 'LOG_LEVEL_', value),
};
export const scope = {
  toProto: (name?: Scope) => enumNumber(mpb.MessageScope, 'MESSAGE_SCOPE_', name),
  fromProto: (value: number) => enumName<Scope>(mpb.MessageScope, 'MESSAGE_SCOPE_', value),
};
export const eventType = {
  fromProto: (value: number) => enumName<EventType>(pb.EventType, 'EVENT_TYPE_', value),
};

export function toDuration(ms: number): { seconds: number; nanos: number } {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

export function fromDuration(duration?: { seconds: number; nanos: number }): number | undefined {
  return duration === undefined ? undefined : duration.seconds * 1000 + duration.nanos / 1e6;
}

export interface Labels {
  endpoint?: string;
  method?: string;
  futureCall?: string;
  clientAddress?: string;
  userAgent?: string;
}

/** A session as sessiond knows it (never its token). */
export interface Session {
  sessionId: string;
  kind: Kind | undefined;
  userId: string;
  labels: Required<Labels>;
  state: State | undefined;
  trusted: boolean;
  createdAt?: Date;
  lastActiveAt?: Date;
  /** When it ends unless used again, or at the latest; undefined for never. */
  expiresAt?: Date;
  idleTimeoutMs?: number;
  lifetimeMs?: number;
  endReason?: EndReason;
  endedAt?: Date;
  durationMs?: number;
  timeLeftMs?: number;
}

export function session(s: pb.Session | undefined): Session {
  const p = s ?? pb.Session.fromPartial({});
  const labels = p.labels ?? pb.SessionLabels.fromPartial({});
  return {
    sessionId: p.sessionId,
    kind: kind.fromProto(p.kind),
    userId: p.userId,
    labels: {
      endpoint: labels.endpoint,
      method: labels.method,
      futureCall: labels.futureCall,
      clientAddress: labels.clientAddress,
      userAgent: labels.userAgent,
    },
    state: state.fromProto(p.state),
    trusted: p.trusted,
    createdAt: p.createdAt,
    lastActiveAt: p.lastActiveAt,
    expiresAt: p.expiresAt,
    idleTimeoutMs: fromDuration(p.idleTimeout),
    lifetimeMs: fromDuration(p.lifetime),
    endReason: endReason.fromProto(p.endReason),
    endedAt: p.endedAt,
    durationMs: fromDuration(p.duration),
    timeLeftMs: fromDuration(p.timeLeft),
  };
}

/** createSession's answer: the secret token (shown only here) and the session. */
export interface CreatedSession {
  token: string;
  session: Session;
  /** The CREATED event's sequence: a consistency token (minSequence). */
  sequence: number;
}

/** authenticate's answer: who the token's session is, and the privileges asked. */
export interface Identity {
  sessionId: string;
  userId: string;
  tenant: string;
  kind: Kind | undefined;
  roles: string[];
  expiresAt?: Date;
  /** Each privilege asked, as asked, and whether the session holds it. */
  granted: Record<string, boolean>;
  /** Whether every privilege asked is held (true when none was asked). */
  allGranted: boolean;
  trusted: boolean;
}

export interface Closed {
  sessionId: string;
  endReason?: EndReason;
  /** The kept log's id; empty when the log policy did not keep it. */
  logId: string;
}

export interface SessionPage {
  sessions: Session[];
  /** Pass to the next listSessions call; empty on the last page. */
  nextPageToken: string;
}

export interface Revoked {
  sessionIds: string[];
  sequence: number;
}

/** One watchSessions event. */
export interface Event {
  sequence: number;
  type: EventType | undefined;
  sessionId: string;
  userId: string;
  kind?: Kind;
  endReason?: EndReason;
  at?: Date;
}

export function event(e: pb.WatchSessionsResponse): Event {
  return {
    sequence: e.sequence,
    type: eventType.fromProto(e.type),
    sessionId: e.sessionId,
    userId: e.userId,
    kind: kind.fromProto(e.kind),
    endReason: endReason.fromProto(e.endReason),
    at: e.at,
  };
}

export interface Promotion {
  promotionId: string;
  privilege: string;
  expiresAt?: Date;
}

export interface Privileges {
  /** Every privilege held, expanded through includes and roles, lower case, sorted. */
  privileges: string[];
  grantedPrivileges: string[];
  roles: string[];
  promotions: Promotion[];
  trusted: boolean;
}

export interface Check {
  granted: boolean;
  /** Each privilege asked, as asked, and whether it is held. */
  held: Record<string, boolean>;
}

/** A session's storage: its values and its version. */
export interface Storage {
  values: Record<string, JsonValue>;
  version: number;
}

/** A storage write's answer: the new version and the change's event sequence. */
export interface Written {
  version: number;
  sequence: number;
}

/** A log entry to write. A plain string passed to `log` is an info entry. */
export interface LogEntry {
  message: string;
  level?: LogLevel;
  exception?: string;
  stackTrace?: string;
  /** When the client logged it; sessiond's time when unset. */
  clientTime?: Date;
}

/** A stored log entry, as queryLogs answers it. */
export interface LogRecord {
  logId: string;
  sessionId: string;
  userId: string;
  kind?: Kind;
  level?: LogLevel;
  message: string;
  exception: string;
  stackTrace: string;
  clientTime?: Date;
  loggedAt?: Date;
  sequence: number;
}

export interface LogPage {
  records: LogRecord[];
  nextPageToken: string;
}

/** post's answer. */
export interface Posted {
  /** The message's number in its channel (1, 2, …); 0 for a local message. */
  sequence: number;
  /** Subscriptions of the replica that took the post it was handed to. */
  localDeliveries: number;
}

/** A message as a subscription receives it. */
export interface Message {
  type: 'message';
  channel: string;
  /** Its number in the channel, for resuming with afterSequence; 0 for a local message. */
  sequence: number;
  /** The payload as posted. */
  payload: JsonValue;
  /** The type name as posted ('' when none was given). */
  typeName: string;
  /** When sessiond accepted the post (millisecond precision). */
  postedAt?: Date;
  scope?: Scope;
}

/**
 * A session of a followed `session:` or `user:` channel ended. On a session
 * channel it is the subscription's last item (`final`): the iteration stops
 * after it.
 */
export interface SessionEnd {
  type: 'sessionEnd';
  /** The followed channel it concerns (`session:ID` or `user:ID`). */
  channel: string;
  sessionId: string;
  endReason?: EndReason;
  /** Whether the subscription ends with this item (session channels). */
  final: boolean;
}

/** A subscription's item: tell them apart by `type`. */
export type SubscriptionItem = Message | SessionEnd;

/** The item a Subscribe answer carries; undefined for one not surfaced (`subscribed`). */
export function subscriptionItem(r: mpb.SubscribeResponse): SubscriptionItem | undefined {
  if (r.message) {
    const m = r.message;
    return {
      type: 'message',
      channel: m.channel,
      sequence: m.sequence,
      payload: m.payload === undefined ? null : (m.payload as JsonValue),
      typeName: m.typeName,
      postedAt: m.postedAt,
      scope: scope.fromProto(m.scope),
    };
  }
  if (r.sessionEnded) {
    const e = r.sessionEnded;
    return {
      type: 'sessionEnd',
      channel: e.channel,
      sessionId: e.sessionId,
      endReason: endReason.fromProto(e.endReason),
      final: e.endsSubscription,
    };
  }
  return undefined;
}

/** Zips the privileges asked with their answers. */
export function byPrivilege(privileges: readonly string[], answers: readonly boolean[]): Record<string, boolean> {
  return Object.fromEntries(privileges.map((name, i) => [name, answers[i] ?? false]));
}
