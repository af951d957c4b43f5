// sessiond's API from Node.js: @grpc/grpc-js clients for the services of
// proto/sessiond/v1/sessiond.proto, loaded at run time by
// @grpc/proto-loader, and the helpers a client needs around them.
//
// - `connect(address, apiKey)` gives one client per service, each sending
//   `authorization: Bearer <apiKey>` on every call (no key: no header).
// - `unary(client, method, request)` makes a call and answers a promise.
// - `toValue` / `fromValue` turn plain JavaScript values into
//   google.protobuf.Value messages and back, for session storage.
// - `errorInfo(error)` decodes the google.rpc.ErrorInfo that sessiond puts
//   in a failed call's `grpc-status-details-bin` trailer.
//
// The well-known types that sessiond.proto imports (google/protobuf/*.proto)
// come bundled with protobufjs. google.rpc.Status and ErrorInfo and the
// health service are not on npm in a form worth a dependency: minimal
// copies of their definitions are in proto/ beside this file.

import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, '../..');
const LOCAL_PROTOS = path.join(HERE, 'proto');

// How long one call may take before it fails with DEADLINE_EXCEEDED.
const CALL_TIMEOUT_MS = 5000;

// Messages as plain objects: camelCase fields, enums by name, 64-bit
// integers as decimal strings, every field present (false, 0, '' included).
const packageDefinition = protoLoader.loadSync(
  ['sessiond/v1/sessiond.proto', 'grpc/health/v1/health.proto'],
  {
    includeDirs: [path.join(REPO_ROOT, 'proto'), LOCAL_PROTOS],
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  },
);
const api = grpc.loadPackageDefinition(packageDefinition);
const v1 = api.sessiond.v1;

// google.rpc.Status and ErrorInfo, for decoding error details.
const rpcTypes = new protobuf.Root();
rpcTypes.resolvePath = (_origin, target) => path.join(LOCAL_PROTOS, target);
rpcTypes.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto']);
const Status = rpcTypes.lookupType('google.rpc.Status');
const ErrorInfo = rpcTypes.lookupType('google.rpc.ErrorInfo');
const ERROR_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.ErrorInfo';

// Reconnect quickly while a server is still starting.
const CHANNEL_OPTIONS = {
  'grpc.initial_reconnect_backoff_ms': 50,
  'grpc.min_reconnect_backoff_ms': 50,
  'grpc.max_reconnect_backoff_ms': 200,
};

/** An interceptor that adds `authorization: Bearer <apiKey>` to every call. */
function bearer(apiKey) {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set('authorization', `Bearer ${apiKey}`);
        next(metadata, listener);
      },
    });
}

/**
 * One client per sessiond service and the health service, on `address`
 * (host:port, plaintext). With `apiKey`, every call presents it.
 * Call `close()` on the answer when done.
 */
export function connect(address, apiKey) {
  const options = { ...CHANNEL_OPTIONS, interceptors: apiKey === undefined ? [] : [bearer(apiKey)] };
  const credentials = grpc.credentials.createInsecure();
  const clients = {
    health: new api.grpc.health.v1.Health(address, credentials, options),
    sessions: new v1.SessionService(address, credentials, options),
    privileges: new v1.PrivilegeService(address, credentials, options),
    storage: new v1.StorageService(address, credentials, options),
    logs: new v1.LogService(address, credentials, options),
  };
  return {
    ...clients,
    close() {
      for (const client of Object.values(clients)) client.close();
    },
  };
}

/**
 * Calls unary `method` of `client` and answers its response. A failed call
 * rejects with grpc-js's ServiceError: `code`, `details` and `metadata`
 * (the trailers). `options` are grpc-js call options, e.g. a `deadline`.
 */
export function unary(client, method, request, options = {}) {
  const deadline = options.deadline ?? Date.now() + CALL_TIMEOUT_MS;
  const metadata = options.metadata ?? new grpc.Metadata();
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { ...options, deadline }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

/** A JavaScript value (JSON-like) as a google.protobuf.Value message. */
export function toValue(value) {
  if (value === null) return { nullValue: 'NULL_VALUE' };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  switch (typeof value) {
    case 'number':
      return { numberValue: value };
    case 'string':
      return { stringValue: value };
    case 'boolean':
      return { boolValue: value };
    case 'object':
      return { structValue: { fields: mapValues(value, toValue) } };
    default:
      throw new TypeError(`no google.protobuf.Value for a ${typeof value}`);
  }
}

/** A google.protobuf.Value message as the JavaScript value it stands for. */
export function fromValue(value) {
  switch (value.kind) {
    case 'nullValue':
      return null;
    case 'numberValue':
    case 'stringValue':
    case 'boolValue':
      return value[value.kind];
    case 'listValue':
      return (value.listValue.values ?? []).map(fromValue);
    case 'structValue':
      return mapValues(value.structValue.fields ?? {}, fromValue);
    default:
      throw new TypeError(`a google.protobuf.Value with no kind: ${JSON.stringify(value)}`);
  }
}

/** `values` (a storage map) with each entry through `toValue`. */
export function toValues(values) {
  return mapValues(values, toValue);
}

/** A storage map of google.protobuf.Value as plain JavaScript values. */
export function fromValues(values) {
  return mapValues(values, fromValue);
}

function mapValues(object, f) {
  return Object.fromEntries(Object.entries(object).map(([key, value]) => [key, f(value)]));
}

/**
 * The google.rpc.Status a failed call carries in its
 * `grpc-status-details-bin` trailer, or undefined when it has none.
 */
export function rpcStatus(error) {
  const [encoded] = error.metadata?.get('grpc-status-details-bin') ?? [];
  return encoded === undefined ? undefined : Status.decode(encoded);
}

/**
 * The one google.rpc.ErrorInfo among a failed call's details, as
 * `{reason, domain, metadata}`. Throws when there is not exactly one.
 */
export function errorInfo(error) {
  const status = rpcStatus(error);
  if (status === undefined) {
    throw new Error(`no grpc-status-details-bin trailer on ${describe(error)}`);
  }
  const found = status.details.filter((detail) => detail.type_url === ERROR_INFO_TYPE_URL);
  if (found.length !== 1) {
    const types = status.details.map((detail) => detail.type_url);
    throw new Error(`expected one google.rpc.ErrorInfo in the details of ${describe(error)}, found ${JSON.stringify(types)}`);
  }
  return ErrorInfo.toObject(ErrorInfo.decode(found[0].value), { defaults: true });
}

/** A failed call as `CODE_NAME: details`, for messages. */
export function describe(error) {
  return `${grpc.status[error.code] ?? error.code}: ${error.details}`;
}

export { grpc };
