"""A loopback stand-in for a Google API that answers every call with one error."""

import contextlib
import http.server
import json
import threading


class _Stub(http.server.BaseHTTPRequestHandler):
  """Answers every request with the server's status, as Cloud Storage would."""

  def _answer(self):
    length = int(self.headers.get("Content-Length") or 0)
    if length:
      self.rfile.read(length)
    self.server.requests += 1
    status, message = self.server.answer
    body = json.dumps({"error": {"code": status, "message": message,
                                 "errors": [{"message": message}]}}).encode()
    self.send_response(status)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    self.wfile.write(body)

  do_GET = do_POST = do_PUT = do_DELETE = _answer

  def log_message(self, *args):
    del args


class _StubServer(http.server.ThreadingHTTPServer):
  answer = (500, "")  # (status, message) of every answer
  requests = 0


@contextlib.contextmanager
def status_server(status: int, message: str):
  """A loopback HTTP server answering every request with `status`, as a
  Google API answers an error; `.requests` counts them."""
  server = _StubServer(("127.0.0.1", 0), _Stub)
  server.answer = (status, message)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield server
  finally:
    server.shutdown()
    server.server_close()
