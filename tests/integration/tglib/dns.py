"""A tiny authoritative DNS server over UDP for the tests (RFC 1035 wire format, A records only).

Names it knows get their A records with a chosen TTL, AAAA queries for them get an empty NOERROR
answer, anything else gets NXDOMAIN. `drop = True` makes it swallow queries, which is how a test
makes the resolver fail without touching the system.
"""

import socket
import struct
import threading


def _read_name(msg, off):
    labels = []
    while True:
        n = msg[off]
        if n == 0:
            return ".".join(labels).lower() + ".", off + 1
        if n & 0xC0:
            raise ValueError("compressed name in a question")
        labels.append(msg[off + 1 : off + 1 + n].decode("ascii", "replace"))
        off += 1 + n


class DnsServer:
    def __init__(self, records=None, ttl=1):
        self.records = {k.lower().rstrip(".") + ".": v for k, v in (records or {}).items()}
        self.ttl = ttl
        self.drop = False
        self.queries = []  # (name, qtype) of every query received, answered or not
        self._stop = False

    def start(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()
        return self

    @property
    def server(self):
        return f"127.0.0.1:{self.port}"

    def close(self):
        self._stop = True
        self._t.join(timeout=2)
        self.sock.close()

    def count(self, name, qtype=1):
        name = name.lower().rstrip(".") + "."
        return sum(1 for n, t in self.queries if n == name and t == qtype)

    def _loop(self):
        while not self._stop:
            try:
                msg, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                reply = self._answer(msg)
            except (ValueError, IndexError, struct.error):
                continue
            if reply is not None:
                try:
                    self.sock.sendto(reply, peer)
                except OSError:
                    pass

    def _answer(self, msg):
        qid, flags, qd, _, _, _ = struct.unpack(">HHHHHH", msg[:12])
        if qd != 1 or flags & 0x8000:
            return None
        name, off = _read_name(msg, 12)
        qtype, qclass = struct.unpack(">HH", msg[off : off + 4])
        question = msg[12 : off + 4]
        self.queries.append((name, qtype))
        if self.drop:
            return None
        rd = flags & 0x0100
        addrs = self.records.get(name)
        answers = b""
        count = 0
        rcode = 0
        if addrs is None:
            rcode = 3  # NXDOMAIN
        elif qtype == 1 and qclass == 1:
            for a in addrs:
                # name as a pointer to the question (offset 12)
                answers += struct.pack(">HHHIH", 0xC00C, 1, 1, self.ttl, 4) + socket.inet_aton(a)
                count += 1
        flags_out = 0x8000 | 0x0400 | rd | 0x0080 | rcode  # QR, AA, RD copied, RA
        return struct.pack(">HHHHHH", qid, flags_out, 1, count, 0, 0) + question + answers
