#!/usr/bin/env python3
"""Waits until a STUN server answers on 127.0.0.1:PORT (UDP).

usage: stun_ping.py PORT [TIMEOUT_S=10] [PID]
Sends a 20-byte Binding request every 200 ms and exits 0 on the first reply carrying its transaction ID (any class:
a 401 also proves the server is up), 1 on timeout, 2 when PID (the server's process) is gone. Loopback only.
"""
import os
import socket
import sys
import time

port = int(sys.argv[1])
deadline = time.monotonic() + (float(sys.argv[2]) if len(sys.argv) > 2 else 10.0)
pid = int(sys.argv[3]) if len(sys.argv) > 3 else None
tid = os.urandom(12)
request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + tid
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(0.2)
while time.monotonic() < deadline:
    if pid is not None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            sys.exit(2)
    try:
        sock.sendto(request, ("127.0.0.1", port))
        data, _ = sock.recvfrom(2048)
        if len(data) >= 20 and data[4:8] == request[4:8] and data[8:20] == tid:
            sys.exit(0)
    except socket.timeout:
        pass
    except OSError:
        time.sleep(0.2)
sys.exit(1)
