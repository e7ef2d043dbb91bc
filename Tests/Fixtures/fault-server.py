#!/usr/bin/env python3
"""A small HTTP server that misbehaves on demand, for the download tests (127.0.0.1 only).

usage: fault-server.py ROOT LOGFILE
Binds 127.0.0.1 on a free port, prints the port on stdout, serves files under ROOT.
The first path component picks the behaviour for the rest of the path:
  /ok/PATH        the file (Range requests answered with 206)
  /404/PATH       404 Not Found
  /500/PATH       500 Internal Server Error
  /wrong/PATH     200 with the right length but wrong bytes
  /long/PATH      200 with the file plus extra bytes
  /truncate/PATH  Content-Length of the whole file, then half of it, then the connection closes
  /truncate-once/PATH  like /truncate the first time a path is asked for, then like /ok
  /stall/PATH     accepts the request, never answers (until the client gives up)
  /halfstall/PATH sends the headers and half the body, then nothing more
  /redirect/PORT/PATH  302 to http://127.0.0.1:PORT/PATH (a mirror redirector)
  /reset/PATH     resets the connection (RST) without answering
  /norange/PATH   the file, ignoring Range headers (always 200 with everything)
  /shortcl/PATH   200 whose Content-Length is 10 bytes short of the body it sends (spoils a
                  kept-alive connection)
  /endless/PATH   200 without Content-Length, then bytes until the client gives up
  /gate/N/PATH    like /ok, but every answer is held until N distinct paths have been asked
                  for through /gate (a barrier; after 20 s it opens anyway); each answer is
                  logged as "gate-released /PATH K", K the distinct paths asked for by then
Every request is appended to LOGFILE as "MODE PATH RANGE" (RANGE is "-" when absent).
"""
import os
import socket
import struct
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

root = os.path.abspath(sys.argv[1])
logfile = sys.argv[2]
log_lock = threading.Lock()
seen_lock = threading.Lock()
seen = set()
gate = threading.Condition()
gate_paths = set()
gate_open = False
GATE_TIMEOUT = 20


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        parts = path.lstrip("/").split("/", 1)
        mode = parts[0]
        rel = parts[1] if len(parts) > 1 else ""
        rng = self.headers.get("Range") or "-"
        with log_lock, open(logfile, "a") as f:
            f.write(f"{mode} /{rel} {rng}\n")
        if mode == "redirect":
            port, _, target = rel.partition("/")
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{int(port)}/" + urllib.parse.quote(target))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "gate":
            n, _, rel = rel.partition("/")
            self.pass_gate(int(n), rel)
            mode = "ok"
        if mode == "endless":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            chunk = b"[Image]\n" * 8192
            try:
                while True:
                    self.wfile.write(chunk)
            except OSError:
                pass
            self.close_connection = True
            return
        full = os.path.normpath(os.path.join(root, rel))
        if not full.startswith(root + os.sep) or not os.path.isfile(full):
            return self.simple(404)
        with open(full, "rb") as f:
            data = f.read()
        if mode == "404":
            return self.simple(404)
        if mode == "500":
            return self.simple(500)
        if mode == "stall":
            # Hold the connection open without a byte until the client closes it.
            try:
                while self.connection.recv(1):
                    pass
            except OSError:
                pass
            self.close_connection = True
            return
        if mode == "halfstall":
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            try:
                while self.connection.recv(1):
                    pass
            except OSError:
                pass
            self.close_connection = True
            return
        if mode == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if mode == "shortcl":
            self.send_response(200)
            self.send_header("Content-Length", str(max(0, len(data) - 10)))
            self.end_headers()
            self.wfile.write(data)
            return
        if mode == "wrong":
            return self.body(bytes((b ^ 0x5A) for b in data))
        if mode == "long":
            return self.body(data + b"extra bytes that do not belong to the part")
        if mode == "truncate" or (mode == "truncate-once" and self.first_time(rel)):
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if mode in ("ok", "truncate-once", "norange"):
            if rng != "-" and mode != "norange" and rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[6:-1])
                if start >= len(data):
                    return self.simple(416)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])
                return
            return self.body(data)
        return self.simple(404)

    def pass_gate(self, n, rel):
        global gate_open
        with gate:
            gate_paths.add(rel)
            gate.notify_all()
            gate.wait_for(lambda: gate_open or len(gate_paths) >= n, timeout=GATE_TIMEOUT)
            gate_open = True
            count = len(gate_paths)
        with log_lock, open(logfile, "a") as f:
            f.write(f"gate-released /{rel} {count}\n")

    def first_time(self, rel):
        with seen_lock:
            if rel in seen:
                return False
            seen.add(rel)
            return True

    def body(self, data):
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def simple(self, code):
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
