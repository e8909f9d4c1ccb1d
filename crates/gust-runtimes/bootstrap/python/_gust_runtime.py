"""Gust's Python runtime.

Talks to the Lambda Runtime API named by AWS_LAMBDA_RUNTIME_API, loads the handler named by
_HANDLER the way Lambda's Python runtime does, and runs one event at a time. Start-up cost is
what users feel on a cold start, so nothing heavier than `_socket` and `_json` is imported before
the first event: the HTTP client is a few lines over `_socket`, JSON goes straight through the C
codec that `json` itself uses (importing `json` costs more than starting the interpreter, for
`re` and `enum`; it is imported only to report a malformed document the way `json` does),
`logging` is configured only when the function imports it, and `traceback` is imported only to
report an error.
"""

import _socket
import os
import sys
import time

RUNTIME_PREFIX = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
# Gust's control protocol with its bootstraps (PROTOCOL.md): the version this runtime speaks, and
# the header that states it on every control call.
CONTROL_VERSION = "gust-control/1"
CONTROL_HEADER = "Gust-Protocol"
# Lambda's log sink joins the lines of one error record with carriage returns so that the record
# stays one log event, and indents with no-break spaces so that log viewers keep the indentation.
LINE_JOIN = "\r"
INDENT = "\u00a0"

_request_id = ""
_tenant_id = None


class StaleConnection(Exception):
    """The server closed an idle keep-alive connection before we reused it."""


class RuntimeApi:
    """An HTTP/1.1 client on one keep-alive connection to the Runtime API."""

    def __init__(self, address):
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError("AWS_LAMBDA_RUNTIME_API must be host:port, got %r" % address)
        host = host.strip("[]")
        self.host_header = address
        self.address = (host, int(port))
        self.family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
        self.sock = None
        self.pending = b""

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.pending = b""

    def request(self, method, path, body=b"", headers=None):
        lines = [
            "%s %s HTTP/1.1" % (method, path),
            "Host: " + self.host_header,
            "Content-Length: %d" % len(body),
        ]
        if headers:
            for name, value in headers.items():
                lines.append("%s: %s" % (name, value))
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body
        while True:
            reused = self.sock is not None
            if not reused:
                sock = _socket.socket(self.family, _socket.SOCK_STREAM)
                sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                sock.connect(self.address)
                self.sock = sock
            try:
                self.sock.sendall(data)
                return self._read_response()
            except (StaleConnection, BrokenPipeError, ConnectionResetError):
                self.close()
                # Only a kept-alive connection the server had already closed is worth a second
                # try; a fresh connection failing means the Runtime API is gone.
                if not reused:
                    raise ConnectionError("the Runtime API closed the connection")

    def _read_response(self):
        buf = bytearray(self.pending)
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            chunk = self.sock.recv(65536)
            if not chunk:
                if not buf:
                    raise StaleConnection()
                raise ConnectionError("the Runtime API closed the connection mid-response")
            buf += chunk
        # Gust sends header values (client context JSON) as UTF-8.
        lines = bytes(buf[:end]).decode("utf-8", "replace").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        start = end + 4
        while len(buf) - start < length:
            chunk = self.sock.recv(max(65536, length - (len(buf) - start)))
            if not chunk:
                raise ConnectionError("the Runtime API closed the connection mid-response")
            buf += chunk
        body = bytes(buf[start : start + length])
        self.pending = bytes(buf[start + length :])
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body

    def next(self):
        status, headers, body = self.request("GET", RUNTIME_PREFIX + "/invocation/next")
        if status != 200:
            raise RuntimeError("Runtime API /next answered %d: %r" % (status, body[:200]))
        return headers, body

    def respond(self, request_id, payload, content_type):
        path = "%s/invocation/%s/response" % (RUNTIME_PREFIX, request_id)
        self.request("POST", path, payload, {"Content-Type": content_type})

    def error(self, request_id, error):
        path = "%s/invocation/%s/error" % (RUNTIME_PREFIX, request_id)
        headers = {"Content-Type": "application/json", ERROR_TYPE_HEADER: error["errorType"]}
        self.request("POST", path, to_json(error).encode("utf-8"), headers)

    def init_error(self, error):
        headers = {"Content-Type": "application/json", ERROR_TYPE_HEADER: error["errorType"]}
        self.request("POST", RUNTIME_PREFIX + "/init/error", to_json(error).encode("utf-8"), headers)


class Fault(Exception):
    """An error the runtime itself diagnoses, reported with a `Runtime.*` type."""

    def __init__(self, error_type, message, trace=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace


def make_error(message, error_type, stack_trace, request_id=""):
    return {
        "errorMessage": message or "",
        "errorType": error_type or "",
        "requestId": request_id or "",
        "stackTrace": stack_trace or [],
    }


def error_from_exception(exc_info, request_id=""):
    import traceback

    etype, value, tb = exc_info
    frames = [(f.filename, f.lineno, f.name, f.line) for f in traceback.extract_tb(tb)]
    # Drop the runtime's own frames: the user's code starts at the first frame outside this file.
    for i, frame in enumerate(frames):
        if frame[0] != __file__:
            frames = frames[i:]
            break
    else:
        frames = []
    return make_error(str(value), etype.__name__, traceback.format_list(frames), request_id)


def log_error(error):
    if os.environ.get("AWS_LAMBDA_LOG_FORMAT") == "JSON":
        record = {"timestamp": iso_now(), "log_level": "ERROR"}
        record.update(error)
        sys.stdout.write(to_json(record) + "\n")
        return
    head = "[ERROR]"
    if error.get("errorType"):
        head += " " + error["errorType"]
    if error.get("errorMessage"):
        head += (":" if error.get("errorType") else "") + " " + error["errorMessage"]
    lines = [head]
    trace = error.get("stackTrace")
    if trace is not None:
        lines.append("Traceback (most recent call last):")
        for element in trace:
            for line in element.splitlines() or [""]:
                stripped = line.lstrip(" ")
                lines.append(INDENT * (len(line) - len(stripped)) + stripped)
    sys.stdout.write(LINE_JOIN.join(lines) + "\n")


def iso_now():
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%03dZ" % (int(now * 1000) % 1000)


def _json_default(obj):
    if type(obj).__name__ == "Decimal":
        if obj.is_nan():
            return float("nan")
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


# Lambda's newer Python runtimes keep non-ASCII text as it is; older ones escape it.
_ENSURE_ASCII = os.environ.get("AWS_EXECUTION_ENV", "") in (
    "AWS_Lambda_python3.8",
    "AWS_Lambda_python3.9",
    "AWS_Lambda_python3.10",
    "AWS_Lambda_python3.11",
)


try:
    import _json

    class _DecodeContext:
        """What `json`'s C scanner reads from its decoder: `json.loads`' defaults."""

        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = {
            "-Infinity": float("-inf"),
            "Infinity": float("inf"),
            "NaN": float("nan"),
        }.__getitem__

    _scan_once = _json.make_scanner(_DecodeContext())
    _encode_string = _json.encode_basestring_ascii if _ENSURE_ASCII else _json.encode_basestring
    _make_encoder = _json.make_encoder
except (ImportError, AttributeError, TypeError):
    _scan_once = None

_JSON_SPACE = " \t\n\r"


def to_json(obj):
    if _scan_once is not None:
        try:
            # The arguments `json.dumps` gives the C encoder for these options.
            encode = _make_encoder(
                {}, _json_default, _encode_string, None, ": ", ", ", False, False, True
            )
            return "".join(encode(obj, 0))
        except Exception:
            pass  # `json` reports the failure in its own words below.
    import json

    return json.dumps(obj, default=_json_default, ensure_ascii=_ENSURE_ASCII, allow_nan=True)


def from_json(data):
    if _scan_once is not None:
        try:
            text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
            if not text.startswith("\ufeff"):
                start = len(text) - len(text.lstrip(_JSON_SPACE))
                value, end = _scan_once(text, start)
                if not text[end:].strip(_JSON_SPACE):
                    return value
        except Exception:
            pass  # `json` decodes other encodings, or reports the error in its own words.
    import json

    return json.loads(data)


class ControlError(Exception):
    """A control message from Gust this runtime cannot take (another version, or malformed), or
    Gust's refusal of one of its control calls."""


def control_encode(kind, fields=()):
    """A control message: NUL-ended fields, the version first, then the kind, then name=value."""
    parts = [CONTROL_VERSION, kind] + ["%s=%s" % field for field in fields]
    return ("\0".join(parts) + "\0").encode("utf-8")


def control_decode(data, kinds):
    """The kind (one of `kinds`) and the (name, value) fields of a control message from Gust."""
    try:
        parts = data.decode("utf-8").split("\0")
    except UnicodeDecodeError:
        raise ControlError("Gust's control message is not UTF-8")
    if len(parts) < 3 or parts[-1]:
        raise ControlError("not a Gust control message: %r" % data[:64])
    if parts[0] != CONTROL_VERSION:
        raise ControlError(
            "Gust sent a message of protocol %r; this runtime speaks %s"
            % (parts[0][:64], CONTROL_VERSION)
        )
    if parts[1] not in kinds:
        raise ControlError(
            "Gust sent a %r message where %s was expected" % (parts[1][:64], " or ".join(kinds))
        )
    fields = []
    for part in parts[2:-1]:
        name, eq, value = part.partition("=")
        if not eq:
            raise ControlError("malformed field %r in Gust's %s message" % (part[:64], parts[1]))
        fields.append((name, value))
    return parts[1], fields


def control_environment(fields):
    """The variables of a message's env=NAME=value fields."""
    environment = {}
    for name, value in fields:
        if name == "env":
            key, eq, value = value.partition("=")
            if not key or not eq:
                raise ControlError("malformed variable in Gust's message")
            environment[key] = value
    return environment


def control_call(api, method, path, body=b""):
    """A control call to the Runtime API: states the protocol version; returns (status, body),
    and raises ControlError when Gust refuses the call (with its reason)."""
    status, _, answer = api.request(method, path, body, {CONTROL_HEADER: CONTROL_VERSION})
    if status == 400:
        try:
            reason = from_json(answer)["errorMessage"]
        except Exception:
            reason = answer[:200]
        raise ControlError("the Runtime API refused %s: %s" % (path, reason))
    return status, answer


def load_handler(spec):
    try:
        module_name, function_name = spec.rsplit(".", 1)
    except ValueError as e:
        raise Fault("Runtime.MalformedHandlerName", "Bad handler '%s': %s" % (spec, e))
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise Fault(
            "Runtime.BuiltInModuleConflict",
            "Cannot use built-in module %s as a handler module" % module_name,
        )
    import importlib

    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as e:
        raise Fault(
            "Runtime.ImportModuleError", "Unable to import module '%s': %s" % (module_name, e)
        )
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise Fault(
            "Runtime.UserCodeSyntaxError",
            "Syntax error in module '%s': %s" % (module_name, e),
            trace,
        )
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise Fault(
            "Runtime.HandlerNotFound",
            "Handler '%s' missing on module '%s'" % (function_name, module_name),
        )


class _Fields:
    """A plain attribute bag with the fields Lambda's context objects expose (None if absent)."""

    _fields = ()

    def __init__(self, values):
        for name in self._fields:
            setattr(self, name, values.get(name) if values else None)

    def __repr__(self):
        inner = ",".join("%s=%s" % (n, getattr(self, n)) for n in self._fields)
        return "%s([%s])" % (type(self).__name__, inner)


class Client(_Fields):
    _fields = (
        "installation_id",
        "app_title",
        "app_version_name",
        "app_version_code",
        "app_package_name",
    )


class ClientContext(_Fields):
    _fields = ("custom", "env", "client")


class CognitoIdentity(_Fields):
    _fields = ("cognito_identity_id", "cognito_identity_pool_id")


def _parse_json_header(value, what):
    try:
        return from_json(value)
    except Exception as e:
        raise Fault("Runtime.LambdaContextUnmarshalError", "Unable to parse %s JSON: %s" % (what, e))


class LambdaContext:
    def __init__(self, headers):
        env = os.environ
        self.aws_request_id = headers.get("lambda-runtime-aws-request-id", "")
        self.invoked_function_arn = headers.get("lambda-runtime-invoked-function-arn")
        self.tenant_id = headers.get("lambda-runtime-aws-tenant-id")
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self._deadline_ms = int(headers.get("lambda-runtime-deadline-ms", "0") or 0)
        self.client_context = None
        raw = headers.get("lambda-runtime-client-context")
        if raw:
            doc = _parse_json_header(raw, "Client Context")
            self.client_context = ClientContext(doc)
            self.client_context.client = (
                Client(self.client_context.client) if self.client_context.client is not None else None
            )
        identity = {}
        raw = headers.get("lambda-runtime-cognito-identity")
        if raw:
            doc = _parse_json_header(raw, "Cognito Identity")
            identity = {
                "cognito_identity_id": doc.get("cognitoIdentityId"),
                "cognito_identity_pool_id": doc.get("cognitoIdentityPoolId"),
            }
        self.identity = CognitoIdentity(identity)

    def get_remaining_time_in_millis(self):
        remaining = self._deadline_ms - int(time.time() * 1000)
        return remaining if remaining > 0 else 0

    def log(self, msg):
        sys.stdout.write(str(msg))

    def __repr__(self):
        names = (
            "aws_request_id",
            "log_group_name",
            "log_stream_name",
            "function_name",
            "memory_limit_in_mb",
            "function_version",
            "invoked_function_arn",
            "client_context",
            "identity",
            "tenant_id",
        )
        return "LambdaContext([%s])" % ",".join("%s=%s" % (n, getattr(self, n)) for n in names)


def configure_logging(logging):
    """Installs Lambda's log format on the root logger (called when `logging` is imported)."""

    class RequestIdFilter(logging.Filter):
        def filter(self, record):
            record.aws_request_id = _request_id
            record.tenant_id = _tenant_id
            return True

    class JsonFormatter(logging.Formatter):
        def format(self, record):
            doc = {
                "timestamp": iso_now(),
                "level": record.levelname,
                "message": record.getMessage(),
                "logger": record.name,
                "requestId": getattr(record, "aws_request_id", ""),
            }
            if record.exc_info:
                etype, value, _ = record.exc_info
                doc["errorType"] = etype.__name__
                doc["errorMessage"] = str(value)
                doc["stackTrace"] = self.formatException(record.exc_info).splitlines()
            return to_json(doc) + "\n"

    class StdoutHandler(logging.Handler):
        def emit(self, record):
            try:
                sys.stdout.write(self.format(record))
            except Exception:
                self.handleError(record)

    logging.Formatter.converter = time.gmtime
    handler = StdoutHandler()
    if os.environ.get("AWS_LAMBDA_LOG_FORMAT") == "JSON":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
                "%Y-%m-%dT%H:%M:%S",
            )
        )
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level in ("DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL", "TRACE"):
        root.setLevel({"WARN": "WARNING", "FATAL": "CRITICAL", "TRACE": "DEBUG"}.get(level, level))


class _ConfigureLoggingOnImport:
    """A meta-path hook that configures `logging` right after the function first imports it."""

    def find_spec(self, name, path=None, target=None):
        if name != "logging":
            return None
        sys.meta_path.remove(self)
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        inner = spec.loader

        class Loader:
            def create_module(self, spec):
                return inner.create_module(spec)

            def exec_module(self, module):
                inner.exec_module(module)
                configure_logging(module)

        spec.loader = Loader()
        return spec


def decode_event(body, content_type):
    if content_type and content_type != "application/json":
        return body
    if not body:
        return {}
    try:
        return from_json(body)
    except Exception as e:
        raise Fault("Runtime.UnmarshalError", "Unable to unmarshal input: %s" % e)


def encode_result(result):
    if isinstance(result, bytes):
        return result, "application/unknown"
    try:
        return to_json(result).encode("utf-8"), "application/json"
    except Exception as e:
        raise Fault("Runtime.MarshalError", "Unable to marshal response: %s" % e)


def flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def handle(api, handler, headers, body):
    global _request_id, _tenant_id
    request_id = headers.get("lambda-runtime-aws-request-id", "")
    _request_id = request_id
    _tenant_id = headers.get("lambda-runtime-aws-tenant-id")
    trace_id = headers.get("lambda-runtime-trace-id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)

    error = None
    try:
        context = LambdaContext(headers)
        event = decode_event(body, headers.get("content-type"))
        payload, content_type = encode_result(handler(event, context))
    except Fault as f:
        error = make_error(f.message, f.error_type, f.trace, request_id)
    except Exception:
        error = error_from_exception(sys.exc_info(), request_id)

    if error is not None:
        log_error(error)
        flush()
        api.error(request_id, error)
    else:
        flush()
        api.respond(request_id, payload, content_type)


def initialise():
    """Loads the function's handler, as every runtime start does. On an init error it reports
    it and exits, as Lambda's runtime does. Returns the Runtime API client and the handler."""
    if "logging" in sys.modules:
        configure_logging(sys.modules["logging"])
    else:
        sys.meta_path.insert(0, _ConfigureLoggingOnImport())

    api = RuntimeApi(os.environ["AWS_LAMBDA_RUNTIME_API"])
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    # The runtime's own directory must not shadow the function's modules; the libraries
    # Lambda's Python runtime ships (snapshot_restore_py) come after the function's.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    version = "%d.%d" % sys.version_info[:2]
    extra = ["/opt/python/lib/python%s/site-packages" % version, "/opt/python"]
    sys.path[0:0] = [task_root] + [p for p in extra if os.path.isdir(p)]
    sys.path.append(os.path.join(here, "lib"))

    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except Fault as f:
        error = make_error(f.message, f.error_type, f.trace)
    except Exception:
        error = error_from_exception(sys.exc_info())
    else:
        error = None
    if error is not None:
        log_error(error)
        flush()
        api.init_error(error)
        sys.exit(1)
    return api, handler


def serve(api, handler):
    while True:
        headers, body = api.next()
        handle(api, handler, headers, body)


def main():
    serve(*initialise())


def adopt_environment():
    """Gust started this runtime ahead of demand, before its function was known: wait for the
    function's environment, then carry on exactly as a runtime started with it. (Gust starts
    ahead only functions whose variables the interpreter does not read at start-up.)"""
    api = RuntimeApi(os.environ["AWS_LAMBDA_RUNTIME_API"])
    status, body = control_call(api, "GET", RUNTIME_PREFIX + "/gust/standby")
    api.close()
    if status != 200:
        raise ConnectionError("the Runtime API ended the standby (%d)" % status)
    # The program and arguments of an adoption are this one's: only the stand-in execs them.
    _, fields = control_decode(body, ("adopt",))
    environment = control_environment(fields)
    os.environ.clear()
    os.environ.update(environment)
    time.tzset()
    os.chdir(os.environ.get("LAMBDA_TASK_ROOT") or "/var/task")


def forking_module():
    """_gust_snapshot, imported from this runtime's directory (which functions' imports never
    search)."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    try:
        import _gust_snapshot
    finally:
        sys.path.remove(here)
    return _gust_snapshot


def run_snapshot():
    """SnapStart: this process is its function version's snapshot. It runs the function's init
    once, then forks every environment of the version, each of which confines itself in
    namespaces of its own and carries on from the initialised state (see _gust_snapshot.py)."""
    os.environ.pop("_GUST_SNAPSHOT", None)
    api, handler = initialise()
    # The snapshot process uses this module's helpers; handed over rather than imported there.
    forking_module().run(api, handler, serve, sys.modules[__name__])


def run_template():
    """A runtime template: this process forks every environment of its runtime, each of which
    confines itself in namespaces of its own and loads its function (see _gust_snapshot.py)."""
    os.environ.pop("_GUST_TEMPLATE", None)
    api = RuntimeApi(os.environ["AWS_LAMBDA_RUNTIME_API"])
    # What a fresh start has loaded when it initialises its function: the forks forget the rest.
    loaded = set(sys.modules)
    forking_module().run_template(api, sys.modules[__name__], loaded)


def start():
    """Runs this environment's runtime: a SnapStart snapshot, a runtime template, a runtime
    started ahead waiting to be adopted, or one started for its function."""
    try:
        if os.environ.get("_GUST_SNAPSHOT") == "1":
            run_snapshot()
        if os.environ.get("_GUST_TEMPLATE") == "1":
            run_template()
        if os.environ.get("_GUST_STANDBY") == "1":
            adopt_environment()
        main()
    except ControlError as e:
        sys.stderr.write("gust runtime: %s\n" % e)
        sys.exit(1)
    except (ConnectionError, OSError) as e:
        # The platform went away (environment retired or Gust stopped): nothing left to serve.
        sys.stderr.write("gust runtime: lost the Runtime API: %s\n" % e)
        sys.exit(1)
