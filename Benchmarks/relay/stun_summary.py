#!/usr/bin/env python3
"""Summarises the STUN/TURN messages in a pcap (tcpdump -i lo -w FILE udp port PORT) of one server port.

usage: stun_summary.py FILE.pcap SERVER_PORT [-v]
Prints each distinct message shape once with its count: direction (C>S to the server, S>C from it), method and
class, and its attributes in order, with the values that matter for interop (LIFETIME, EVEN-PORT's R bit,
REQUESTED-ADDRESS-FAMILY, USERNAME, REALM, ERROR-CODE, CHANNEL-NUMBER, addresses). ChannelData is counted by
length. Relayed/mapped ports and channel numbers are left out of the grouping (the channel numbers seen are
listed at the end); --exact keeps them. -v prints every message with its time and ports instead.
Reads classic pcap (Ethernet or loopback).
"""
import collections
import struct
import sys

ATTRS = {
    0x0001: "MAPPED-ADDRESS", 0x0003: "CHANGE-REQUEST", 0x0006: "USERNAME", 0x0008: "MESSAGE-INTEGRITY",
    0x0009: "ERROR-CODE", 0x000A: "UNKNOWN-ATTRIBUTES", 0x000C: "CHANNEL-NUMBER", 0x000D: "LIFETIME",
    0x0010: "BANDWIDTH", 0x0012: "XOR-PEER-ADDRESS", 0x0013: "DATA", 0x0014: "REALM", 0x0015: "NONCE",
    0x0016: "XOR-RELAYED-ADDRESS", 0x0017: "REQUESTED-ADDRESS-FAMILY", 0x0018: "EVEN-PORT",
    0x0019: "REQUESTED-TRANSPORT", 0x001A: "DONT-FRAGMENT", 0x001C: "MESSAGE-INTEGRITY-SHA256",
    0x001D: "PASSWORD-ALGORITHM", 0x001E: "USERHASH", 0x0020: "XOR-MAPPED-ADDRESS", 0x0022: "RESERVATION-TOKEN",
    0x0024: "PRIORITY", 0x0025: "USE-CANDIDATE", 0x8000: "ADDITIONAL-ADDRESS-FAMILY", 0x8001: "ADDRESS-ERROR-CODE",
    0x8002: "PASSWORD-ALGORITHMS", 0x8003: "ALTERNATE-DOMAIN", 0x8004: "ICMP", 0x8010: "BANDWIDTH(old)",
    0x8022: "SOFTWARE", 0x8023: "ALTERNATE-SERVER", 0x8027: "CACHE-TIMEOUT", 0x8028: "FINGERPRINT",
    0x8029: "ICE-CONTROLLED", 0x802A: "ICE-CONTROLLING", 0x802B: "RESPONSE-ORIGIN", 0x802C: "OTHER-ADDRESS",
    0x802F: "ORIGIN", 0x8030: "MOBILITY-TICKET",
}
CHANNELS = set()
METHODS = {1: "Binding", 3: "Allocate", 4: "Refresh", 6: "Send", 7: "Data", 8: "CreatePermission",
           9: "ChannelBind", 10: "Connect", 11: "ConnectionBind", 12: "ConnectionAttempt"}
CLASSES = {0: "request", 1: "indication", 2: "success", 3: "error"}
COOKIE = b"\x21\x12\xa4\x42"


def packets(path):
    data = open(path, "rb").read()
    if data[:4] not in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4"):
        sys.exit("not a classic pcap file (use tcpdump -w, or editcap -F pcap)")
    end = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    link = struct.unpack(end + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        sec, usec, incl, _ = struct.unpack(end + "IIII", data[off:off + 16])
        off += 16
        frame = data[off:off + incl]
        off += incl
        if link == 1:
            frame = frame[14:]
        elif link == 0:
            frame = frame[4:]
        elif link == 113:
            frame = frame[16:]
        if not frame or frame[0] >> 4 != 4 or frame[9] != 17:
            continue
        udp = frame[(frame[0] & 15) * 4:]
        sport, dport = struct.unpack("!HH", udp[:4])
        yield sec + usec / 1e6, sport, dport, udp[8:]


def describe(msg, exact=True):
    mtype, mlen = struct.unpack("!HH", msg[:4])
    method = (mtype & 0x000F) | ((mtype >> 1) & 0x0070) | ((mtype >> 2) & 0x0F80)
    cls = ((mtype >> 4) & 1) | ((mtype >> 7) & 2)
    off, attrs = 20, []
    while off + 4 <= 20 + mlen and off + 4 <= len(msg):
        atype, alen = struct.unpack("!HH", msg[off:off + 4])
        v = msg[off + 4:off + 4 + alen]
        off += 4 + ((alen + 3) & ~3)
        s = ATTRS.get(atype, "0x%04x" % atype)
        if atype == 0x000D and alen == 4:
            s += "=%d" % struct.unpack("!I", v)[0]
        elif atype == 0x0018 and alen >= 1:
            s += "(R=%d)" % (v[0] >> 7)
        elif atype in (0x0017, 0x0019) and alen >= 1:
            s += "=%d" % v[0]
        elif atype in (0x0006, 0x0014, 0x8022, 0x802F):
            s += '="%s"' % v.decode(errors="replace")
        elif atype == 0x0009 and alen >= 4:
            s += "=%d" % ((v[2] & 7) * 100 + v[3])
        elif atype == 0x000C and alen >= 2:
            CHANNELS.add(struct.unpack("!H", v[:2])[0])
            if exact:
                s += "=0x%04x" % struct.unpack("!H", v[:2])[0]
        elif atype in (0x0012, 0x0016, 0x0020) and alen >= 8 and v[1] == 1:
            port = struct.unpack("!H", v[2:4])[0] ^ 0x2112
            ip = bytes(a ^ b for a, b in zip(v[4:8], COOKIE))
            s += "=%s:%s" % (".".join(map(str, ip)), port if exact or atype == 0x0012 else "*")
        elif atype in (0x0010, 0x8010) and alen == 4:
            s += "=%d" % struct.unpack("!I", v)[0]
        attrs.append(s)
    return "%s %s" % (METHODS.get(method, "0x%03x" % method), CLASSES[cls]), attrs


def main():
    path, port, verbose = sys.argv[1], int(sys.argv[2]), "-v" in sys.argv[3:]
    exact = verbose or "--exact" in sys.argv[3:]
    shapes, other = collections.OrderedDict(), collections.Counter()
    for t, sport, dport, msg in packets(path):
        if dport != port and sport != port or len(msg) < 4:
            continue
        way = "C>S" if dport == port else "S>C"
        if 0x40 <= msg[0] <= 0x7F:
            other["%s ChannelData 0x4000-0x7FFF data_len=%d datagram=%d"
                  % (way, struct.unpack("!H", msg[2:4])[0], len(msg))] += 1
            continue
        if msg[0] & 0xC0 or len(msg) < 20 or msg[4:8] != COOKIE:
            other["%s not STUN (first byte 0x%02x)" % (way, msg[0])] += 1
            continue
        name, attrs = describe(msg, exact)
        key = "%s %s: %s" % (way, name, " ".join(attrs))
        if verbose:
            print("%.3f %d>%d %s" % (t, sport, dport, key))
        shapes[key] = shapes.get(key, 0) + 1
    if not verbose:
        for key, n in shapes.items():
            print("%5dx %s" % (n, key))
    for key, n in other.items():
        print("%5dx %s" % (n, key))
    if CHANNELS:
        print("channel numbers in ChannelBind: %d distinct, 0x%04x..0x%04x" % (len(CHANNELS), min(CHANNELS), max(CHANNELS)))


if __name__ == "__main__":
    main()
