'use strict';
// Gust's Node.js runtime.
//
// Talks to the Lambda Runtime API named by AWS_LAMBDA_RUNTIME_API, loads the handler named by
// _HANDLER with the resolution rules of Lambda's Node.js runtime (CommonJS, ES modules, nested
// handler paths), and runs one event at a time with Lambda's handler styles: async functions,
// promises, and callbacks (including callbackWaitsForEmptyEventLoop).

const http = require('http');
const path = require('path');
const fs = require('fs');
const util = require('util');
const { isUtf8 } = require('buffer');

const PREFIX = '/2018-06-01/runtime';

const address = process.env.AWS_LAMBDA_RUNTIME_API || '';
const colon = address.lastIndexOf(':');
const apiHost = address.slice(0, colon).replace(/^\[|\]$/g, '');
const apiPort = parseInt(address.slice(colon + 1), 10);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function call(method, urlPath, body, headers) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(body);
    const req = http.request(
      {
        host: apiHost,
        port: apiPort,
        path: urlPath,
        method,
        agent,
        headers: Object.assign(
          payload ? { 'Content-Length': payload.length } : {},
          headers || {},
        ),
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

// ---- errors -------------------------------------------------------------------------------

class RuntimeError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = `Runtime.${kind}`;
  }
}

function nodeJsExitError() {
  return new RuntimeError(
    'NodeJsExit',
    'The runtime detected that the Node.js event loop emptied before the async handler settled its promise. A promise that never resolves is the most common cause.',
  );
}

function toErrorPayload(error) {
  try {
    if (util.types.isNativeError(error) || (error && typeof error.stack === 'string' && typeof error.name === 'string')) {
      return {
        errorType: error.name,
        errorMessage: error.message,
        trace: String(error.stack).split('\n'),
      };
    }
    return { errorType: typeof error, errorMessage: String(error), trace: [] };
  } catch (_) {
    return { errorType: 'handled', errorMessage: 'the error could not be serialised', trace: [] };
  }
}

function serialise(value) {
  return JSON.stringify(value === undefined ? null : value);
}

// ---- logging ------------------------------------------------------------------------------

let currentRequestId = undefined;
let currentTenantId = undefined;
const LEVELS = { TRACE: 1, DEBUG: 2, INFO: 3, WARN: 4, ERROR: 5, FATAL: 6 };
// Read when the runtime starts serving its function (see main).
let jsonLogs = false;
let minLevel = LEVELS.TRACE;

function configureLogging() {
  jsonLogs = process.env.AWS_LAMBDA_LOG_FORMAT === 'JSON';
  minLevel = LEVELS[(process.env.AWS_LAMBDA_LOG_LEVEL || '').toUpperCase()] || LEVELS.TRACE;
}

function writeLog(level, args) {
  if (LEVELS[level] < minLevel) return;
  const time = new Date().toISOString();
  let line;
  if (jsonLogs) {
    const doc = { timestamp: time, level, requestId: currentRequestId };
    if (currentTenantId !== undefined) doc.tenantId = currentTenantId;
    doc.message = args.length === 1 && typeof args[0] !== 'object' ? args[0] : util.format(...args);
    const err = args.find((a) => a instanceof Error);
    if (err) {
      doc.errorType = err.name;
      doc.errorMessage = err.message;
      doc.stackTrace = String(err.stack).split('\n');
    }
    line = JSON.stringify(doc);
  } else {
    line = `${time}\t${currentRequestId}\t${level}\t${util.format(...args)}`;
  }
  process.stdout.write(line.replace(/\n/g, '\r') + '\n');
}

function patchConsole() {
  console.trace = (...a) => writeLog('TRACE', a);
  console.debug = (...a) => writeLog('DEBUG', a);
  console.info = (...a) => writeLog('INFO', a);
  console.log = (...a) => writeLog('INFO', a);
  console.warn = (...a) => writeLog('WARN', a);
  console.error = (...a) => writeLog('ERROR', a);
  console.fatal = (...a) => writeLog('FATAL', a);
}

function logError(label, error) {
  const payload = toErrorPayload(error);
  writeLog('ERROR', [`${label} \t${JSON.stringify(payload)}`]);
}

// ---- handler loading ----------------------------------------------------------------------

function isFile(p) {
  try {
    return fs.statSync(p).isFile();
  } catch (_) {
    return false;
  }
}

function nearestPackageIsModule(dir) {
  for (;;) {
    if (dir.endsWith('/node_modules')) return false;
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        return JSON.parse(fs.readFileSync(pj, 'utf8')).type === 'module';
      } catch (_) {
        return false;
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) return false;
    dir = parent;
  }
}

async function importFile(file) {
  const { pathToFileURL } = require('url');
  return import(pathToFileURL(file).href);
}

async function loadModule(taskRoot, moduleRoot, name) {
  const base = path.resolve(taskRoot, moduleRoot, name);
  if (isFile(base)) return require(base);
  if (isFile(base + '.js')) {
    if (nearestPackageIsModule(path.dirname(base + '.js'))) return importFile(base + '.js');
    return require(base + '.js');
  }
  if (isFile(base + '.mjs')) return importFile(base + '.mjs');
  if (isFile(base + '.cjs')) return require(base + '.cjs');
  // Not a file of the task: resolve it like Node would (for example a package in node_modules).
  return require(require.resolve(name, { paths: [taskRoot, path.resolve(taskRoot, moduleRoot)] }));
}

async function loadHandler(taskRoot, handlerString) {
  if (handlerString.includes('..')) {
    throw new RuntimeError(
      'MalformedHandlerName',
      `'${handlerString}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
    );
  }
  const slash = handlerString.lastIndexOf('/');
  const moduleRoot = handlerString.slice(0, slash + 1);
  const moduleAndPath = handlerString.slice(slash + 1);
  const match = /^([^.]*)\.(.*)$/.exec(moduleAndPath);
  if (!match) throw new RuntimeError('MalformedHandlerName', 'Bad handler');
  const [, moduleName, propertyPath] = match;

  let loaded;
  try {
    loaded = await loadModule(taskRoot, moduleRoot, moduleName);
  } catch (e) {
    if (e instanceof SyntaxError) throw new RuntimeError('UserCodeSyntaxError', String(e));
    if (e && (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_MODULE_NOT_FOUND')) {
      throw new RuntimeError('ImportModuleError', String(e));
    }
    throw e;
  }
  const fn = propertyPath.split('.').reduce((obj, key) => obj && obj[key], loaded);
  if (!fn) throw new RuntimeError('HandlerNotFound', `${handlerString} is undefined or not exported`);
  if (typeof fn !== 'function') throw new RuntimeError('HandlerNotFound', `${handlerString} is not a function`);
  return fn;
}

// ---- invocation ---------------------------------------------------------------------------

// Called when the event loop runs dry while an invocation is still open: that is how Lambda
// completes callback-style handlers that wait for an empty event loop, and how it notices an
// async handler whose promise can no longer settle.
let onEmptyLoop = null;
process.on('beforeExit', () => {
  const f = onEmptyLoop;
  onEmptyLoop = null;
  if (f) f();
});

function parseJsonHeader(value, what) {
  if (value === undefined) return undefined;
  try {
    // Node decodes header bytes as Latin-1; Gust sends UTF-8 JSON.
    return JSON.parse(Buffer.from(value, 'latin1').toString('utf8'));
  } catch (err) {
    throw new Error(`Cannot parse ${what} as json: ${err.toString()}`);
  }
}

function buildContext(headers) {
  const deadline = parseInt(headers['lambda-runtime-deadline-ms'], 10);
  return {
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    awsRequestId: headers['lambda-runtime-aws-request-id'],
    tenantId: headers['lambda-runtime-aws-tenant-id'],
    clientContext: parseJsonHeader(headers['lambda-runtime-client-context'], 'ClientContext'),
    identity: parseJsonHeader(headers['lambda-runtime-cognito-identity'], 'CognitoIdentity'),
    getRemainingTimeInMillis: () => deadline - Date.now(),
  };
}

function runHandler(handler, event, context) {
  const isAsync = handler.constructor && handler.constructor.name === 'AsyncFunction';
  return new Promise((resolve) => {
    let settled = false;
    const finish = (outcome) => {
      if (settled) return;
      settled = true;
      onEmptyLoop = null;
      resolve(outcome);
    };
    let waitForEmptyLoop = true;
    Object.defineProperty(context, 'callbackWaitsForEmptyEventLoop', {
      get: () => waitForEmptyLoop,
      set: (v) => {
        waitForEmptyLoop = v;
      },
      enumerable: true,
    });
    const done = (err, value) =>
      finish(err !== undefined && err !== null ? { error: err } : { value });
    context.done = done;
    context.succeed = (value) => done(null, value);
    context.fail = (err) => done(err === undefined || err === null ? 'handled' : err);
    const callback = (err, value) => {
      if (err !== undefined && err !== null) return finish({ error: err });
      if (waitForEmptyLoop) onEmptyLoop = () => setImmediate(() => finish({ value }));
      else finish({ value });
    };
    // If nothing completes the invocation before the loop empties: a plain function answers
    // null, an async one can never settle any more.
    onEmptyLoop = () => finish(isAsync ? { error: nodeJsExitError() } : { value: null });
    let result;
    try {
      result = handler(event, context, callback);
    } catch (err) {
      finish({ error: err });
      return;
    }
    if (result && typeof result.then === 'function') {
      result.then(
        (value) => finish({ value }),
        (err) => finish({ error: err === undefined || err === null ? new Error(String(err)) : err }),
      );
    }
  });
}

let invocationInFlight = null;

async function postError(requestId, error) {
  const payload = toErrorPayload(error);
  await call('POST', `${PREFIX}/invocation/${encodeURIComponent(requestId)}/error`, JSON.stringify(payload), {
    'Content-Type': 'application/json',
    'Lambda-Runtime-Function-Error-Type': payload.errorType,
  });
}

async function postInitError(error) {
  const payload = toErrorPayload(error);
  await call('POST', `${PREFIX}/init/error`, JSON.stringify(payload), {
    'Content-Type': 'application/json',
    'Lambda-Runtime-Function-Error-Type': payload.errorType,
  });
}

async function fatal(label, error) {
  logError(label, error);
  try {
    if (invocationInFlight !== null) await postError(invocationInFlight, error);
    else await postInitError(error);
  } finally {
    process.exit(invocationInFlight !== null ? 129 : 128);
  }
}

process.on('uncaughtException', (error) => {
  fatal('Uncaught Exception', error);
});
process.on('unhandledRejection', (reason) => {
  const error = new RuntimeError('UnhandledPromiseRejection', String(reason));
  error.reason = reason;
  fatal('Unhandled Promise Rejection', error);
});

async function serve(handler) {
  for (;;) {
    const next = await call('GET', `${PREFIX}/invocation/next`);
    if (next.status !== 200) throw new Error(`Runtime API /next answered ${next.status}`);
    const headers = next.headers;
    const requestId = headers['lambda-runtime-aws-request-id'];
    currentRequestId = requestId;
    currentTenantId = headers['lambda-runtime-aws-tenant-id'];
    invocationInFlight = requestId;
    if (headers['lambda-runtime-trace-id']) process.env._X_AMZN_TRACE_ID = headers['lambda-runtime-trace-id'];
    else delete process.env._X_AMZN_TRACE_ID;

    let outcome;
    try {
      const context = buildContext(headers);
      const text = next.body.toString('utf8');
      const event = text.length === 0 ? {} : JSON.parse(text);
      outcome = await runHandler(handler, event, context);
    } catch (err) {
      outcome = { error: err };
    }

    if ('error' in outcome) {
      logError('Invoke Error', outcome.error);
      await postError(requestId, outcome.error);
    } else {
      let body;
      try {
        body = serialise(outcome.value);
      } catch (err) {
        const error = new Error('Unable to stringify response body');
        logError('Invoke Error', error);
        await postError(requestId, error);
        invocationInFlight = null;
        continue;
      }
      await call('POST', `${PREFIX}/invocation/${encodeURIComponent(requestId)}/response`, body, {
        'Content-Type': 'application/json',
      });
    }
    invocationInFlight = null;
  }
}

// ---- Gust's control protocol (PROTOCOL.md) ------------------------------------------------

// The version this runtime speaks, stated in a header on every control call.
const CONTROL_VERSION = 'gust-control/1';
const CONTROL_HEADER = 'Gust-Protocol';

// A control message from Gust this runtime cannot take, or Gust's refusal of its call.
class ControlError extends Error {}

// The kind (one of `kinds`) and [name, value] fields of a control message: NUL-ended fields,
// the version first, then the kind, then name=value.
function decodeControl(body, kinds) {
  // isUtf8 checks without a TextDecoder, whose first use costs about 0.1 ms on the cold
  // start's path.
  if (!isUtf8(body)) throw new ControlError("Gust's control message is not UTF-8");
  const text = body.toString('utf8');
  const parts = text.split('\0');
  if (parts.length < 3 || parts[parts.length - 1] !== '') {
    throw new ControlError(`not a Gust control message: ${JSON.stringify(text.slice(0, 64))}`);
  }
  const [version, kind] = parts;
  if (version !== CONTROL_VERSION) {
    throw new ControlError(
      `Gust sent a message of protocol ${JSON.stringify(version.slice(0, 64))}; this runtime speaks ${CONTROL_VERSION}`,
    );
  }
  if (!kinds.includes(kind)) {
    throw new ControlError(`Gust sent a ${JSON.stringify(kind.slice(0, 64))} message where ${kinds.join(' or ')} was expected`);
  }
  const fields = parts.slice(2, -1).map((part) => {
    const eq = part.indexOf('=');
    if (eq < 0) throw new ControlError(`malformed field ${JSON.stringify(part.slice(0, 64))} in Gust's ${kind} message`);
    return [part.slice(0, eq), part.slice(eq + 1)];
  });
  return { kind, fields };
}

async function controlCall(method, urlPath) {
  const res = await call(method, urlPath, undefined, { [CONTROL_HEADER]: CONTROL_VERSION });
  if (res.status === 400) {
    let reason = res.body.toString('utf8');
    try {
      reason = JSON.parse(reason).errorMessage;
    } catch (_) {}
    throw new ControlError(`the Runtime API refused ${urlPath}: ${reason}`);
  }
  return res;
}

// Gust started this runtime ahead of demand, before its function was known: wait for the
// function's environment, then carry on exactly as a runtime started with it. (Gust starts
// ahead only functions whose variables Node.js does not read at start-up.)
async function adoptEnvironment() {
  const res = await controlCall('GET', `${PREFIX}/gust/standby`);
  if (res.status !== 200) throw new Error(`the Runtime API ended the standby (${res.status})`);
  // The program and arguments of an adoption are this one's: only the stand-in execs them.
  const { fields } = decodeControl(res.body, ['adopt']);
  const environment = {};
  for (const [name, value] of fields) {
    if (name !== 'env') continue;
    const eq = value.indexOf('=');
    if (eq < 1) throw new ControlError("malformed variable in Gust's message");
    environment[value.slice(0, eq)] = value.slice(eq + 1);
  }
  for (const key of Object.keys(process.env)) delete process.env[key];
  Object.assign(process.env, environment);
  process.chdir(process.env.LAMBDA_TASK_ROOT || '/var/task');
}

async function main() {
  if (process.env._GUST_STANDBY === '1') await adoptEnvironment();
  configureLogging();
  patchConsole();
  const taskRoot = process.env.LAMBDA_TASK_ROOT || process.cwd();
  let handler;
  try {
    handler = await loadHandler(taskRoot, process.env._HANDLER || '');
  } catch (err) {
    logError('Init Error', err);
    await postInitError(err);
    process.exit(1);
  }
  await serve(handler);
}

main().catch((err) => {
  const detail = err instanceof ControlError ? err.message : err && err.stack ? err.stack : err;
  process.stderr.write(`gust runtime: ${detail}\n`);
  process.exit(1);
});
