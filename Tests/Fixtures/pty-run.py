#!/usr/bin/env python3
"""Runs a command on a pseudo-terminal of COLUMNS columns and records everything it prints.

    pty-run.py COLUMNS OUTFILE COMMAND [ARG...]

stdin, stdout and stderr of COMMAND are the pty (so it sees a terminal of that width); the
bytes it writes go to OUTFILE as they are (the pty's output processing turns \\n into \\r\\n).
Exits with COMMAND's exit status (128 + signal if it was killed). For the progress tests.

With PTY_INTERRUPT_AFTER=TEXT in the environment, Ctrl-C is typed (\\x03 on the terminal, so
the line discipline sends SIGINT) once TEXT has appeared in the output.
"""
import fcntl
import os
import pty
import signal
import struct
import sys
import termios

cols = int(sys.argv[1])
out_path = sys.argv[2]
argv = sys.argv[3:]

pid, master = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    # The test runner blocks signals its children inherit; a terminal's Ctrl-C must work.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)
    os.execvp(argv[0], argv)

interrupt = os.environ.get("PTY_INTERRUPT_AFTER", "").encode()
seen = b""
with open(out_path, "wb") as out:
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        out.write(data)
        if interrupt:
            seen = (seen + data)[-65536:]
            if interrupt in seen:
                os.write(master, b"\x03")
                interrupt = b""
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
